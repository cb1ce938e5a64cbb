"""Device memory of a serving engine: weights + reserves leave the KV pool; blocks at current lengths.

    from accelcal.planner.serving.kv import kv_budget
    b = kv_budget(model, engine, tp=2, pp=1, capacity_bytes=80e9, weight_dtype="fp8_e4m3", kv_dtype="bf16")
    print(b.blocks, b.tokens, b.describe())
    b.check_request(isl=4096, osl=512)          # raises Infeasible with the arithmetic

Weights: each decoder layer's weights (planner.memory.layer_weight_bytes) at 2 bytes (bf16) or 1 byte
(fp8_e4m3) per weight, routed experts stored weight-only (gpt-oss mxfp4) at their format's bytes; the embedding and the LM head stay bf16 (modelling assumption: as in the published
FP8 checkpoints, which quantise the linear layers only).  Activations and collective buffers are
planner.memory.device_memory's for one forward at the engine's token budget, or, where larger, the engine's
start-up profile of a dummy sampler run (``profile_sampler_bytes_per_logit`` x min(token budget, max sequences)
x the vocabulary: vLLM's).  Then per engine preset:

* ``total`` (vLLM): pool = fraction x capacity - weights - activations - fixed reserve - in use at start;
* ``free_after_weights`` (TensorRT-LLM): pool = fraction x (capacity - in use at start - weights - activations -
  reserve);
* ``sglang_reserved_rule`` (SGLang 0.5.3 on) and ``sglang_tier_reserve`` (0.5.1, 0.5.2): pool =
  mem_fraction_static x (capacity - in use at start) - weights, with mem_fraction_static from SGLang's own
  reserved-memory rule of that release (:func:`sglang_reserved_mib`, cited in the preset);

where "in use at start" counts only for a preset whose ``in_use_at_start_from_pool`` says so.

"In use at start" is the memory the device profile measured as already taken when its kernel suite began
(``identity.memory_in_use_at_start_bytes``: the CUDA context and driver reservations), which every engine's
process holds as well: TensorRT-LLM and SGLang size the pool from the free memory the device reports, so it comes
off the pool, while vLLM (0.12) takes its memory snapshot after the CUDA context and NCCL exist, so for it that
memory comes out of the (1 - utilization) headroom instead.  0 where the profile did
not measure it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..memory import (device_memory, kv_bytes_per_token, linear_state_bytes_per_seq, stage_weight_bytes,
                      window_kv_bytes_per_token)
from ..parallelism import Parallelism
from accelcal.models import ModelConfig
from accelcal.units import count
from accelcal.vocab import DTYPE_BYTES
from ..workload import Workload
from .engine import EnginePreset

__all__ = ["RESERVE_CLIP_TOKENS", "check_request_runs", "Infeasible", "KVBudget", "kv_budget", "memory_in_use_bytes",
           "reserved_output_tokens", "sglang_reserved_mib"]

MIB = 1024 * 1024


class Infeasible(ValueError):
    """The deployment cannot run: weights + reserves do not fit, or one request cannot fit; says which."""

    def __init__(self, message: str, kind: str, memory: dict | None = None):
        super().__init__(message)
        self.kind = kind
        """weights | request"""
        self.memory = memory or {}
        """The memory arithmetic that ruled it out, bytes by part (KVBudget.to_dict; the pool at or below 0) where
        it got that far: predict's JSON carries it, as a feasible run's ``memory``."""


@dataclass(frozen=True)
class KVBudget:
    """Memory of one device of one replica (the busiest pipeline stage), bytes by part."""

    capacity_bytes: float
    weights_bytes: float
    activation_bytes: float
    comm_buffer_bytes: float
    reserve_bytes: float
    """Everything else the engine keeps out of the pool (its memory fraction's remainder, fixed reserves), less
    ``in_use_bytes``: the parts (weights, activations, comm buffers, reserve, in use, KV pool, a separate
    linear-attention state pool) add up to the capacity."""
    kv_pool_bytes: float
    """What the rule leaves for the KV cache; negative where the weights and reserves alone exceed the memory (an
    infeasible deployment: the shortfall the reason's arithmetic ends in)."""
    kv_bytes_per_token: float
    """Per device: layers of the busiest stage x (one token's cache elements per layer (2 x KV heads per device x
    head_dim, or MLA's latent and rotary key: ModelConfig.kv_cache_elems_per_layer) x KV dtype bytes + a sparse-
    attention indexer's key, ModelConfig.index_cache_bytes_per_layer)."""
    block_size_tokens: int
    blocks: int
    rule: str
    """How the pool was sized, with the arithmetic."""
    in_use_bytes: float = 0.0
    """Memory already in use at start that the pool gave up (0 where the engine's rule takes it from its headroom)."""
    state_bytes_per_seq: float = 0.0
    """A hybrid model's linear-attention state one running sequence keeps on this device (the stage's Gated
    DeltaNet layers x ModelConfig.linear_state_bytes); 0 without such layers."""
    state_blocks_per_seq: int = 0
    """Blocks of the pool each running sequence's state fills (engine ``linear_state_pool: per_sequence``)."""
    max_state_seqs: int = 0
    """Running sequences the engine's separate state pool allows (``linear_state_pool: ratio``: its slots // the
    engine's slots per request); 0 = no such cap."""
    state_pool_bytes: float = 0.0
    """Memory of that separate state pool (its slots x the state per sequence); 0 where the states live in the KV
    pool's blocks."""
    window_tokens: int = 0
    """A sliding-window model's window (ModelConfig.sliding_window): its windowed layers keep each sequence's last
    this many tokens; 0 without such layers."""
    window_bytes_per_token: float = 0.0
    """Per device: one windowed token's KV across the stage's sliding-window layers (memory.window_kv_bytes_per_token).
    They share the pool's blocks (vLLM's hybrid KV cache manager, docs/design/hybrid_kv_cache_manager.md: 'Sliding
    window layers: reserve slots only for the most recent sliding_window_size tokens'); TensorRT-LLM's and SGLang's
    separate pools per window, split at start, are taken as the one pool."""

    @property
    def tokens(self) -> int:
        return self.blocks * self.block_size_tokens

    @property
    def state_tokens_per_seq(self) -> int:
        """``state_blocks_per_seq`` as tokens of the pool (what a token-counting admission rule reserves for it)."""
        return self.state_blocks_per_seq * self.block_size_tokens

    def window_tokens_for(self, tokens: int) -> int:
        """The windowed layers' KV of a sequence of ``tokens`` (its last ``window_tokens``), as tokens of the pool
        (each pool token holds kv_bytes_per_token)."""
        if not self.window_tokens:
            return 0
        return math.ceil(min(int(tokens), self.window_tokens) * self.window_bytes_per_token / self.kv_bytes_per_token)

    def blocks_for(self, tokens: int) -> int:
        """Blocks one sequence of ``tokens`` holds: its KV, its windowed layers' last ``window_tokens`` tokens, and
        its linear-attention state where it lives in the pool."""
        bs = self.block_size_tokens
        return -(-int(tokens) // bs) + -(-self.window_tokens_for(tokens) // bs) + self.state_blocks_per_seq

    def to_dict(self) -> dict:
        return {"capacity_bytes": self.capacity_bytes, "weights_bytes": self.weights_bytes,
                "activation_bytes": self.activation_bytes, "comm_buffer_bytes": self.comm_buffer_bytes,
                "reserve_bytes": self.reserve_bytes, "kv_pool_bytes": self.kv_pool_bytes,
                "kv_bytes_per_token": self.kv_bytes_per_token, "kv_blocks": self.blocks,
                "kv_block_size_tokens": self.block_size_tokens, "kv_tokens": self.tokens,
                "in_use_bytes": self.in_use_bytes, "linear_state_bytes_per_seq": self.state_bytes_per_seq,
                "linear_state_blocks_per_seq": self.state_blocks_per_seq, "linear_state_max_seqs": self.max_state_seqs,
                "linear_state_pool_bytes": self.state_pool_bytes}

    def describe(self) -> str:
        g = 1e9
        return (f"{self.rule}: KV pool {self.kv_pool_bytes / g:.3f} GB / {self.kv_bytes_per_token / 1e3:.4g} kB per "
                f"token = {count(self.blocks, 'block')} of {count(self.block_size_tokens, 'token')} ({self.tokens} tokens)")

    def check_request(self, isl: int, osl: int) -> None:
        need = self.blocks_for(isl + osl)
        if need > self.blocks:
            state = (f" = {need - self.state_blocks_per_seq} blocks, + its linear-attention state "
                     f"{self.state_bytes_per_seq / 1e9:.3f} GB = {self.state_blocks_per_seq} blocks"
                     if self.state_blocks_per_seq else "")
            if self.window_tokens:
                w = min(isl + osl, self.window_tokens)
                state += (f", with its sliding-window layers' last {w} tokens x {self.window_bytes_per_token / 1e3:.4g} "
                          f"kB = {w * self.window_bytes_per_token / 1e9:.3f} GB")
            raise Infeasible(
                f"one request of {isl} + {osl} tokens needs {need} KV blocks ({isl + osl} tokens x "
                f"{self.kv_bytes_per_token / 1e3:.4g} kB = {(isl + osl) * self.kv_bytes_per_token / 1e9:.3f} GB{state}) "
                f"> the pool's {self.blocks} blocks ({self.describe()})", "request")


RESERVE_CLIP_TOKENS = 4096
"""SGLang's admission (reserve_ratio) reserves a request's output clipped at this many tokens
(srt/managers/schedule_policy.py CLIP_MAX_NEW_TOKENS_ESTIMATION, 0.5.1 and 0.5.8.post1 wheels)."""


def reserved_output_tokens(remaining: int) -> int:
    """The output tokens SGLang's admission reserves for a request with ``remaining`` still to generate."""
    return min(remaining, RESERVE_CLIP_TOKENS)


def check_request_runs(engine: EnginePreset, kv: "KVBudget", isl: int, osl: int) -> None:
    """Raise Infeasible when one request of ``isl`` + ``osl`` tokens can never run on this engine and pool: its KV
    does not fit the pool, its prompt does not fit one step's token budget without chunking (no step can ever
    schedule it), or SGLang's admission rule (reserve_ratio) never lets it in."""
    kv.check_request(isl, osl)
    if engine.step_tokens and not engine.chunked_prefill and isl > engine.step_tokens:
        raise Infeasible(f"a prompt of {isl} tokens exceeds the {engine.name} token budget {engine.step_tokens} and "
                         f"chunked prefill is off: no step can hold it (chunked_prefill=true or token_budget >= {isl}: "
                         f"--engine-arg, in accelcal predict and plan --engine)", "request")
    out = reserved_output_tokens(osl)
    if engine.admission == "reserve_ratio" and isl + out >= kv.tokens:
        # PrefillAdder.add_one_req: prompt + the clipped output must be below the free tokens
        raise Infeasible(f"{engine.name} admits a request only when its prompt and output ({isl} + {out} "
                         f"= {isl + out} tokens) are fewer than the pool's free tokens, and the whole "
                         f"pool holds {kv.tokens} ({kv.describe()})", "request")


def weight_bytes(model: ModelConfig, tp: int, pp: int, weight_dtype: str, ep: int = 1,
                 ep_comm: str = "all_to_all", moe_tp: int = 0) -> float:
    """Weights on one device of the busiest stage: layers at ``weight_dtype``, embedding/LM head in bf16;
    ``ep_comm``: the engine's (EnginePreset.ep_comm), which decides where the shared experts run; ``moe_tp``:
    Parallelism.moe_tp."""
    return float(stage_weight_bytes(model, tp, pp, ep, DTYPE_BYTES[weight_dtype], DTYPE_BYTES["bf16"], ep_comm,
                                    moe_tp))


def memory_in_use_bytes(profile) -> float:
    """The device profile's measured ``identity.memory_in_use_at_start_bytes``; 0 where it has none."""
    v = getattr(profile.identity, "memory_in_use_at_start_bytes", None)
    return float(v) if v else 0.0


def sglang_reserved_mib(engine: EnginePreset, gpu_mib: float, tp: int, pp: int, attention_dp: int = 1) -> float:
    """MiB SGLang keeps out of its static pool (mem_fraction_static = (gpu_mib - this) / gpu_mib) on a device of
    ``gpu_mib`` MiB, by the release's rule (``engine.memory_fraction_of``; sources in the sglang preset), for a
    replica of ``tp`` x ``pp`` devices with ``attention_dp`` attention data-parallel replicas sharing its MoE group
    (SGLang's tp_size = tp x attention_dp, dp_size = attention_dp):

    * ``sglang_reserved_rule`` (server_args.py _handle_gpu_memory_settings, 0.5.3 on): 512 + max(chunked prefill
      size, 2048) x 1.5 + cuda_graph_max_bs x 2 + tp_size x pp / 8 x 1024, with attention DP + cuda_graph_max_bs x
      dp_size x 3 (x 4.5 when cuda_graph_max_bs > 300); at least 10240 on GPUs over 60 GiB;
    * ``sglang_tier_reserve`` (server_args.py __post_init__, 0.5.1 and 0.5.2): by memory tier, (2.8 + tp_size x pp
      / 10) GiB below 35 GiB, (9.5 + tp_size x pp / 2) GiB below 90 GiB (H100, A100), (12 + tp_size x pp / 2) GiB
      below 160 GiB (H20, H200), else 32 GiB (B200, MI300); with attention DP 4 GiB more.
    """
    group_tp = tp * attention_dp
    parallel = group_tp * pp
    if engine.memory_fraction_of == "sglang_tier_reserve":
        if gpu_mib < 35 * 1024:
            reserved = (2.8 + parallel / 10) * 1024
        elif gpu_mib < 90 * 1024:
            reserved = (9.5 + parallel / 2) * 1024
        elif gpu_mib < 160 * 1024:
            reserved = (12 + parallel / 2) * 1024
        else:
            reserved = 32 * 1024
        return reserved + (4 * 1024 if attention_dp > 1 else 0)
    sizes = engine.captured_sizes(group_tp)  # cuda_graph_max_bs at this TP
    graph_bs = max(sizes) if sizes else 0
    # the chunk before SGLang divides it over the DP replicas (_handle_data_parallelism runs after this rule)
    reserved = 512 + max(engine.token_budget, 2048) * 1.5 + graph_bs * 2 + parallel / 8 * 1024
    if attention_dp > 1:
        reserved += graph_bs * attention_dp * 3 + (graph_bs * attention_dp * 1.5 if graph_bs > 300 else 0)
    return max(reserved, 10 * 1024) if gpu_mib > 60 * 1024 else reserved


def kv_budget(model: ModelConfig, engine: EnginePreset, tp: int, pp: int, capacity_bytes: float,
              weight_dtype: str = "bf16", kv_dtype: str = "bf16", ep: int = 1, in_use_bytes: float = 0.0,
              moe_tp: int = 0) -> KVBudget:
    """Size the KV pool of one device; Infeasible when the weights and reserves leave nothing.  ``in_use_bytes``:
    device memory taken before the engine starts (the profile's identity.memory_in_use_at_start_bytes);
    ``moe_tp``: Parallelism.moe_tp (experts TP-split over attention-DP replicas)."""
    if not 0 <= in_use_bytes < capacity_bytes:
        raise ValueError(f"memory in use at start must be in [0, capacity {capacity_bytes:.4g}), got {in_use_bytes!r}")
    if kv_dtype not in ("bf16", "fp16", "fp8_e4m3"):
        raise ValueError(f"--kv-dtype must be bf16 or fp8_e4m3, got {kv_dtype!r}")
    if weight_dtype not in ("bf16", "fp16", "fp8_e4m3"):
        raise ValueError(f"--weight-dtype must be bf16 or fp8_e4m3, got {weight_dtype!r}")
    weights = weight_bytes(model, tp, pp, weight_dtype, ep, engine.ep_comm, moe_tp)
    budget_tokens = engine.token_budget or 1
    act_model = dataclasses.replace(model, weight_dtype="bf16", kv_dtype="bf16")
    par = Parallelism(tp=tp, pp=pp, ep=ep, moe_tp=moe_tp)
    mem = device_memory(act_model, Workload(prompt_len=budget_tokens, output_len=1, batch=min(engine.max_seqs, 1024)),
                        par, engine.ep_comm)
    act = mem.activation_bytes if engine.reserve_activations else 0.0
    # the start-up profile's dummy sampler run (vLLM), whose peak can exceed the forward's at many sequences
    sampler_reqs = min(engine.token_budget or engine.max_seqs, engine.max_seqs)
    sampler = sampler_reqs * model.vocab_size * engine.profile_sampler_bytes_per_logit
    act_label = "activations"
    if engine.reserve_activations and sampler > act:
        act = sampler
        act_label = (f"activations (the profile run's dummy sampler: {sampler_reqs} requests x {model.vocab_size} "
                     f"logits x {engine.profile_sampler_bytes_per_logit:g} B)")
    comm = mem.comm_buffer_bytes if engine.reserve_activations else 0.0
    fixed = engine.reserve_fixed_bytes
    g = 1e9
    # the memory in use at start that the rule sizes the pool around (the preset says whether its engine does)
    held = in_use_bytes if engine.in_use_at_start_from_pool else 0.0
    lost = held  # what the pool gives up to it
    used = f" - in use at start {held / g:.3g} GB" if held else ""
    if engine.memory_fraction_of == "total":
        usable = engine.memory_fraction * capacity_bytes
        pool = usable - weights - act - comm - fixed - held
        rule = (f"{engine.memory_fraction:g} x {capacity_bytes / g:.4g} GB = {usable / g:.4g} GB - weights "
                f"{weights / g:.4g} GB - {act_label} {act / g:.3g} GB - comm buffers {comm / g:.3g} GB - fixed reserve "
                f"{fixed / g:.3g} GB{used}")
        reserve = capacity_bytes - usable + fixed + held
    elif engine.memory_fraction_of == "free_after_weights":
        free = capacity_bytes - held - weights - act - comm - fixed
        pool = engine.memory_fraction * free
        lost = engine.memory_fraction * held  # the pool's share of the free memory it would have had
        rule = (f"{engine.memory_fraction:g} x (capacity {capacity_bytes / g:.4g} GB{used} - weights {weights / g:.4g} GB - "
                f"{act_label} {act / g:.3g} GB - comm buffers {comm / g:.3g} GB - fixed reserve {fixed / g:.3g} GB)")
        reserve = fixed + held + (1 - engine.memory_fraction) * max(free, 0.0)
    else:  # SGLang's reserved-memory rule (server_args.py, cited in the preset)
        gpu_mib = capacity_bytes / MIB
        if engine.memory_fraction:  # --mem-fraction-static given: SGLang computes nothing
            frac = engine.memory_fraction
            how = f"mem_fraction_static {frac:g} (given)"
        else:
            reserved = sglang_reserved_mib(engine, gpu_mib, tp, pp, par.moe_replicas)
            frac = round((gpu_mib - reserved) / gpu_mib, 3)
            how = f"mem_fraction_static ({gpu_mib:.0f} - {reserved:.0f} MiB reserved) / {gpu_mib:.0f} MiB = {frac:.3f}"
        # profile_max_num_token: (free after loading) - (free at start) x (1 - frac) = frac x (free at start) -
        # weights, the free memory at start being the capacity less what was in use before (model_runner.py
        # init_torch_distributed's min_per_gpu_memory, 0.5.8.post1 wheel)
        pool = frac * (capacity_bytes - held) - weights
        lost = frac * held
        rule = f"{how}; {frac:.3f} x ({capacity_bytes / g:.4g} GB{used}) - weights {weights / g:.4g} GB"
        reserve = (1 - frac) * capacity_bytes + frac * held
        act = comm = 0.0
    per_token = float(kv_bytes_per_token(model, tp, pp, DTYPE_BYTES[kv_dtype]))
    if pool <= 0:
        short = KVBudget(capacity_bytes, weights, act, comm, reserve - lost, pool, per_token, engine.block_size_tokens,
                         0, rule, in_use_bytes=lost)
        raise Infeasible(f"weights + reserves do not fit: {rule} = {pool / g:.4g} GB left for the KV cache "
                         f"(tp={tp}, pp={pp}, weights {weight_dtype})", "weights", short.to_dict())
    state = linear_state_bytes_per_seq(model, tp, pp)
    state_blocks = max_state_seqs = 0
    state_pool = 0.0
    if state and engine.linear_state_pool == "ratio":
        # a state pool of its own (SGLang handle_max_mamba_cache): its share of what the weights leave, in whole
        # sequences' states; the KV pool gets the rest, and the running requests are capped at the slots // the
        # slots kept per request
        r, per = engine.linear_state_memory_ratio, engine.linear_state_slots_per_request
        slots = int(pool * r / (1 + r) // state)
        max_state_seqs = slots // per
        if max_state_seqs < 1:
            raise Infeasible(f"the linear-attention state pool allows no running request: {r:g} / (1 + {r:g}) x "
                             f"{pool / g:.4g} GB = {pool * r / (1 + r) / g:.4g} GB holds {slots} states of "
                             f"{state / g:.4g} GB, fewer than the {per} the engine keeps per request ({rule})",
                             "request")
        state_pool = slots * state
        rule += (f"; linear-attention state pool {r:g} / (1 + {r:g}) of the {pool / g:.4g} GB = {slots} states x "
                 f"{state / 1e6:.4g} MB, at most {slots} // {per} = {max_state_seqs} running requests; the rest for KV")
        pool -= state_pool
    elif state:
        state_blocks = math.ceil(state / (per_token * engine.block_size_tokens))
        rule += (f"; each running sequence's linear-attention state {state / 1e6:.4g} MB fills {state_blocks} "
                 f"blocks of the pool")
    blocks = int(pool // (per_token * engine.block_size_tokens))
    window = window_kv_bytes_per_token(model, tp, pp, DTYPE_BYTES[kv_dtype])
    if window:
        rule += (f"; each sequence's last {model.sliding_window} tokens also fill the sliding-window layers' "
                 f"{window / 1e3:.4g} kB per token")
    return KVBudget(capacity_bytes, weights, act, comm, reserve - lost, pool, per_token, engine.block_size_tokens,
                    blocks, rule, in_use_bytes=lost, state_bytes_per_seq=state, state_blocks_per_seq=state_blocks,
                    max_state_seqs=max_state_seqs, state_pool_bytes=state_pool,
                    window_tokens=model.sliding_window if window else 0, window_bytes_per_token=window)
