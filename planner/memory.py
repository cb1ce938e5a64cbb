"""Memory per device: weights + KV cache + activations + communication buffers.

    from accelcal.planner.memory import device_memory
    from accelcal.planner.parallelism import Parallelism
    mem = device_memory(model, workload, Parallelism(tp=8, pp=2))
    print(mem.total_bytes / 1e9, mem.describe())

The busiest pipeline stage counts (it holds its layers plus the embedding on
the first stage or the LM head on the last).  KV cache is sized for ``batch``
sequences at full context (prompt + output).  Activations are the peak live
tensors of one layer in prefill (the prompt's share per SP rank, or the
gathered K/V) or decode, whichever is larger, plus fp32 logits.
Communication buffers are the largest collective message of the layer, twice
(send and receive), as the DAG sizes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from accelcal.models import ModelConfig

from .dag import kv_heads_per_device
from .parallelism import Parallelism, expert_tp
from .workload import Workload

__all__ = ["MemoryEstimate", "device_memory", "layer_routed_expert_elems", "layer_weight_bytes", "layer_weight_elems",
           "linear_state_bytes_per_seq"]


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one device needs, by kind."""

    weights_bytes: float
    """Model weights held by the busiest stage's device."""
    kv_cache_bytes: float
    """KV cache for ``batch`` sequences at full context (with a hybrid model's linear-attention state per sequence)."""
    activation_bytes: float
    """Peak live activations of one layer (prefill or decode) plus logits."""
    comm_buffer_bytes: float
    """Largest collective message, send + receive."""

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.kv_cache_bytes + self.activation_bytes + self.comm_buffer_bytes

    def describe(self) -> str:
        g = 1e9
        return (f"weights {self.weights_bytes / g:.2f} GB + KV {self.kv_cache_bytes / g:.2f} GB + activations "
                f"{self.activation_bytes / g:.2f} GB + comm buffers {self.comm_buffer_bytes / g:.3f} GB = "
                f"{self.total_bytes / g:.2f} GB")

    def to_dict(self) -> dict:
        return {"weights_bytes": self.weights_bytes, "kv_cache_bytes": self.kv_cache_bytes,
                "activation_bytes": self.activation_bytes, "comm_buffer_bytes": self.comm_buffer_bytes,
                "total_bytes": self.total_bytes}


def layer_routed_expert_elems(model: ModelConfig, tp: int, ep: int, moe_tp: int = 0) -> int:
    """Routed-expert weight elements of one decoder layer on one device (0 for a dense model): E/ep experts, each
    split expert_tp(tp, ep, moe_tp) ways (EP 1: every expert TP-split, over TP or the wider ``moe_tp``; EP = TP or
    wider: whole experts)."""
    if not model.is_moe:
        return 0
    return (model.num_experts // ep) * 3 * model.hidden_size * (model.expert_ffn_size // expert_tp(tp, ep, moe_tp))


def _shared_expert_ffn(model: ModelConfig, tp: int, ep: int, ep_comm: str) -> int:
    """One shared expert's FFN width on one device: TP-split where every TP rank holds every token (no EP, or EP
    whose outputs are all-reduced: the DAG's all_reduce branch); whole where an all-to-all leaves each rank its own
    1/tp of the tokens."""
    return model.expert_ffn_size // tp if ep == 1 or ep_comm == "all_reduce" else model.expert_ffn_size


def layer_weight_elems(model: ModelConfig, tp: int, ep: int, kind: str | None = None,
                       ep_comm: str = "all_to_all", moe_tp: int = 0) -> int:
    """Weight elements of one decoder layer on one device; ``kind`` ``"moe"`` or ``"dense"`` (default: a MoE
    model's MoE layer, a dense model's layer; ModelConfig.layer_kinds); ``ep_comm``: how EP moves the tokens
    (DagOptions.ep_comm), which decides where the shared experts run; ``moe_tp``: Parallelism.moe_tp."""
    h = model.hidden_size
    kind = kind or ("moe" if model.is_moe else "dense")
    if kind == "dense":
        ffn = 3 * h * (model.ffn_size // tp)
    else:
        shared_ffn = _shared_expert_ffn(model, tp, ep, ep_comm)
        ffn = (layer_routed_expert_elems(model, tp, ep, moe_tp) + model.shared_experts * 3 * h * shared_ffn
               + h * model.num_experts)
    return model.mixer_params(tp) + ffn + 2 * h


def layer_weight_bytes(model: ModelConfig, tp: int, ep: int, bytes_per_elem: float, kind: str | None = None,
                       ep_comm: str = "all_to_all", moe_tp: int = 0) -> float:
    """Weight bytes of one decoder layer on one device: routed experts at the model's expert storage bytes when they
    are weight-only quantised (ModelConfig.expert_weight_dtype), everything else at ``bytes_per_elem``."""
    kind = kind or ("moe" if model.is_moe else "dense")
    routed = layer_routed_expert_elems(model, tp, ep, moe_tp) if kind == "moe" else 0
    expert_bytes = model.expert_bytes_per_elem if model.expert_weight_dtype else bytes_per_elem
    return (layer_weight_elems(model, tp, ep, kind, ep_comm, moe_tp) - routed) * bytes_per_elem + routed * expert_bytes


def stage_weight_bytes(model: ModelConfig, tp: int, pp: int, ep: int, layer_bytes_per_elem: float,
                       embed_bytes_per_elem: float, ep_comm: str = "all_to_all", moe_tp: int = 0) -> float:
    """Weight bytes on one device of the busiest stage: its decoder layers, plus the embedding / LM head.

    Each stage counts ceil(layers / pp) layers, in order, so a MoE model's dense layers (``dense_layers``, first)
    lighten the first stage and the busiest holds the most MoE layers.  The embedding sits on the first stage and
    the LM head on the last (same size); one stage holding both keeps a single matrix when they are tied, across
    stages each holds its own copy."""
    per_stage = math.ceil(model.layers / pp)
    dense_first = model.layers - model.moe_layers if model.is_moe else 0
    kinds = ("moe", "dense") if model.is_moe else ("dense",)
    kind_bytes = {k: layer_weight_bytes(model, tp, ep, layer_bytes_per_elem, k, ep_comm, moe_tp) for k in kinds}
    heavy = kind_bytes[kinds[0]]  # a MoE model's MoE layer, a dense model's layer
    dense = min(max(0, dense_first - (pp - 1) * per_stage), per_stage) if pp > 1 else dense_first
    layers = dense * kind_bytes["dense"] + (per_stage - dense) * heavy
    embed = model.vocab_size * model.hidden_size // tp
    head_stage = (embed if model.tie_word_embeddings else 2 * embed) + model.hidden_size if pp == 1 else \
        embed + model.hidden_size
    return layers + head_stage * embed_bytes_per_elem


def kv_bytes_per_token(model: ModelConfig, tp: int, pp: int, kv_bytes_per_elem: float) -> float:
    """KV-cache bytes one token adds on one device of the busiest stage (its full-attention layers' cache elements,
    ModelConfig.kv_cache_elems_per_layer, and a sparse-attention indexer's key, index_cache_bytes_per_layer; a
    sliding-window layer keeps only its window per sequence)."""
    return math.ceil(model.full_attention_layers / pp) * (model.kv_cache_elems_per_layer(tp) * kv_bytes_per_elem
                                                          + model.index_cache_bytes_per_layer)


def window_kv_bytes_per_token(model: ModelConfig, tp: int, pp: int, kv_bytes_per_elem: float) -> float:
    """KV-cache bytes one token inside the window adds on one device of the busiest stage across its sliding-window
    layers (the stage kv_bytes_per_token counts, with the most full-attention layers); 0 without such layers.  A
    sequence keeps its last ``sliding_window`` tokens there (KVBudget.window_tokens_for)."""
    if not model.sliding_layers:
        return 0.0
    return float(_kv_stage_layers(model, model.sliding_layers, pp) * model.kv_cache_elems_per_layer(tp)
                 * kv_bytes_per_elem)


def _kv_stage_layers(model: ModelConfig, layers_of_kind: int, pp: int) -> int:
    """Layers of a kind other than full attention (``layers_of_kind`` in the whole model: sliding-window or Gated
    DeltaNet ones) on the stage kv_bytes_per_token counts, the one with the most full-attention layers: the rest of
    its layers, at most its share of that kind."""
    return max(0, min(math.ceil(layers_of_kind / pp),
                      math.ceil(model.layers / pp) - math.ceil(model.full_attention_layers / pp)))


def linear_state_bytes_per_seq(model: ModelConfig, tp: int, pp: int) -> float:
    """Bytes of linear-attention state one sequence keeps on one device of the busiest stage (its Gated DeltaNet
    layers x ModelConfig.linear_state_bytes; that stage is the one kv_bytes_per_token counts, with the most
    full-attention layers); 0 for a model without such layers."""
    if not model.linear_layers:
        return 0.0
    return float(_kv_stage_layers(model, model.linear_layers, pp) * model.linear_state_bytes(tp))


def device_memory(model: ModelConfig, workload: Workload, parallelism: Parallelism = Parallelism(),
                  ep_comm: str = "all_to_all") -> MemoryEstimate:
    """Bytes one device of the busiest stage needs under ``parallelism`` (DP and the scopes do not change it);
    ``ep_comm``: how EP moves the tokens (DagOptions.ep_comm)."""
    tp, pp, ep, sp = parallelism.tp, parallelism.pp, parallelism.ep, parallelism.sp
    el, kvel = model.weight_bytes_per_elem, model.kv_bytes_per_elem
    h, hd = model.hidden_size, model.head_dim
    weights = stage_weight_bytes(model, tp, pp, ep, el, el, ep_comm, parallelism.moe_tp)
    kvh = kv_heads_per_device(model, tp)
    kv_elems = model.kv_cache_elems_per_layer(tp)  # one token's cache in one layer on this rank
    kv = workload.batch * (workload.context_len * kv_bytes_per_token(model, tp, pp, kvel)
                           + linear_state_bytes_per_seq(model, tp, pp))
    heads = model.heads // tp
    reps = parallelism.moe_replicas  # attention-DP replicas whose tokens meet in the expert layers
    if model.is_moe:
        # every token's routed pairs at each expert's slice, for the gathered tokens of all reps replicas; the
        # shared experts on this replica's own tokens, split as layer_weight_elems splits them
        ef = model.expert_ffn_size // parallelism.expert_tp
        sf = _shared_expert_ffn(model, tp, ep, ep_comm)
        mlp_width = 3 * ef * model.top_k * reps + 3 * model.shared_experts * sf
        if model.dense_layers:
            mlp_width = max(mlp_width, 3 * (model.ffn_size // tp))
    else:
        mlp_width = 3 * (model.ffn_size // tp)
    widest = max((2 * heads + 2 * kvh) * hd, mlp_width)

    def act(tokens: int, kv_tokens: int) -> float:
        return tokens * (2 * h + widest) * el + kv_tokens * kv_elems * kvel

    prefill_tok = math.ceil(workload.prompt_len / sp)
    activations = max(act(prefill_tok, workload.prompt_len if sp > 1 else 0), act(workload.batch, 0))
    activations += workload.batch * (model.vocab_size // tp) * 4  # fp32 logits
    # an all-to-all moves each rank's routed pairs; an all-reduce, the hidden states (the first term below)
    moe_tok = model.top_k * (math.ceil(prefill_tok / tp) if ep > 1 and ep_comm == "all_to_all" else 0)
    # a MoE group wider than TP (spanning replicas) moves each device's own pairs, or gathers every replica's tokens
    comm = 2 * max(prefill_tok * h * el, moe_tok * h * el * (min(ep, tp) if ep > 1 else 0),
                   reps * prefill_tok * h * el if reps > 1 else 0,
                   workload.prompt_len * kv_elems * kvel if sp > 1 else 0)
    if tp == 1 and ep == 1 and reps == 1 and sp == 1 and pp == 1:
        comm = 0
    return MemoryEstimate(float(weights), float(kv), float(activations), float(comm))
