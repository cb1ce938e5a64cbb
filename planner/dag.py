"""The per-layer, per-phase DAG of one decoder layer on one device.

    from accelcal.planner.dag import DagOptions, build_layer_dag
    from accelcal.planner.parallelism import Parallelism
    from accelcal.models import ModelConfig
    dag = build_layer_dag(ModelConfig.from_name("llama3-8b"), "decode", batch=8, q_len=1, kv_len=2048,
                          parallelism=Parallelism(tp=2), options=DagOptions(tp_comm="rs_ag"))
    for n in dag.nodes: print(n.name, n.op, n.deps)

Where a layer sits is a :class:`~accelcal.planner.parallelism.Parallelism`
(the degrees and group scopes, the same value the search, candidates and
memory estimate use); a layer reads only its TP, EP and SP degrees and scopes
(:func:`layer_parallelism`).  How the layer is run on that layout, which is
not a fact of the layout, is :class:`DagOptions`: the TP reduction scheme and
the MoE load imbalance.

Nodes are what one device runs (shapes already divided by the parallel
degrees); ``deps`` are the edges.  Operation kinds, each costed by
:mod:`accelcal.planner.cost` from one profile query:

* ``gemm``       params m, n, k                      -> profile.gemm_time_s
* ``attention``  params phase, batch, q_len, kv_len, heads, kv_heads, head_dim, work_fraction (the SP share), and
  for a model with sliding-window layers or sparse attention's top-k spans: ((keys read, share of the layers,
  window), ...), ModelConfig.attention_layers; with multi-head latent attention v_head_dim and shared_kv
  (ModelConfig.attention_shape: the expanded form for a prompt, the latent for a decode step, after the ``qkv_a``,
  ``qkv_a_norm``, ``q_b`` and ``kv_b`` projections).  context=True marks a node whose work grows with the context
  (the attention, a sparse-attention indexer's scoring and top-k), which the serving step costs per call
* ``memory``     params nbytes (bytes moved)          -> profile.memory_time_s(copy)
* ``roofline``   params flop, nbytes, dtype (a kernel no profile field times: a sparse-attention indexer's scoring)
                                                     -> profile.roofline_time_s
* ``collective`` params op, nbytes (nccl-tests S), group_size, scope
* ``grouped_gemm`` params count, m, n, k: ``count`` expert GEMMs of one shape; one kernel (``kernels`` 1)
  is costed as one GEMM with the experts stacked along N (same FLOPs and weight bytes, one launch), times the
  profile's measured grouped / stacked ratio where it has one (Profile.grouped_gemm_time_s); one launch per
  expert as ``count`` GEMMs

Any node may carry ``layer_share``: the DAG stands for the mean layer, and a MoE model with dense layers
(ModelConfig.dense_layers) has both an MLP block and a MoE block, each node of which the coster weighs by its
share of the layers (device time and launches).

Kernel counts and the elementwise groups' traffic come from an
:class:`~accelcal.models.implementation.Implementation` preset (data, not
code): ``fused`` (the default: residual add fused into RMSNorm, one rotary
kernel, SiLU*mul one kernel, grouped expert GEMMs, as serving stacks run) or
``torch-eager`` (plain PyTorch, what ``accelcal validate`` runs: nine ops per
RMSNorm, separate residual adds, a GEMM launch per expert hit).  GEMMs are
one kernel each in every implementation (gate/up fused into one weight).  SP
(sequence parallelism) is prefill-only by construction: a decode DAG never
has SP nodes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from accelcal.models import ModelConfig
from accelcal.models.implementation import Implementation
from accelcal.vocab import ELEMENTWISE_GROUPS, EP_COMMS, PHASES, QK_NORM_KERNELS, attended_pairs

from .parallelism import Parallelism

__all__ = ["DagNode", "DagOptions", "LayerDAG", "build_edge_dag", "build_layer_dag", "kv_heads_per_device",
           "edge_parallelism", "layer_parallelism", "moe_imbalance"]


@dataclass(frozen=True)
class DagOptions:
    """How a layer runs on its layout: choices and load statistics, not facts of the layout itself."""

    tp_comm: str = "all_reduce"
    """TP reduction: ``all_reduce``, or ``rs_ag`` (reduce-scatter + all-gather, norms on 1/tp of the tokens)."""
    moe_imbalance: float | None = None
    """Max/mean expert load per EP rank; None = computed (balls-into-bins, see moe_imbalance)."""
    gemm_input_quant: bool = False
    """fp8 GEMMs on wider activations: every projection's input is first quantized to 1 byte by the
    implementation's ``act_quant`` group (the router and the embedding/LM head stay in the activation dtype)."""
    ep_comm: str = "all_to_all"
    """How experts spread over the TP group (EP = TP) meet their tokens: ``all_to_all`` (each rank routes 1/tp
    of the tokens, dispatches them to the experts' ranks and combines them back, then the tokens are
    all-gathered), or ``all_reduce`` (every rank holds every token, runs its E/ep experts on the tokens routed
    to them, and one all-reduce sums the partial outputs, as an engine without attention data parallelism
    does)."""

    qk_norm_kernels: int = 2
    """Launches of a model's q/k RMSNorm per layer: 2 (the queries, then the keys), or 1 (one kernel for both)."""
    rope_in_attention: bool = False
    """RoPE runs inside another kernel (TensorRT-LLM): the fused q/k-norm kernel when the model has a q/k norm,
    else the attention op's QKV preprocessing, which also writes the KV cache; False: a RoPE kernel of its own."""

    def __post_init__(self) -> None:
        if self.qk_norm_kernels not in QK_NORM_KERNELS:
            raise ValueError(f"layout: qk_norm_kernels must be one of {list(QK_NORM_KERNELS)}, got {self.qk_norm_kernels!r}")
        if self.tp_comm not in ("all_reduce", "rs_ag"):
            raise ValueError(f"layout: tp_comm must be 'all_reduce' or 'rs_ag', got {self.tp_comm!r}")
        if self.ep_comm not in EP_COMMS:
            raise ValueError(f"layout: ep_comm must be one of {list(EP_COMMS)}, got {self.ep_comm!r}")
        if self.moe_imbalance is not None and self.moe_imbalance < 1.0:
            raise ValueError(f"layout: moe_imbalance is max/mean load, must be >= 1.0, got {self.moe_imbalance}")


def layer_parallelism(parallelism: Parallelism, phase: str) -> Parallelism:
    """The part of ``parallelism`` one decoder layer of ``phase`` depends on: TP, EP, SP and their scopes.

    PP and DP do not change a layer (they are 1 here), and SP is prefill-only (1 in decode), so
    layouts that differ only in those share one DAG (and one memoised cost).
    """
    p = parallelism
    return Parallelism(tp=p.tp, ep=p.ep, sp=p.sp if phase == "prefill" else 1, tp_scope=p.tp_scope,
                       ep_scope=p.ep_scope, sp_scope=p.sp_scope, moe_tp=p.moe_tp)


@dataclass(frozen=True)
class DagNode:
    """One kernel (or fused group) on one device."""

    name: str
    """Unique within the layer, e.g. ``qkv``, ``tp_attn_all_reduce``."""
    op: str
    """gemm | grouped_gemm | attention | memory | collective."""
    params: tuple
    """Sorted (key, value) pairs the cost model reads (shapes, bytes, group)."""
    kernels: int = 1
    """Kernel launches this node issues."""
    deps: tuple[str, ...] = ()
    """Names of the nodes this one waits for."""

    @property
    def p(self) -> dict:
        return dict(self.params)


@dataclass
class LayerDAG:
    """One decoder layer of one phase, as one device runs it."""

    phase: str
    model: str
    parallelism: Parallelism
    """The layout the layer runs on (its :func:`layer_parallelism` view)."""
    batch: int
    q_len: int
    kv_len: int
    nodes: list[DagNode] = field(default_factory=list)
    options: DagOptions = DagOptions()
    """TP reduction and MoE imbalance the layer was built with."""

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(d, n.name) for n in self.nodes for d in n.deps]

    def to_dict(self) -> dict:
        return {
            "phase": self.phase, "model": self.model, "batch": self.batch, "q_len": self.q_len,
            "kv_len": self.kv_len, "layout": self.layout_dict(),
            "nodes": [{"name": n.name, "op": n.op, "params": n.p, "kernels": n.kernels, "deps": list(n.deps)}
                      for n in self.nodes],
            "edges": [list(e) for e in self.edges],
        }

    def layout_dict(self) -> dict:
        """The ``layout`` of :meth:`to_dict`: the layer's degrees, scopes and options."""
        p, o = self.parallelism, self.options
        return {"tp": p.tp, "tp_scope": p.tp_scope, "tp_comm": o.tp_comm, "ep": p.ep, "ep_scope": p.ep_scope,
                "ep_comm": o.ep_comm, "sp": p.sp, "sp_scope": p.sp_scope, "moe_imbalance": o.moe_imbalance,
                **({"moe_tp": p.moe_tp} if p.moe_tp else {})}


def kv_heads_per_device(model: ModelConfig, tp: int) -> int:
    """KV heads each TP rank holds; replicated when tp > kv_heads (ModelConfig.kv_heads_per_device)."""
    return model.kv_heads_per_device(tp)


def moe_imbalance(assignments_per_rank: float, ranks: int) -> float:
    """Expected max/mean token load over ``ranks`` EP ranks under uniform top-k routing.

    Balls-into-bins with a Gaussian tail: the busiest of ``ranks`` bins holding
    ``mean`` each on average carries about ``mean + sqrt(2 mean ln ranks)``,
    so the ratio is ``1 + sqrt(2 ln(ranks) / mean)``, capped at ``ranks`` (all
    tokens on one rank).  Routing skew of a real model only adds to this.
    """
    if ranks <= 1 or assignments_per_rank <= 0:
        return 1.0
    return min(float(ranks), 1.0 + math.sqrt(2.0 * math.log(ranks) / assignments_per_rank))


def _node(name: str, kind: str, deps: tuple[str, ...], kernels: int = 1, **params) -> DagNode:
    return DagNode(name, kind, tuple(sorted(params.items())), kernels, deps)




def _measured(impl: Implementation, group: str) -> dict[str, str]:
    # Names the profile measurement that times this node's very ops, for the coster to prefer over a copy.
    return {"group": group} if impl.measured_elementwise and group in ELEMENTWISE_GROUPS else {}


def _input_quant(dag: LayerDAG, impl: Implementation, options: DagOptions, el: int, gemm: str, dep: tuple[str, ...],
                 elems: float, launches: int = 1) -> tuple[str, ...]:
    """The dependencies of GEMM ``gemm``: ``dep``, or, when the GEMMs are fp8 on wider activations
    (``options.gemm_input_quant``), the kernel that quantizes its input of ``elems`` elements first."""
    if not options.gemm_input_quant:
        return dep
    q = impl.act_quant
    dag.nodes.append(_node(f"{gemm}_input_quant", "memory", dep, kernels=q.kernels * launches,
                           nbytes=q.bytes_per_element(el) * elems))
    return (f"{gemm}_input_quant",)


def build_layer_dag(model: ModelConfig, phase: str, batch: int, q_len: int, kv_len: int,
                    parallelism: Parallelism = Parallelism(), implementation: Implementation | str | None = None,
                    options: DagOptions = DagOptions()) -> LayerDAG:
    """The DAG of one decoder layer for ``batch`` sequences of ``q_len`` new tokens over ``kv_len`` context.

    ``implementation`` (a preset name or :class:`Implementation`; default ``fused``)
    sets each elementwise group's kernel count and bytes moved.
    """
    impl = Implementation.resolve(implementation)
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    for f, v in (("batch", batch), ("q_len", q_len), ("kv_len", kv_len)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{f} must be an integer >= 1, got {v!r}")
    if kv_len < q_len:
        raise ValueError(f"kv_len({kv_len}) < q_len({q_len}): the context includes the new tokens")
    if phase == "decode" and q_len != 1:
        raise ValueError(f"decode processes one new token per sequence, got q_len={q_len}")
    layout = layer_parallelism(parallelism, phase)
    t, sp = layout.tp, layout.sp
    el, kvel = model.weight_bytes_per_elem, model.kv_bytes_per_elem
    h, hd = model.hidden_size, model.head_dim
    heads = model.heads // t
    kvh = kv_heads_per_device(model, t)
    # Each SP rank holds q_len/sp of every prompt (rounded up: the slowest rank sets the pace).
    tok = batch * math.ceil(q_len / sp)
    rs_ag = t > 1 and options.tp_comm == "rs_ag"
    norm_tok = math.ceil(tok / t) if rs_ag else tok
    dag = LayerDAG(phase, model.name, layout, batch, q_len, kv_len, options=options)
    add = dag.nodes.append

    def tp_reduce(prefix: str, dep: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if t == 1:
            return dep
        op = "reduce_scatter" if rs_ag else "all_reduce"
        add(_node(f"{prefix}_{op}", "collective", (dep,) if isinstance(dep, str) else dep, op=op, nbytes=tok * h * el,
                  group_size=t, scope=layout.tp_scope))
        return f"{prefix}_{op}"

    def elementwise(name: str, dep: tuple[str, ...], group_name: str, elems: float, elem_bytes: int = el,
                    copies: int = 1) -> str:
        # one group of memory-bound ops: its kernels, and its traffic over the tensor of ``elems`` it works on
        group = getattr(impl, group_name)
        add(_node(name, "memory", dep, kernels=group.kernels * copies, nbytes=group.bytes_per_element(elem_bytes) * elems,
                  **_measured(impl, group_name)))
        return name

    def residual(name: str, dep: str | tuple[str, ...]) -> tuple[str, ...]:
        deps = (dep,) if isinstance(dep, str) else dep
        if impl.residual_add.kernels == 0:
            return deps  # fused into the next norm
        return (elementwise(name, deps, "residual_add", norm_tok * h),)

    def norm(name: str, dep: tuple[str, ...]) -> str:
        elementwise(name, dep, "norm", norm_tok * h)
        if rs_ag:
            add(_node(f"{name}_all_gather", "collective", (name,), op="all_gather", nbytes=tok * h * el,
                      group_size=t, scope=layout.tp_scope))
            return f"{name}_all_gather"
        return name

    def quantized(gemm: str, dep: tuple[str, ...], elems: float) -> tuple[str, ...]:
        return _input_quant(dag, impl, options, el, gemm, dep, elems)

    def post_norm(name: str, dep: str | tuple[str, ...]) -> str | tuple[str, ...]:
        # Gemma's norm of a sub-block's reduced output before its residual add (model.post_norms)
        if not model.post_norms:
            return dep
        return (elementwise(name, (dep,) if isinstance(dep, str) else dep, "norm", norm_tok * h),)

    x = norm("attn_norm", ())
    first_mixer = len(dag.nodes)
    shape = model.attention_shape(phase, t)
    if model.is_mla:
        # with SP every rank expands the whole prompt's gathered latents into its heads' keys and values
        attn_dep = _mla_projections(dag, model, layout, options, impl, tok, kvel, x, quantized, elementwise,
                                    expand_tok=batch * q_len if sp > 1 else tok)
    else:
        gate = heads * hd if model.attn_output_gate else 0  # gated attention: the query projection emits the gate too
        add(_node("qkv", "gemm", quantized("qkv", (x,), tok * h), m=tok, n=(heads + 2 * kvh) * hd + gate, k=h))
        roped = _qk_norm(dag, model, layout, tok, heads, kvh, elementwise, options.qk_norm_kernels)
        rope_elems = tok * (heads + kvh) * hd
        kv_elems = tok * 2 * kvh * hd
        if not options.rope_in_attention:
            roped = (elementwise("rope", roped, "rope", rope_elems, copies=2 if impl.rope.per_tensor else 1),)
        if options.rope_in_attention and not model.qk_norm:
            # RoPE inside the attention op's QKV preprocessing, the kernel that also writes the KV cache (with a q/k
            # norm it runs inside the fused q/k-norm kernel instead: no traffic of its own)
            kv = impl.kv_cache_write
            add(_node("kv_cache_write", "memory", roped, kernels=kv.kernels,
                      nbytes=kv.bytes_per_element(kvel) * kv_elems + impl.rope.bytes_per_element(el) * rope_elems))
        else:
            elementwise("kv_cache_write", roped, "kv_cache_write", kv_elems, elem_bytes=kvel)
        attn_dep = roped + ("kv_cache_write",)
    if model.has_indexer:
        attn_dep += _indexer(dag, model, phase, batch, q_len, kv_len, tok, sp, x, quantized, elementwise)
    if sp > 1:
        # every SP rank needs the whole prompt's K and V (MLA: the latent): all-gather over the SP group (S = total bytes)
        # (and a sparse-attention indexer's keys, which every rank's indexer scores)
        add(_node("sp_kv_all_gather", "collective", ("kv_cache_write",), op="all_gather",
                  nbytes=batch * q_len * (model.kv_cache_elems_per_layer(t) * kvel + model.index_cache_bytes_per_layer),
                  group_size=sp, scope=layout.sp_scope))
        attn_dep = tuple(d for d in attn_dep if d != "kv_cache_write") + ("sp_kv_all_gather",)
    # causal work split evenly across SP ranks (zig-zag chunk assignment); this DAG stands for the mean layer, so a
    # model with sliding-window layers has a share of its attention over the keys their window reaches
    spans = model.attention_layers(q_len, kv_len)
    window = {"spans": spans} if spans != ((kv_len, 1.0, 0),) else {}  # windows, or sparse attention's top-k
    form = {"v_head_dim": shape.v_head_dim, "shared_kv": shape.shared_kv} if model.is_mla else {}
    add(_node("attention", "attention", attn_dep, phase=phase, batch=batch, q_len=q_len, kv_len=kv_len,
              heads=shape.heads, kv_heads=shape.kv_heads, head_dim=shape.head_dim, work_fraction=1.0 / sp,
              **window, **form))
    o_k = model.mla_projections(t)["o_proj"][1] if model.is_mla else heads * hd
    o_dep = "attention"
    if model.attn_output_gate:
        # the attention output times the sigmoid of the gate, one elementwise pass like SwiGLU's
        o_dep = elementwise("attn_gate_mul", ("attention",), "act_mul", tok * heads * hd)
    add(_node("o_proj", "gemm", quantized("o_proj", (o_dep,), tok * o_k), m=tok, n=h, k=o_k))
    mixer_ends: tuple[str, ...] = ("o_proj",)
    if model.linear_layers:
        # the mean layer of a hybrid model: softmax attention in its share of the layers (the attention call's own
        # span already carries it), Gated DeltaNet in the rest
        soft = model.full_attention_layers / model.layers
        dag.nodes[first_mixer:] = [n if n.op == "attention" else _share(n, soft) for n in dag.nodes[first_mixer:]]
        first_linear = len(dag.nodes)
        mixer_ends += (_linear_attention(dag, model, t, batch, math.ceil(q_len / sp), tok, x, quantized, elementwise),)
        dag.nodes[first_linear:] = [_share(n, model.linear_layers / model.layers) for n in dag.nodes[first_linear:]]
    r = residual("attn_residual", post_norm("post_attn_norm", tp_reduce("tp_attn", mixer_ends)))
    x = norm("mlp_norm", r)
    kinds = model.layer_kinds()
    ends: tuple[str, ...] = ()
    for kind, share in kinds:
        first = len(dag.nodes)
        if kind == "dense":
            f, pre = model.ffn_size // t, ("dense_" if len(kinds) > 1 else "")  # names unique beside the MoE block's
            add(_node(f"{pre}gate_up", "gemm", quantized(f"{pre}gate_up", (x,), tok * h), m=tok, n=2 * f, k=h))
            elementwise(f"{pre}act_mul", (f"{pre}gate_up",), "act_mul", tok * f)
            add(_node(f"{pre}down", "gemm", quantized(f"{pre}down", (f"{pre}act_mul",), tok * f), m=tok, n=h, k=f))
            ends += (tp_reduce(f"tp_{pre}mlp", f"{pre}down"),)
        else:
            ends += _moe(dag, model, layout, options, tok, t, el, x, impl)
        if len(kinds) > 1:
            # the mean layer of a MoE model with dense layers: each block runs in its share of the layers
            dag.nodes[first:] = [_share(n, share) for n in dag.nodes[first:]]
    residual("mlp_residual", post_norm("post_mlp_norm", ends))
    return dag


def _share(node: DagNode, share: float) -> DagNode:
    """``node`` as a block of the mean layer that runs in ``share`` of the layers (the coster weighs it so)."""
    return dataclasses.replace(node, params=tuple(sorted(node.params + (("layer_share", share),))))


def _linear_attention(dag: LayerDAG, model: ModelConfig, t: int, batch: int, q_len: int, tok: int, x: str,
                      quantized: Callable[..., tuple], elementwise: Callable[..., str]) -> str:
    """A Gated DeltaNet token mixer (Qwen3-Next, Qwen3.5) on one of ``t`` TP ranks; returns its last node.

    The input projections (queries, keys, values and the output gate z; each value head's write strength and
    decay: ModelConfig.linear_projections), then the causal convolution and the gated delta rule as one
    ``roofline`` node (ModelConfig.linear_recurrence_work at the profile's bf16 GEMM fit's peak rate and bandwidth:
    no profile field times such a kernel), marked ``context`` so the serving step costs it per call (a decode batch
    updates each sequence's state, a prompt chunk runs the chunked form), the gated RMSNorm of the output by z (one
    elementwise pass over two inputs, like SwiGLU's) and the output projection.  With SP each rank's shard is
    costed as if its state were at hand (the hand-off of the state between shards is not modelled)."""
    add = dag.nodes.append
    shapes = model.linear_projections(t)
    for name in ("linear_in_qkvz", "linear_in_ba"):
        n, k = shapes[name]
        add(_node(name, "gemm", quantized(name, (x,), tok * k), m=tok, n=n, k=k))
    flop, nbytes = model.linear_recurrence_work(batch, q_len, t)
    add(_node("linear_recurrence", "roofline", ("linear_in_qkvz", "linear_in_ba"), flop=flop, nbytes=nbytes,
              dtype="bf16", context=True))
    n, k = shapes["linear_out"]
    normed = elementwise("linear_gated_norm", ("linear_recurrence",), "act_mul", tok * k)
    add(_node("linear_out", "gemm", quantized("linear_out", (normed,), tok * k), m=tok, n=n, k=k))
    return "linear_out"


def _indexer(dag: LayerDAG, model: ModelConfig, phase: str, batch: int, q_len: int, kv_len: int, tok: int, sp: int,
             x: str, quantized: Callable[..., tuple], elementwise: Callable[..., str]) -> tuple[str, ...]:
    """DeepSeek Sparse Attention's lightning indexer ahead of the attention call; returns what the call waits for.

    Its query, key and head-weight projections (ModelConfig.indexer_projections; the query from the bottleneck's
    norm where there is one), the key's LayerNorm and its cache write at 1 byte plus a scale per 128
    (``index_cache_bytes_per_layer``), then its scoring of every query against every cached key (``indexer``, op
    ``roofline``: ModelConfig.indexer_scoring_work at the profile's fp8 GEMM fit's peak rate and bandwidth, no
    profile field timing such a kernel) and the top-k selection reading the scores back (``indexer_topk``).  The two context-wide nodes carry ``context``: the serving
    step costs them per call, as it does the attention."""
    add = dag.nodes.append
    for name, (n, k) in model.indexer_projections().items():
        dep = ("qkv_a_norm",) if name == "index_q" and model.is_mla and model.q_lora_rank else (x,)
        add(_node(name, "gemm", quantized(name, dep, tok * k), m=tok, n=n, k=k))
    elementwise("index_k_norm", ("index_k",), "norm", tok * model.index_head_dim)
    add(_node("index_cache_write", "memory", ("index_k_norm",), nbytes=2 * tok * model.index_cache_bytes_per_layer))
    flop, nbytes = model.indexer_scoring_work(batch, q_len, kv_len)
    add(_node("indexer", "roofline", ("index_q", "index_w", "index_cache_write"), flop=flop / sp, nbytes=nbytes / sp,
              dtype="fp8_e4m3", context=True))
    add(_node("indexer_topk", "memory", ("indexer",), context=True,
              nbytes=4 * batch * attended_pairs(q_len, kv_len) / sp))
    return ("indexer_topk",)


def _mla_projections(dag: LayerDAG, model: ModelConfig, layout: Parallelism, options: DagOptions,
                     impl: Implementation, tok: int, kvel: int, x: str, quantized: Callable[..., tuple],
                     elementwise: Callable[..., str], expand_tok: int | None = None) -> tuple[str, ...]:
    """Multi-head latent attention's projections up to the attention call; returns what the call waits for.

    The query's low-rank projection and the latent-with-rotary-key projection run as one GEMM replicated on every
    TP rank (vLLM / SGLang ``fused_qkv_a_proj``), then the two RMSNorms of the query bottleneck and the latent, the
    rank's heads of the query expansion, and of the latent's expansion into keys and values (``kv_b_proj``).  A
    prompt expands its new tokens' latents so; a decode step folds the same weights into the query and output
    instead (``W_UK``, ``W_UV``): the same multiply-adds per token, so one GEMM stands for both.  A chunk after
    cached context also expands the context's latents, which is not counted here; with SP a rank expands every
    prompt token's latent (``expand_tok``), not only its shard's.  RoPE on the queries' and the one shared key's
    rotary part, then the cache write of latent and rotary key."""
    add = dag.nodes.append
    t = layout.tp
    heads, rope = model.heads // t, model.qk_rope_head_dim
    qr, lat = model.q_lora_rank, model.kv_lora_rank + rope
    shapes = model.mla_projections(t)
    for name, dep in (("qkv_a", (x,)), ("q_b", ("qkv_a_norm",) if qr else (x,)), ("kv_b", ("qkv_a_norm",))):
        n, k = shapes[name]
        m = expand_tok if name == "kv_b" and expand_tok else tok
        add(_node(name, "gemm", quantized(name, dep, m * k), m=m, n=n, k=k))
        if name == "qkv_a":
            elementwise("qkv_a_norm", ("qkv_a",), "norm", tok * (qr + model.kv_lora_rank), copies=2 if qr else 1)
    rope_elems = tok * (heads + 1) * rope
    roped: tuple[str, ...] = ("q_b", "kv_b")
    if not options.rope_in_attention:
        roped = (elementwise("rope", roped, "rope", rope_elems, copies=2 if impl.rope.per_tensor else 1),)
    elementwise("kv_cache_write", roped, "kv_cache_write", tok * lat, elem_bytes=kvel)
    return roped + ("kv_cache_write",)


def _qk_norm(dag: LayerDAG, model: ModelConfig, layout: Parallelism, tok: int, heads: int, kvh: int,
             elementwise: Callable[..., str], kernels: int = 2) -> tuple[str, ...]:
    """The q/k RMSNorm between the QKV projection and RoPE (``model.qk_norm``); returns what RoPE waits for.

    The norm group over the queries and keys, launched ``kernels`` times (2: q then k; 1: both in one kernel,
    DagOptions.qk_norm_kernels).  ``per_layer`` normalises
    all heads at once, so with TP the heads' partial sums of squares are all-reduced first: one fp32 value per
    token for q and one for k (sglang 0.5.8 models/minimax_m2.py all-reduces both together; vllm 0.13.0's
    MiniMaxText01RMSNormTP does q and k separately)."""
    if not model.qk_norm:
        return ("qkv",)
    dep: tuple[str, ...] = ("qkv",)
    t = layout.tp
    if model.qk_norm == "per_layer" and t > 1:
        dag.nodes.append(_node("qk_norm_all_reduce", "collective", dep, op="all_reduce", nbytes=tok * 2 * 4,
                               group_size=t, scope=layout.tp_scope))
        dep = ("qk_norm_all_reduce",)
    return (elementwise("qk_norm", dep, "norm", tok * (heads + kvh) * model.head_dim, copies=kernels),)


def _moe(dag: LayerDAG, model: ModelConfig, layout: Parallelism, options: DagOptions, tok: int, t: int, el: int,
         x: str, impl: Implementation) -> tuple[str, ...]:
    """Add the MoE block after node ``x``; returns the names of its last nodes."""
    add = dag.nodes.append

    def quantized(gemm: str, dep: str, elems: float, launches: int = 1) -> tuple[str, ...]:
        return _input_quant(dag, impl, options, el, gemm, (dep,), elems, launches)

    # weight-only expert weights (gpt-oss mxfp4): the grouped GEMMs compute in the activation dtype, reading the
    # weights at their storage size
    weight_only = {"weight_bytes": model.expert_bytes_per_elem} if model.expert_weight_dtype else {}

    def experts(dep: str, active: int, m: int, ef: int, routed: int) -> str:
        # one grouped kernel, or (eager) a GEMM launch per expert hit
        launches = 1 if impl.experts_grouped else active
        add(_node("experts_gate_up", "grouped_gemm", quantized("experts_gate_up", dep, routed * h, launches),
                  kernels=launches, count=active, m=m, n=2 * ef, k=h, **weight_only))
        ea = impl.act_mul
        add(_node("experts_act_mul", "memory", ("experts_gate_up",), kernels=ea.kernels * launches,
                  nbytes=ea.bytes_per_element(el) * routed * ef, **_measured(impl, "act_mul")))
        add(_node("experts_down", "grouped_gemm", quantized("experts_down", "experts_act_mul", routed * ef, launches),
                  kernels=launches, count=active, m=m, n=h, k=ef, **weight_only))
        g = impl.expert_gather
        if g.kernels == 0:
            return "experts_down"
        # tokens gathered to their experts and the weighted results scattered back
        add(_node("expert_gather_scatter", "memory", ("experts_down",), kernels=g.kernels * (active if g.per_expert else 1),
                  nbytes=g.bytes_per_element(el) * routed * h))
        return "expert_gather_scatter"
    h, E, k = model.hidden_size, model.num_experts, model.top_k
    ep, group = layout.ep, layout.moe_group
    # every rank keeps every token (an all-reduce sums the experts' outputs) unless EP dispatches routed pairs
    gathers = options.ep_comm == "all_reduce" or ep == 1
    add(_node("router", "gemm", (x,), m=tok, n=E, k=h))
    # fp32 routing probabilities read and written (plus the top-k ids and weights, small beside them)
    add(_node("topk", "memory", ("router",), kernels=max(1, impl.router_topk.kernels), nbytes=2 * tok * E * 4))
    after_topk = "topk"
    e_scan = E // ep
    if impl.expert_scan.kernels:
        # each local expert's tokens found by scanning the int64 expert ids (tok x top_k) once per op
        add(_node("expert_scan", "memory", ("topk",), kernels=impl.expert_scan.kernels * e_scan,
                  nbytes=impl.expert_scan.kernels * e_scan * tok * k * 8))
        after_topk = "expert_scan"
    joins: list[str] = []

    def ep_share(pairs: int) -> tuple[float, int, int]:
        """(imbalance, token-expert pairs on the busiest rank, its experts hit) for ``pairs`` per rank on average
        over one rank's E/ep experts."""
        imb = options.moe_imbalance if options.moe_imbalance is not None else moe_imbalance(pairs, ep)
        loaded = math.ceil(pairs * imb)
        return imb, loaded, _active_experts(E // ep, loaded)

    if ep == 1 and group == t:
        # every device holds every expert, each TP-split; the grouped GEMM covers the experts hit
        ef = model.expert_ffn_size // t
        assigned = tok * k
        active = _active_experts(E, assigned)
        m = math.ceil(assigned / active)
        joins.append(experts(after_topk, active, m, ef, assigned))
        shared_tok, sf = tok, model.shared_experts * model.expert_ffn_size // t
    elif gathers:
        # every rank holds every token and runs its E/ep experts on the pairs routed to them: whole experts, or
        # for an EP degree below TP each split expert_tp ways (the ranks of one expert group run the same pairs
        # on their slices; the TP all-reduce below sums both); a MoE group wider than TP spans group / tp
        # data-parallel replicas (attention data parallelism: EP over them, or EP 1 with every expert TP-split
        # over the whole group, vLLM's default), whose tokens are all-gathered first (SGLang dp_gather, vLLM's
        # allgather_reducescatter), the same count on each
        reps = layout.moe_replicas
        moe_tok = tok * reps
        gathered = after_topk
        if reps > 1:
            add(_node("dp_moe_all_gather", "collective", (after_topk,), op="all_gather", nbytes=moe_tok * h * el,
                      group_size=reps, scope=layout.ep_scope))
            gathered = "dp_moe_all_gather"
        _, loaded, active = ep_share(math.ceil(moe_tok * k / ep))
        joins.append(experts(gathered, active, math.ceil(loaded / active),
                             model.expert_ffn_size // layout.expert_tp, loaded))
        shared_tok, sf = tok, model.shared_experts * model.expert_ffn_size // t
    else:
        if ep < t:
            raise ValueError(f"EP {ep} below TP {t} (experts split TP{t // ep} x EP{ep}) needs an all-reduce of the "
                             f"experts' outputs (ep_comm all_reduce, as TensorRT-LLM and SGLang run it); the all-to-all "
                             f"dispatch routes each TP rank's 1/{t} of the tokens to whole experts, so EP must be 1 or "
                             f"a multiple of TP {t}")
        # each TP rank routes its 1/tp share of the tokens; experts E/ep per rank, not TP-split
        local = math.ceil(tok / t)
        imb, loaded, active = ep_share(local * k)
        m = math.ceil(loaded / active)
        a2a = ep * local * k * h * el  # S = total bytes across the group (every token-expert pair)
        add(_node("ep_dispatch_all_to_all", "collective", (after_topk,), op="all_to_all", nbytes=a2a,
                  group_size=ep, scope=layout.ep_scope, imbalance=round(imb, 6)))
        ef = model.expert_ffn_size
        last = experts("ep_dispatch_all_to_all", active, m, ef, loaded)
        add(_node("ep_combine_all_to_all", "collective", (last,), op="all_to_all", nbytes=a2a,
                  group_size=ep, scope=layout.ep_scope))
        joins.append("ep_combine_all_to_all")
        shared_tok, sf = local, model.shared_experts * model.expert_ffn_size
    if model.shared_experts:
        add(_node("shared_gate_up", "gemm", quantized("shared_gate_up", x, shared_tok * h), m=shared_tok, n=2 * sf, k=h))
        add(_node("shared_act_mul", "memory", ("shared_gate_up",), kernels=impl.act_mul.kernels,
                  nbytes=impl.act_mul.bytes_per_element(el) * shared_tok * sf, **_measured(impl, "act_mul")))
        add(_node("shared_down", "gemm", quantized("shared_down", "shared_act_mul", shared_tok * sf), m=shared_tok,
                  n=h, k=sf))
        joins.append("shared_down")
    if gathers and group > t:
        # the partial sums of every replica's tokens: reduce-scattered over the whole MoE group, each replica's TP
        # group getting its own tokens back, then gathered across its TP ranks
        reps = layout.moe_replicas
        add(_node("dp_moe_reduce_scatter", "collective", tuple(joins), op="reduce_scatter", nbytes=reps * tok * h * el,
                  group_size=group, scope=layout.ep_scope))
        if t > 1:
            add(_node("tp_moe_all_gather", "collective", ("dp_moe_reduce_scatter",), op="all_gather",
                      nbytes=tok * h * el, group_size=t, scope=layout.tp_scope))
            return ("tp_moe_all_gather",)
        return ("dp_moe_reduce_scatter",)
    if ep == 1 or options.ep_comm == "all_reduce":
        if t > 1:
            op = "reduce_scatter" if options.tp_comm == "rs_ag" else "all_reduce"
            add(_node(f"tp_mlp_{op}", "collective", tuple(joins), op=op, nbytes=tok * h * el, group_size=t,
                      scope=layout.tp_scope))
            return (f"tp_mlp_{op}",)
    elif t > 1:
        # tokens were split across the TP ranks for routing: gather them back
        add(_node("tp_moe_all_gather", "collective", tuple(joins), op="all_gather", nbytes=tok * h * el,
                  group_size=t, scope=layout.tp_scope))
        return ("tp_moe_all_gather",)
    return tuple(joins)


def _active_experts(experts: int, assignments: int) -> int:
    """Expected distinct experts hit by ``assignments`` uniform picks (at least 1)."""
    if assignments <= 0:
        return 1
    hit = experts * (1.0 - (1.0 - 1.0 / experts) ** assignments)
    return max(1, min(experts, math.ceil(hit - 1e-9)))


def build_edge_dag(model: ModelConfig, phase: str, part: str, tokens: int, logit_tokens: int,
                   parallelism: Parallelism = Parallelism()) -> LayerDAG:
    """The non-layer work of a stage: ``embed`` (first stage), ``head`` (last stage) or ``pp_send`` (a stage boundary).

    ``tokens`` tokens pass through the stage; ``logit_tokens`` of them reach the LM head
    (the last prompt token in prefill, every sequence in decode).  Only TP, its scope and the
    PP scope of ``parallelism`` matter here.
    """
    el, h = model.weight_bytes_per_elem, model.hidden_size
    tp, tp_scope, pp_scope = parallelism.tp, parallelism.tp_scope, parallelism.pp_scope
    dag = LayerDAG(phase, model.name, edge_parallelism(parallelism), tokens, 1, 1)
    add = dag.nodes.append
    if part == "embed":
        add(_node("embedding", "memory", (), nbytes=2 * tokens * h * el))
    elif part == "head":
        add(_node("final_norm", "memory", (), nbytes=2 * logit_tokens * h * el))
        add(_node("lm_head", "gemm", ("final_norm",), m=logit_tokens, n=model.vocab_size // tp, k=h))
        if tp > 1:
            add(_node("logits_all_gather", "collective", ("lm_head",), op="all_gather",
                      nbytes=logit_tokens * (model.vocab_size // tp) * tp * el, group_size=tp, scope=tp_scope))
    elif part == "pp_send":
        # activations to the next stage: one send/recv pair per TP rank, in parallel
        add(_node("pp_send_recv", "collective", (), op="send_recv", nbytes=tokens * h * el, group_size=2,
                  scope=pp_scope))
    else:
        raise ValueError(f"edge part must be embed, head or pp_send, got {part!r}")
    return dag


def edge_parallelism(parallelism: Parallelism) -> Parallelism:
    """The part of ``parallelism`` the stage edges depend on: TP, its scope and the PP scope."""
    return Parallelism(tp=parallelism.tp, tp_scope=parallelism.tp_scope, pp_scope=parallelism.pp_scope)
