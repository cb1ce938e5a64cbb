"""The one adapter between the serving engine model and the planner's DAG costing (planner/dag.py, cost.py).

    from accelcal.planner.parallelism import Parallelism
    from accelcal.planner.serving.step_cost import StepCoster
    sc = StepCoster(profile, model, Parallelism(tp=2), engine=engine, weight_dtype="fp8_e4m3")
    t = sc.step_s(decode_seqs=32, decode_kv_mean=1500, chunks=((2048, 2048),))
    print(t, sc.breakdown(32, 1500, ()))

One engine step = every decoder layer over all T scheduled tokens (T = decodes + prefill chunk tokens):
the layer DAG ``build_layer_dag(model, "prefill", 1, T, T)`` gives the GEMMs, norms, rotary, KV writes
and TP collectives over T tokens; its attention node (with a sparse-attention indexer's scoring and top-k, the
nodes marked ``context``) is replaced by the decode part
(``attention("decode", decodes, 1, mean KV length)``) plus one prefill part per chunk
(``attention("prefill", 1, chunk, context so far incl. the chunk)``).  The stage edges add the embedding
over T tokens, the LM head over the sequences that produce a token this step (decodes + chunks that
end their prompt), and sampling: the engine's sampler kind over the logits all-gathered to the whole vocabulary
(the profile's ``sampler`` measurement, else the kind's bytes per logit at the copy bandwidth).  With PP a step's
sequences run as up to PP micro-batches in flight, with a send/recv per stage boundary, and the step takes the
slowest one's pass through the stages or the busiest stage's work over all of them, whichever is longer
(``micro_batches``).

Launches: a decode-only step whose batch is a captured CUDA-graph size (padded up when the preset
pads) is costed in graph mode at that padded batch; every other step eager.  fp8_e4m3 weights cost
the GEMMs from the profile's ``compute.fp8_e4m3`` (per-tensor scaled, as torch._scaled_mm measures
them, on inputs already in fp8), each after a kernel that quantizes its bf16 input (the implementation's
``act_quant`` group, costed from the profile's copy bandwidth); block-scaled weights are costed from the same entry and flagged, since no profile field
measures block scaling yet.  Activations and attention stay bf16 (``attention.bf16``); an fp8 KV cache
holds 1 byte per element, so attention reads K and V at 1 byte each at that entry's byte rate (the bytes
a paged fp8 kernel moves; its speed is not measured, and the estimate is flagged ``kv-dtype-not-measured``).
Every piece is memoised; the KV length is rounded to ``kv_round`` tokens for the memo.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from accelcal.calibrate.compose import shipped_covering
from accelcal.calibrate.profile import MissingCollective, MissingMeasurement
from accelcal.vocab import (DEFAULT_FP8_BLOCK, DTYPE_BYTES, FP8_SCALINGS, GROUPED_GEMM_DTYPES, SAMPLER_BYTES_PER_LOGIT, attended_pairs,
                            gemm_element_bytes)

from ..cost import Coster
from ..dag import DagOptions, build_edge_dag, build_layer_dag
from ..parallelism import Parallelism
from accelcal.models.implementation import Implementation
from accelcal.models import ModelConfig
from .engine import EnginePreset
from .moe_op import EngineMoeOp

__all__ = ["SMALL_ALL_REDUCE", "SMALL_MESSAGE_WARN_FACTOR", "STEP_PARTS", "StepCoster", "StepCostError",
           "replica_parallelism", "require_engine_ep"]

STEP_PARTS = {"attention": "attention", "memory": "memory-bound", "compute": "compute-bound",
              "communication": "communication", "launch": "launch", "host": "engine host work"}
"""The seconds keys of StepCoster.breakdown, in print order, and how outputs name them (``host`` only where an
engine's host work is set and shows beyond the device time: EnginePreset.host_step_s)."""

SMALL_ALL_REDUCE = "TP all-reduce of one decode token"
"""How the small-message extrapolation note and warning begin (the search groups the warnings by it)."""

SMALL_MESSAGE_WARN_FACTOR = 64
"""A decode all-reduce this many times smaller than the smallest message measured for it is a warning, not a
note: the fitted latency is then the large-message intercept (profiles/interconnect/h100-nvswitch-8.yaml, fitted to
a 128 MiB..4 GiB log, gives 127 us for 16 KiB over 8 H100s; the 4-GPU log of h100-nvswitch-4of8.yaml measured
24.3 us for 16 KiB over 4)."""


def replica_parallelism(tp: int, pp: int, dp: int, devices_per_node: int, ep: int = 1, experts: int = 0,
                        moe_tp: int = 0) -> Parallelism:
    """An engine replica's layout: TP inside a node while it fits, PP hand-offs inside while the replica fits.

    ``ep``: 1 (experts TP-split), ``tp`` (experts spread over the replica's TP group, as vLLM
    ``--enable-expert-parallel`` and SGLang ``--ep-size`` run them), a divisor of ``tp`` (the experts spread over
    ``ep`` subgroups of the TP group, each TP-splitting its experts ``tp / ep`` ways: TensorRT-LLM
    ``moe_tensor_parallel_size`` x ``moe_expert_parallel_size`` = TP, SGLang ``--ep-size`` below ``--tp``; engines
    whose EP is an all-to-all cannot, the step costing says so), or ``tp`` x k for k dividing ``dp``: the
    experts spread over k replicas' TP groups, whose attention runs data-parallel (SGLang
    ``--enable-dp-attention``, vLLM ``--data-parallel-size`` with expert parallelism, TensorRT-LLM
    ``enable_attention_dp``); each replica keeps its own requests and KV, and their MoE layers meet in the EP
    group's collectives.  ``experts``: the model's routed experts, which ``ep`` must divide (0: not checked).
    ``moe_tp``: with ``ep`` 1, every expert TP-split over ``tp`` x k devices, k dividing ``dp`` (k replicas whose
    attention runs data-parallel share the expert layers: vLLM ``--data-parallel-size`` for a MoE model without
    ``--enable-expert-parallel``, whose expert layers form one (DP x TP) tensor-parallel group; SGLang
    ``--enable-dp-attention`` without ``--ep-size``); 0 or ``tp``: the experts split as ``ep`` says."""
    if moe_tp and ep != 1:
        raise ValueError(f"--moe-tp {moe_tp} with --ep {ep}: --moe-tp splits every expert over the replicas instead of "
                         f"spreading the experts, so it needs --ep 1; drop --moe-tp or --ep")
    if moe_tp == tp:
        moe_tp = 0
    if moe_tp:
        k = moe_tp // tp
        if moe_tp % tp or k < 2 or dp % k:
            ways = sorted({tp * k for k in range(2, dp + 1) if dp % k == 0})
            raise ValueError(f"--moe-tp {moe_tp} with --tp {tp} --dp {dp}: --moe-tp must be --tp {tp} x k with k >= 2 "
                             f"dividing --dp {dp} (k replicas share the expert layers); here one of {ways}"
                             + (" (none: --dp must be 2 or more)" if not ways else ""))
    fits = sorted(e for e in {d for d in range(1, tp + 1) if tp % d == 0} | {tp * k for k in range(1, dp + 1)
                                                                          if dp % k == 0}
                  if e == 1 or not experts or experts % e == 0)
    if ep != 1 and ((ep % tp and tp % ep) or (ep > tp and dp % (ep // tp)) or (experts and experts % ep)):
        if ep % tp and tp % ep:
            need = f"--ep {ep} neither divides --tp {tp} nor is a multiple of it"
        elif experts and experts % ep:
            need = f"{experts} experts do not spread evenly over {ep} devices ({experts} % {ep} = {experts % ep})"
        else:
            need = (f"--ep {ep} with --tp {tp} spreads the experts over {ep // tp} replicas, so --dp must be a multiple "
                    f"of {ep // tp} (attention data-parallel, e.g. --tp {tp} --dp {ep // tp} --ep {ep}), got --dp {dp}")
        ways = "TP-split (--ep 1)" + (f", spread over the replica's TP group (--ep {tp}) or over groups of it, "
                                      f"each TP-splitting its experts (--ep dividing {tp})" if tp > 1 else "")
        raise ValueError(f"--ep {ep}: {need}; experts are {ways}, or spread over k replicas' TP groups with attention "
                         f"data-parallel (--ep {tp} x k, k dividing --dp): here one of {fits}")
    scope = "intra_node" if tp <= devices_per_node else "inter_node"
    # a MoE group wider than the TP group spans group / tp replicas of tp x pp devices each
    group = moe_tp or ep
    ep_span = group * pp if group > tp else group
    ep_scope = "intra_node" if ep_span <= devices_per_node else "inter_node"
    return Parallelism(tp=tp, pp=pp, dp=dp, ep=ep, tp_scope=scope, ep_scope=ep_scope,
                       pp_scope="intra_node" if tp * pp <= devices_per_node else "inter_node", moe_tp=moe_tp)


def require_engine_ep(engine: EnginePreset, tp: int, ep: int) -> None:
    """ValueError when ``engine`` cannot run an EP degree below TP (EnginePreset.ep_below_tp), naming the ones it can."""
    if 1 < ep < tp and not engine.ep_below_tp:
        raise ValueError(f"--ep {ep} with --tp {tp}: {engine.name} does not split the experts TP{tp // ep} x EP{ep} "
                         f"(ep_below_tp false: {engine.sources.get('ep_below_tp', 'its preset')}); it runs --ep 1 or "
                         f"--ep {tp} (or --tp x k with attention data parallelism); TensorRT-LLM and SGLang run EP "
                         f"degrees that divide TP")


class ExpertSplitIssue(NamedTuple):
    """Why an engine refuses a layout's split of the routed experts (expert_split_issue)."""

    unequal: bool
    """True: unequal slices, which no engine loads; False: partial fp8 blocks, which the engine's loader refuses."""
    reason: str
    """The arithmetic, the same for every layout with this split (a rejection's reason)."""
    layout: str
    """The flags that ask for the split (``--tp 8``, ``--moe-tp 6``, ``--tp 8 --ep 2``)."""
    fits: tuple[str, ...]
    """The layouts of the experts the engine runs that fit here, as flags."""
    source: str
    """Where the rule comes from."""

    @property
    def message(self) -> str:
        """The whole message: layout, reason, source, what fits."""
        return (f"{self.layout}: {self.reason} ({self.source}); layouts of the experts that fit here: "
                + (", ".join(self.fits) or "none"))


_EQUAL_SLICES_SOURCE = ("the rule as read in SGLang's source, taken for every engine: sglang 0.5.9 wheel "
                        "srt/layers/moe/fused_moe_triton/layer.py asserts intermediate_size % moe_tp_size == 0")


def expert_split_issue(model: ModelConfig, par: Parallelism, engine: EnginePreset, weight_dtype: str = "bf16",
                       fp8_scaling: str = "per_tensor") -> ExpertSplitIssue | None:
    """Why ``engine`` refuses to load ``par``'s split of a routed expert's FFN (``Parallelism.expert_tp`` ways), or
    None: unequal slices, which no engine loads, or, for block-scaled fp8 experts on an engine documented to refuse
    it (EnginePreset.moe_block_aligned), slices that are not whole blocks in both block dimensions (gate/up's output
    by block_n, down's input by block_k).  Its ``fits`` lists the expert layouts this engine runs on these degrees
    that have neither problem."""
    k = par.expert_tp
    if not model.is_moe or k <= 1:
        return None
    width = model.expert_ffn_size
    checked = weight_dtype == "fp8_e4m3" and fp8_scaling == "block" and engine.moe_block_aligned
    blocks = tuple(model.weight_block_size or DEFAULT_FP8_BLOCK) if checked else ()
    assumed = "" if model.weight_block_size else " (assumed: the model states no weight_block_size)"

    def fits(n: int) -> bool:
        return width % n == 0 and all((width // n) % b == 0 for b in blocks)

    if fits(k):
        return None
    tp, dp, E = par.tp, par.dp, model.num_experts
    options = [(f"--ep {tp * j}" + (" (whole experts)" if j == 1 else f" (whole experts over {j} replicas)"), 1)
               for j in range(1, dp + 1) if dp % j == 0 and tp * j > 1 and E % (tp * j) == 0]
    if engine.ep_below_tp:
        options += [(f"--ep {e} (experts split TP{tp // e} x EP{e})", tp // e) for e in range(2, tp) if tp % e == 0
                    and E % e == 0]
    options += [(f"--ep 1 (every expert split {tp} ways)" if tp > 1 else "--ep 1 (whole experts in every replica)",
                 tp)] + [
        (f"--moe-tp {tp * j} (every expert split over {j} replicas)", tp * j) for j in range(2, dp + 1) if dp % j == 0]
    layout = (f"--moe-tp {k}" if par.moe_tp else f"--tp {tp} --ep {par.ep} (experts split TP{k} x EP{par.ep})"
              if par.ep > 1 else f"--tp {tp}")
    ok = tuple(flag for flag, n in options if fits(n))
    if width % k:
        return ExpertSplitIssue(True, f"{model.name}'s routed experts are {width} wide and {width} % {k} = {width % k}: "
                                      f"an engine splits an expert's FFN in equal slices", layout, ok,
                                _EQUAL_SLICES_SOURCE)
    per = width // k
    bad = [b for b in blocks if per % b]
    return ExpertSplitIssue(False, f"{model.name}'s block-scaled fp8 experts ({width} wide, blocks of "
                                   f"{' x '.join(map(str, blocks))}{assumed}) would be {per} wide per device, and {per} % "
                                   f"{bad[0]} = {per % bad[0]}: {engine.name} loads only whole blocks", layout, ok,
                            f"engine key moe_block_aligned: {engine.sources.get('moe_block_aligned', 'its preset')}")


def grouped_gemm_note(profile: Any, dtype: str) -> str:
    """How a MoE step's grouped expert GEMMs in ``dtype`` are costed from ``profile``: corrected by its measured
    grouped kernels (their ratio to the stacked-GEMM estimate; another dtype's standing in where ``dtype``'s are
    not timed, accelcal.vocab.GROUPED_GEMM_DTYPES), or as the stacked GEMM alone."""
    src = profile.grouped_source_dtype(dtype)
    if src is not None:
        table = profile.compute[src].grouped_ratio_table(*gemm_element_bytes(src))
        ratios = [r for _, r in table]
        stand_in = f"; {src}'s stand in for {dtype}, whose grouped kernels are not timed" if src != dtype else ""
        return (f"routed experts: each grouped expert GEMM is the one GEMM with the experts stacked along N times the "
                f"profile's measured grouped / stacked ratio ({min(ratios):.3g}..{max(ratios):.3g} over "
                f"{table[0][0]:g}..{table[-1][0]:g} tokens per expert, compute.{src}.grouped_points{stand_in})")
    timed = ", ".join(GROUPED_GEMM_DTYPES)
    return (f"routed experts: each grouped expert GEMM is costed as one GEMM with the experts stacked along N, as "
            f"efficient as a dense {dtype} GEMM of that size; the profile has no grouped-kernel measurement (the "
            f"kernel suite's grouped_gemm op times {timed} grouped kernels, which stand in for other dtypes; "
            f"calibrate with this accelcal on a Hopper or Blackwell GPU), so MoE steps, prefill most, are likely "
            f"optimistic: published MoE measurements at light load put TTFT well above such predictions "
            f"(benchmarks/serving_error_breakdown.py, benchmarks/RESULTS.md)")


class StepCostError(ValueError):
    """The profile cannot cost a step (a missing dtype or collective); the message says what is missing."""


class _ServingCoster(Coster):
    """Coster whose GEMMs run in the weight dtype while attention and elementwise stay in the activation dtype."""

    def __init__(self, profile: Any, gemm_dtype: str, act_dtype: str, cuda_graphs: bool, inter: Any,
                 ar_kernel: str = "", ar_kernel_max_bytes: float = 0.0, kv_dtype: str | None = None) -> None:
        super().__init__(profile, dtype=act_dtype, cuda_graphs=cuda_graphs, inter_node_profile=inter, kv_dtype=kv_dtype,
                         gemm_dtype=gemm_dtype)
        self.ar_kernel, self.ar_kernel_max_bytes = ar_kernel, ar_kernel_max_bytes

    def collective(self, op: str, nbytes: float, group_size: int, scope: str, kernel: str | None = None):
        # The engine's own all-reduce inside a node, up to the size it hands to NCCL; the Coster's checks and
        # messages apply to it as to the library's.
        if (kernel is None and self.ar_kernel and op == "all_reduce" and scope == "intra_node"
                and (not self.ar_kernel_max_bytes or nbytes <= self.ar_kernel_max_bytes)):
            kernel = self.ar_kernel
        return super().collective(op, nbytes, group_size, scope, kernel)


class StepCoster:
    """Costs engine steps of one replica from one profile; memoised."""

    def __init__(self, profile: Any, model: ModelConfig, parallelism: Parallelism, engine: EnginePreset,
                 weight_dtype: str = "bf16", kv_dtype: str = "bf16", inter_node_profile: Any = None,
                 implementation: str = "fused", fp8_scaling: str = "per_tensor", kv_round: int = 32,
                 moe_table: Any = None) -> None:
        """One replica laid out as ``parallelism`` (its TP, PP and their scopes; DP replicas are costed alike);
        ``moe_table``: a published table of the engine's MoE op on this device (calibrate.moe_table.MoeOpTable),
        whose time replaces the profile's estimate of the routed experts where it has the model's shape
        (moe_op.EngineMoeOp)."""
        tp, pp = parallelism.tp, parallelism.pp
        self.profile = profile
        have = profile.dtypes()
        name = getattr(profile.identity, "name", "?")
        if weight_dtype not in have:
            raise StepCostError(f"--weight-dtype {weight_dtype}: profile {name} has no {weight_dtype} GEMM measurements "
                                f"(compute.{weight_dtype}); it has {have}"
                                + ("; measure fp8 on a device that supports it (accelcal calibrate)" if "fp8" in weight_dtype
                                   else "; the serving model costs the 16- and 8-bit weights engines serve (bf16, "
                                        "fp8_e4m3): measure bf16 with accelcal calibrate --quick (a --smoke sweep "
                                        "times fp32 only), or plan layouts in the profile's dtype with accelcal plan "
                                        "without --engine" if weight_dtype == "bf16" else ""))
        act = "bf16" if "bf16" in have else model.weight_dtype
        if act not in have:
            raise StepCostError(f"profile {name} has no bf16 compute data for the activations; it has {have}")
        if fp8_scaling not in FP8_SCALINGS:
            raise ValueError(f"fp8 scaling must be one of {list(FP8_SCALINGS)}, got {fp8_scaling!r}")
        model.require_tp_divides_heads(tp)
        if pp > model.layers:
            raise ValueError(f"pp({pp}) > layers({model.layers}): every pipeline stage needs a layer")
        self.model = dataclasses.replace(model, weight_dtype=act, kv_dtype=act)
        self.tp, self.pp, self.engine = tp, pp, engine
        self.kv_dtype, self.weight_dtype = kv_dtype, weight_dtype
        self.parallelism = parallelism
        self.tp_scope, self.pp_scope = parallelism.tp_scope, parallelism.pp_scope
        self.impl = Implementation.from_name(implementation)
        self.el = self.model.weight_bytes_per_elem
        self.notes: list[str] = []
        self.warnings: list[str] = []
        """What can move the figures by many times (an extrapolation orders of magnitude past the measured data)."""
        # fp8 GEMMs on bf16 activations: each projection's input is quantized by a kernel of its own first
        self._dag_options = DagOptions(gemm_input_quant=DTYPE_BYTES[weight_dtype] < DTYPE_BYTES[act],
                                       ep_comm=engine.ep_comm, qk_norm_kernels=engine.qk_norm_kernels,
                                       rope_in_attention=engine.rope_in_attention)
        if self._dag_options.gemm_input_quant:
            q = self.impl.act_quant
            self.notes.append(f"{weight_dtype} GEMMs: each projection's {act} input is quantized first ({q.kernels} "
                              f"kernel(s), {q.bytes_per_element(DTYPE_BYTES[act]):g} bytes per input element at the "
                              f"profile's copy bandwidth; implementation {self.impl.name}, group act_quant)")
        self.kv_round = kv_round
        if model.is_mla:
            d, p = model.attention_shape("decode", tp), model.attention_shape("prefill", tp)
            self.notes.append(f"multi-head latent attention: decodes attend the cached latent ({d.heads} query heads "
                              f"over {d.head_dim}-wide keys per token whose first {d.v_head_dim} columns are the values), "
                              f"prompts the latent "
                              f"expanded into {p.heads} heads of {p.head_dim}-wide keys and {p.v_head_dim}-wide values; "
                              f"both at the profile's fitted rates for standard attention (no MLA kernel is measured), "
                              f"and a chunk's expansion of its cached context is not counted")
        if model.has_indexer:
            self.notes.append(f"sparse attention: each query attends at most {model.index_topk} keys (as many pairs "
                              f"as a window of that size); the indexer scores every cached key with {model.index_heads} "
                              f"heads of {model.index_head_dim}, one GEMM-shaped kernel in the engines (DeepGEMM's fp8 "
                              f"MQA logits) that no profile field times, costed as a roofline of the profile's "
                              f"{'fp8_e4m3' if 'fp8_e4m3' in profile.dtypes() else act} GEMM fit, and its top-k reads "
                              f"the scores back; the KV pool holds its "
                              f"{model.index_cache_bytes_per_layer}-byte key per token and layer")
        require_engine_ep(engine, tp, parallelism.ep)
        if parallelism.ep == tp > 1 and model.is_moe:
            how = ("every rank runs all its tokens' pairs routed to its experts and the TP all-reduce sums them"
                   if engine.ep_comm == "all_reduce" else "each rank's tokens dispatched to the experts' ranks and "
                   "combined back (all-to-all)")
            self.notes.append(f"experts spread over the TP group: {model.num_experts // tp} whole experts on each of "
                              f"{tp} ranks; {how} ({engine.name} ep_comm {engine.ep_comm})")
        if 1 < parallelism.ep < tp:
            self.notes.append(f"experts split TP{parallelism.expert_tp} x EP{parallelism.ep}: each of {parallelism.ep} "
                              f"groups of {parallelism.expert_tp} ranks holds {model.num_experts // parallelism.ep} "
                              f"experts, each TP-split {parallelism.expert_tp} ways; every rank runs every token's pairs "
                              f"routed to its group, and the TP all-reduce sums the groups' outputs")
        if parallelism.moe_group > tp:
            how = ("their tokens all-gathered into the experts and the sums reduce-scattered back"
                   if engine.ep_comm == "all_reduce" or parallelism.ep == 1
                   else "the routed pairs dispatched to the experts and combined back")
            transport = (f"{engine.name} ep_comm {engine.ep_comm}" if parallelism.ep > 1
                         else "no EP transport: every expert TP-split")
            group = (f"each EP group of {parallelism.ep} devices spans" if parallelism.ep > 1 else
                     f"the expert layers (every expert TP-split {parallelism.expert_tp} ways) span")
            self.notes.append(f"attention data-parallel: {group} "
                              f"{parallelism.moe_replicas} replicas of TP{tp}, each with its own requests and KV pool, {how} "
                              f"({transport}); each replica serves its share of the "
                              f"clients, and the group's replicas are simulated together in lockstep (the MoE layers "
                              f"meet in the group's collectives every forward pass, so every step lasts as long as "
                              f"the slowest replica's: one replica's prefill holds the others' decodes); the steady "
                              f"state (--method steady, the search's first pass) costs each replica alone")
        if model.linear_layers:
            self.notes.append(f"hybrid linear attention: {model.linear_layers} of {model.layers} layers run Gated "
                              f"DeltaNet (no KV cache; each sequence keeps a {model.linear_state_bytes(tp) / 1e6:.3g} MB "
                              f"state per such layer on each rank, {model.linear_state_dtype} recurrent state), its "
                              f"convolution and delta rule costed per call as a roofline of the profile's bf16 GEMM fit "
                              f"(no profile field times such a kernel: linear-attention-not-measured); the "
                              f"{model.full_attention_layers} softmax-attention layers at the fitted attention rates")
        if weight_dtype == "fp8_e4m3" and fp8_scaling == "block":
            self.notes.append("block-scaled fp8 GEMMs costed from compute.fp8_e4m3 (per-tensor measurements): the "
                              "profile has no block-scaled fp8 data")
        if DTYPE_BYTES[kv_dtype] != DTYPE_BYTES[act]:
            self.notes.append(f"{kv_dtype} KV cache: capacity and attention's K/V reads at {DTYPE_BYTES[kv_dtype]} "
                              f"byte(s) per element, at the byte rate of attention.{act} (no {kv_dtype} attention "
                              f"kernel measured)" + self._kv_dtype_gain(profile, model, tp, act, kv_dtype))
        caps = [c for c in (engine.tp_all_reduce_kernel_max_bytes,
                            engine.tp_all_reduce_kernel_max_tokens * model.hidden_size * DTYPE_BYTES[act]) if c]
        ar_limit_bytes = min(caps) if caps else 0.0
        self._costers = {g: _ServingCoster(profile, weight_dtype, act, g, inter_node_profile, engine.tp_all_reduce_kernel,
                                           ar_limit_bytes, kv_dtype) for g in (False, True)}
        self._note_all_reduce_kernel(engine, ar_limit_bytes)
        self._note_small_all_reduce(engine, ar_limit_bytes)
        self._note_small_ep_messages(engine)
        self._head = {g: Coster(profile, dtype=act, cuda_graphs=g, inter_node_profile=inter_node_profile) for g in (False, True)}
        self._note_pp_hand_off()
        kind = engine.sampler
        how = ("measured (the profile's sampler section)" if self._head[False].measures_sampler(kind) else
               f"estimated: {SAMPLER_BYTES_PER_LOGIT[kind]:g} bytes per logit at the profile's copy bandwidth "
               f"(sampler-not-measured: calibrate with this accelcal to time it)")
        self.notes.append(f"sampling: {engine.name} runs the {kind} sampler over the logits all-gathered to the whole "
                          f"vocabulary ({model.vocab_size} per sequence), {how}")
        if model.expert_weight_dtype:
            self.notes.append(f"{model.name}'s routed experts are stored {model.expert_weight_dtype} "
                              f"({model.expert_bytes_per_elem:g} bytes per weight): their GEMMs are costed from the "
                              f"profile's {weight_dtype} GEMMs with the weight reads at that size; the in-kernel "
                              f"dequantisation is not measured, so compute-bound expert GEMMs (prefill) come out as "
                              f"fast as {weight_dtype} ones (benchmarks/RESULTS.md: gpt-oss-120b TTFT about half "
                              f"the published measurements)")
        try:
            self.moe_op = EngineMoeOp.resolve(moe_table, profile, model, parallelism, engine, weight_dtype, fp8_scaling)
        except ValueError as exc:
            raise StepCostError(str(exc)) from None
        if self.moe_op.note:
            self.notes.append(self.moe_op.note)
        if model.is_moe and self.impl.experts_grouped and not self.moe_op.active:
            # per-expert GEMMs (torch-eager) cost as plain GEMMs
            self.notes.append(grouped_gemm_note(profile, weight_dtype))
        if model.sliding_layers:
            self.notes.append(f"{model.sliding_layers} of {model.layers} layers attend through a "
                              f"{model.sliding_window}-token window: a step's attention is the layers' mean, the "
                              f"windowed ones over the keys their window reaches; in the KV pool each sequence "
                              f"holds its tokens in the {model.full_attention_layers} full-attention layers and its "
                              f"last {model.sliding_window} in the windowed ones (vLLM's hybrid KV cache manager; "
                              f"TensorRT-LLM's and SGLang's separate pools per window are taken as one)")
        self._memo: dict[tuple, Any] = {}
        self._extrapolated_comm: set[str] = set()  # collective answers noted as extrapolated (_note_extrapolated)
        # CUDA/HIP graphs exist on GPUs only: an engine preset's graph sizes do not apply to a CPU device
        self._device_graphs = getattr(profile.identity, "device_type", "cuda") in ("cuda", "rocm")
        # attention the profile never timed is costed at the GEMM roofline (Profile.attention_time_s): say so here,
        # as the layer plan's extrapolation list does, since nothing else in predict's output would
        act_dt = self._costers[False].dtype
        unmeasured = [ph for ph in ("prefill", "decode") if ph not in profile.attention.get(act_dt, {})]
        if unmeasured:
            self.notes.append(f"attention: the profile has no {act_dt} {' or '.join(unmeasured)} attention "
                              f"measurements (it has {sorted(profile.attention) or 'none'}), so those calls are costed "
                              f"as two GEMM-like passes at compute.{act_dt}'s roofline (not-measured): calibrate to "
                              f"time them")
        eager = self._costers[False].launch
        if "fallback" in eager.flags and self._device_graphs:
            self.notes.append(f"eager steps (prefill and mixed; decode batches without a captured graph): {eager.detail}")
        # the engines split layers as evenly as they can, the remainder one more on some stages (vLLM and SGLang
        # distributed/utils.py get_pp_indices): the busiest stage holds ceil(layers / pp), each costed as the mean
        # layer (a MoE model's few dense layers sit in the first stage, so its MoE-only stages run a little longer)
        self.layers_per_stage = math.ceil(model.layers / pp)

    @staticmethod
    def _kv_dtype_gain(profile: Any, model: ModelConfig, tp: int, act: str, kv_dtype: str) -> str:
        """What the smaller cache elements do to a decode step's attention (a reference step of ``batch`` sequences
        at ``kv_len`` tokens): nothing where the profile's decode-attention fit is compute-bound at this model's query
        heads per KV head."""
        a = model.attention_shape("decode", tp)
        heads, kvh = a.heads, a.kv_heads
        batch, kv_len = 32, 2048
        try:
            t = [profile.attention_time_s("decode", batch, 1, kv_len, heads, kvh, a.head_dim, act, kv_dtype=k,
                                          v_head_dim=a.v_head_dim, shared_kv=a.shared_kv).time_s for k in (act, kv_dtype)]
        except (MissingMeasurement, ValueError):
            return ""
        if t[1] < 0.99 * t[0]:
            return (f"; decode attention {t[1] / t[0]:.2f}x the {act} cache's (a reference step: {batch} sequences at "
                    f"{kv_len} tokens, whatever the load)")
        return (f"; decode attention unchanged: with {heads // max(1, kvh)} query heads per KV head the profile's "
                f"attention.{act}.decode fit is compute-bound, so the {kv_dtype} cache adds capacity only")

    def _all_reduces(self, scope: str) -> list:
        """The all_reduce entries (the library's and any engine kernel's) of the profile that costs ``scope``."""
        return [c for c in getattr(self._costers[False].answering(scope), "collectives", ())
                if c.op == "all_reduce" and c.scope == scope]

    def _note_all_reduce_kernel(self, engine: EnginePreset, limit_bytes: float) -> None:
        """Say which all-reduce the TP groups get, and when the profile cannot answer for the engine's kernel."""
        k = engine.tp_all_reduce_kernel
        if not k or self.tp < 2 or self.tp_scope != "intra_node":
            return
        colls = self._all_reduces("intra_node")
        if not colls:
            return  # no intra-node all-reduce at all: costing says what is missing
        name = getattr(self.profile.identity, "name", "?")
        if any(c.kernel == k for c in colls):
            upto = f"up to {limit_bytes / 2**20:.3g} MiB, the collective library above" if limit_bytes else "at every size"
            self.notes.append(f"TP all-reduce: {engine.name}'s own kernel {k} ({name}'s entries for it) {upto}")
        else:
            have = sorted({c.kernel for c in colls if c.kernel})
            self.notes.append(f"TP all-reduce: {engine.name} runs its own kernel {k}, but {name} has no all_reduce "
                              f"entries for it (kernel-not-measured; it has {have or 'library entries only'}): costed "
                              f"from the collective library's entries; import a latency table of the kernel "
                              f"(docs/collectives.md) or pass --engine-arg tp_all_reduce_kernel= to say NCCL")

    def _note_small_all_reduce(self, engine: EnginePreset, limit_bytes: float) -> None:
        """Say so when a decode step's all-reduce (one token's hidden state) is smaller than every message the
        profile measured for it: a latency fitted to large messages only can be off by many times for a few
        kilobytes."""
        if self.tp < 2:
            return
        small = self.model.hidden_size * self.el
        scope = self.tp_scope
        prof = self._costers[False].answering(scope)
        colls = self._all_reduces(scope)
        # an engine's own all-reduce kernel runs inside a node only (Profile.collective_time_s answers it there)
        k = engine.tp_all_reduce_kernel if scope == "intra_node" else None
        kernel = k if k and any(c.kernel == k for c in colls) and not (limit_bytes and small > limit_bytes) else None
        mine = [c for c in colls if c.kernel == kernel and c.quality is not None]
        # the entry for this group size answers the cost when there is one: its range is the one that matters
        mins = [c.quality.range_min for c in mine if c.group_size == self.tp] or [c.quality.range_min for c in mine]
        if not mins or small >= min(mins):
            return
        try:
            est = prof.collective_time_s("all_reduce", small, self.tp, scope, kernel)
        except MissingMeasurement:
            return  # costing says what is missing
        where = "" if scope == "intra_node" else f", across nodes ({getattr(prof.identity, 'name', '?')})"
        name = getattr(prof.identity, "name", "")
        better = shipped_covering("all_reduce", scope, getattr(prof.identity, "device_name", ""), self.tp, small,
                                  exclude=name)
        flag = "--interconnect" if scope == "intra_node" else "--inter-node-profile"
        msg = (f"{SMALL_ALL_REDUCE} ({small:g} B over {self.tp} ranks{where}) costs {est.time_s * 1e6:.1f} us, "
               f"extrapolated below the smallest message measured ({min(mins):.4g} B; {est.detail}): measure small "
               f"messages (accelcal collectives) or import an nccl-tests log that has them"
               + (f"; shipped for this device with such messages measured: {', '.join(better)} (pass it as {flag})"
                  if better else ""))
        if small * SMALL_MESSAGE_WARN_FACTOR <= min(mins):
            # a latency fitted to messages this much larger is the large-message intercept, and every decode step
            # pays it twice per layer: the figures can be off by many times
            msg += (f"; the smallest measured message is {min(mins) / small:.0f} x larger, so the latency is the "
                    f"large-message fit's intercept, paid twice per layer in every decode step")
            self.warnings.append(msg)
        else:
            self.notes.append(msg)

    def _note_small_ep_messages(self, engine: EnginePreset) -> None:
        """With attention data-parallel (EP wider than TP), say when a decode step's EP collective (one token from
        each replica, gathered, or its routed pairs) is smaller than every message the profile measured for the
        group's scope: its latency then comes from large messages only."""
        ep, reps = self.parallelism.ep, self.parallelism.moe_replicas
        if reps < 2:
            return
        h_bytes = self.model.hidden_size * self.el
        small = reps * h_bytes if engine.ep_comm == "all_reduce" or ep == 1 else ep * self.model.top_k * h_bytes
        scope = self.parallelism.ep_scope
        mins = [c.quality.range_min for c in getattr(self._costers[False].answering(scope), "collectives", ())
                if c.scope == scope and c.quality is not None]
        if mins and small < min(mins):
            self.warnings.append(f"attention data-parallel: a decode step's MoE collective ({small:g} B: one token's "
                                 f"hidden state from each of {reps} replicas"
                                 f"{'' if engine.ep_comm == 'all_reduce' or ep == 1 else ', routed'}) "
                                 f"is {min(mins) / small:.0f} x smaller than the smallest {scope} message the profile "
                                 f"measured ({min(mins):.4g} B): its latency is extrapolated from large messages; measure "
                                 f"small messages (accelcal collectives) or import an nccl-tests log that has them")

    def _note_pp_hand_off(self) -> None:
        """Say how PP stages are costed, and when the PP hand-offs come from the fabric's all-reduce (no send_recv
        measured)."""
        if self.pp < 2:
            return
        self.notes.append(f"PP {self.pp}: a step's sequences run as up to {self.pp} micro-batches in flight, one per "
                          f"stage as engines keep them, and a step takes the slowest micro-batch's pass through every "
                          f"stage or the busiest stage's work over all of them: where decode is memory-bound each "
                          f"stage still reads its weights once per micro-batch, so PP saves memory per device more "
                          f"than time")
        try:  # the Coster picks the profile that answers this scope, as the hand-off's costing does
            est = self._head[False].collective("send_recv", self.model.hidden_size * self.el, 2, self.pp_scope)
        except MissingMeasurement:
            return  # costing says what is missing
        if "derived" in est.flags:
            self.notes.append(f"PP hand-offs ({self.pp_scope}): {est.detail}; import an nccl-tests sendrecv_perf log "
                              f"(accelcal import nccl-tests) or run accelcal collectives to measure them")

    # -- pieces ---------------------------------------------------------------------------------
    def _wrap(self, fn):
        try:
            return fn()
        except MissingMeasurement as exc:  # it names what the profile lacks
            msg = exc.args[0] if exc.args else str(exc)
            dpn = int(self.profile.identity.devices_per_node)
            ep, group = self.parallelism.ep, self.parallelism.moe_group
            layout = (f"TP={self.tp} PP={self.pp}" + (f" EP={ep}" if ep > 1 else "")
                      + (f" MoE-TP={self.parallelism.expert_tp}" if ep == 1 and group > self.tp else ""))
            if not isinstance(exc, MissingCollective):  # the device's own data (memory, GEMMs, ...): no fabric fixes it
                raise StepCostError(f"the profile cannot cost {layout}: {msg}") from None
            if dpn == 1 and not self.profile.collectives:
                # a one-device profile: the fix is the node's fabric, not the inter-node links its message lists
                from accelcal.calibrate.compose import shipped_interconnects

                ships = shipped_interconnects("all_reduce", "intra_node")
                raise StepCostError(
                    f"the profile cannot cost {layout}: {self.profile.identity.name} describes one "
                    f"device and has no collectives; pass the node's intra-node fabric with --interconnect (it also "
                    f"sets the devices per node)" + (f" (shipped: {'; '.join(ships)})"
                                                     if ships else "") +
                    ", and for layouts wider than a node --inter-node-profile") from None
            spans = (self.tp_scope == "inter_node" and self.tp * self.pp > dpn) or group > dpn
            node_fabric = any(c.scope == "intra_node" for c in self.profile.collectives)  # composed or measured
            if not spans and node_fabric:
                # the node's fabric is there and lacks this collective: the profile's own message says what to import
                raise StepCostError(f"the profile cannot cost {layout}: {msg}") from None
            where = (f"with {dpn} device(s) per node in {self.profile.identity.name}, {layout} spans nodes; "
                     if spans else "")
            if node_fabric:
                fix = "pass the fabric between the nodes with --inter-node-profile"
            else:
                fix = ("pass the node's intra-node fabric with --interconnect (it also sets the devices per node) and, "
                       "for layouts wider than a node, --inter-node-profile")
            raise StepCostError(f"the profile cannot cost {layout}: {msg}; {where}{fix}") from None

    def costed_layer(self, tokens: int, graphs: bool = False):
        """The CostedDAG of one decoder layer over ``tokens`` tokens (its attention node still the DAG's own), as
        the steps cost it: the engine's MoE op from the table where it answers (EngineMoeOp)."""
        coster = self._costers[graphs]
        dag = build_layer_dag(self.model, "prefill", 1, tokens, tokens, self.parallelism, self.impl, self._dag_options)
        return self.moe_op.apply(self._wrap(lambda: coster.cost_dag(dag, self.el)), tokens, coster.launch_of)

    def _layer(self, tokens: int, graphs: bool):
        """(non-attention device seconds, breakdown without launch, launch rule) of one layer over ``tokens``.

        The launch rule is the Coster's: a fixed cost (CUDA graphs; host = device) or, for eager launches
        that overlap device work, (kernels, graph-costed kernels) for ``Coster.overlapped_launch_s`` once the
        real attention is in the layer's device time.
        """
        key = ("layer", tokens, graphs)
        hit = self._memo.get(key)
        if hit is None:
            coster = self._costers[graphs]
            costed = self.costed_layer(tokens, graphs)
            self._note_extrapolated(costed)
            # attention, and a sparse-attention indexer's scoring and top-k, scale with the context: costed per call
            per_call = [n for n in costed.nodes if n.op == "attention" or n.params.get("context")]
            bd = costed.breakdown
            for n in per_call:
                bd[n.category] = max(0.0, bd[n.category] - n.device_s)  # no -0.000 from the float residue
            bd["launch"] = 0.0
            overlap = not coster.cuda_graphs and not coster.serialised
            launch = ((costed.kernels, sum(n.kernels for n in costed.nodes if not n.self_timed)) if overlap
                      else costed.launch_s)
            hit = self._memo[key] = (costed.device_s - sum(n.device_s for n in per_call), bd, overlap, launch)
        return hit

    def _note_extrapolated(self, costed) -> None:
        """A note, once per collective the profile answered beyond what it measured (a group size or message size
        outside its entries: a switch- or ring-model extrapolation), as the layer planner's why-lines say it; the
        notes grow as the steps meet new sizes, so predict and plan read them after the run."""
        for n in costed.nodes:
            if n.category == "communication" and n.extrapolated and n.source not in self._extrapolated_comm:
                self._extrapolated_comm.add(n.source)
                self.notes.append(f"collective answered beyond the profile's measurements: {n.name}: {n.detail} "
                                  f"({n.source})")

    def _layer_total(self, device_s: float, overlap: bool, launch, graphs: bool) -> tuple[float, float]:
        """(layer seconds, launch share): overlapping eager launches cost what the Coster's rule adds to the
        device time (Coster.overlapped_launch_s), fixed launch costs add as they are."""
        extra = self._costers[graphs].overlapped_launch_s(device_s, *launch) if overlap else launch
        return device_s + extra, extra

    def _attn(self, phase: str, batch: int, q: int, kv: int, graphs: bool) -> float:
        key = ("attn", phase, batch, q, kv)
        hit = self._memo.get(key)
        if hit is None:
            # the mean layer: sliding-window layers' calls span only the keys their window reaches (ModelConfig)
            a = self.model.attention_shape(phase, self.tp)  # MLA: the expanded form for prompts, the latent for decodes
            c, m = self._costers[graphs], self.model
            hit = sum(share * self._wrap(lambda: c.attention(phase, batch, q, span, a.heads, a.kv_heads, a.head_dim,
                                                               a.v_head_dim, a.shared_kv, window)).time_s
                      for span, share, window in m.attention_layers(q, kv))
            if m.linear_layers:
                # the Gated DeltaNet layers' convolution and delta rule (DAG _linear_attention), per call
                hit += (m.linear_layers / m.layers) * self._wrap(
                    lambda: c.roofline(*m.linear_recurrence_work(batch, q, self.tp), "bf16")).time_s
            if m.has_indexer:
                # the indexer scores every cached key (DAG _indexer), then the top-k reads the scores it wrote
                hit += self._wrap(lambda: c.roofline(*m.indexer_scoring_work(batch, q, kv), "fp8_e4m3")).time_s
                hit += c.copy(4 * batch * attended_pairs(q, kv)).time_s
            self._memo[key] = hit
        return hit

    def _edges(self, tokens: int, logits: int, graphs: bool) -> tuple[float, dict]:
        key = ("edges", tokens, logits, graphs)
        hit = self._memo.get(key)
        if hit is None:
            c = self._head[graphs]
            total, bd, part_s = 0.0, {}, {}
            parts = ["embed", "head"] + (["pp_send"] * (self.pp - 1))
            for part in parts:
                dag = build_edge_dag(self.model, "decode", part, tokens, max(1, logits), self.parallelism)
                cd = self._wrap(lambda: c.cost_dag(dag, self.el))
                total += cd.total_s
                part_s[part] = cd.total_s  # pp_send: one stage boundary's hand-off
                for k, v in cd.breakdown.items():
                    bd[k] = bd.get(k, 0.0) + v
            samp = c.sampler(self.engine.sampler, max(1, logits) * self.model.vocab_size).time_s
            total += samp
            part_s["head"] += samp  # the last stage samples
            bd["memory"] = bd.get("memory", 0.0) + samp
            hit = self._memo[key] = (total, bd, part_s)
        return hit

    def _round_kv(self, kv: float) -> int:
        r = self.kv_round
        return max(1, int(round(kv / r)) * r) if kv > r else max(1, int(math.ceil(kv)))

    # -- steps ----------------------------------------------------------------------------------
    def _parts(self, decode_seqs: int, decode_kv_mean: float, chunks: tuple, logits: int | None):
        prefill_tok = sum(q for q, _ in chunks)
        graphs = False
        dec = decode_seqs
        if not chunks and decode_seqs and self._device_graphs:
            g = self.engine.graph_batch(decode_seqs)
            if g is not None:
                graphs, dec = True, g
        tokens = dec + prefill_tok
        if tokens < 1:
            raise ValueError("an engine step needs at least one token")
        if logits is None:
            logits = decode_seqs + len(chunks)
        nonattn, bd, overlap, launch = self._layer(tokens, graphs)
        attn = 0.0
        if decode_seqs:
            attn += self._attn("decode", dec, 1, self._round_kv(decode_kv_mean), graphs)
        for q, ctx in chunks:
            attn += self._attn("prefill", 1, q, max(q, self._round_kv(ctx) if ctx > q else q), graphs)
        edge, ebd, part_s = self._edges(tokens, logits, graphs)
        layer_s, launch_s = self._layer_total(nonattn + attn, overlap, launch, graphs)
        return layer_s, bd, attn, launch_s, edge, ebd, graphs, part_s

    def micro_batches(self, decode_seqs: int, chunks: tuple = (), logits: int | None = None) -> list[tuple]:
        """A step's sequences as the PP stages run them: min(PP, sequences) micro-batches [(decodes, chunks,
        logits)], each sequence in one, balanced by tokens (prompt chunks first, largest first, then decodes, each
        to the micro-batch with the fewest tokens so far); one micro-batch without PP.  Engines with PP keep one
        micro-batch per stage in flight (vLLM's batch queue of pipeline_parallel_size batches), so a step, every
        sequence advanced once, takes the slowest micro-batch's pass through all stages or the busiest stage's
        work over every micro-batch (the last stage also runs the LM head and sampling for each), whichever is
        longer (step_s), as the layer-level planner's decode model has it.  The logits of the chunks that end
        their prompt are given to the largest chunks (the step's spec does not say which end)."""
        if logits is None:
            logits = decode_seqs + len(chunks)
        m = min(self.pp, decode_seqs + len(chunks))
        if m <= 1:
            return [(decode_seqs, tuple(chunks), logits)]
        mbs = [[0, [], 0] for _ in range(m)]  # decodes, chunks, tokens
        finishing = max(0, logits - decode_seqs)  # chunks that end their prompt (and so produce a logit)
        for q, ctx in sorted(chunks, key=lambda c: -c[0]):
            mb = min(mbs, key=lambda b: b[2])
            mb[1].append((q, ctx))
            mb[2] += q
        for _ in range(decode_seqs):
            mb = min(mbs, key=lambda b: b[2])
            mb[0] += 1
            mb[2] += 1
        out = []
        for d, cs, _ in mbs:
            ends = min(len(cs), finishing)
            finishing -= ends
            if d or cs:
                out.append((d, tuple(cs), d + ends))
        return out

    def _passes(self, decode_seqs: int, decode_kv_mean: float, chunks: tuple, logits: int | None) -> tuple:
        """One micro-batch's (pass through every stage, first stage's share, last stage's share, a middle
        stage's share): each stage runs its layers; the first also embeds, the last runs the LM head and samples,
        every stage but the last hands its activations on."""
        layer_s, _, _, _, edge, _, _, part_s = self._parts(decode_seqs, decode_kv_mean, chunks, logits)
        stage = self.layers_per_stage * layer_s
        send = part_s.get("pp_send", 0.0)
        path = self.model.layers * layer_s + edge  # edge: embedding, head, sampling, every hand-off
        return path, stage + part_s["embed"] + send, stage + part_s["head"], stage + send

    def step_s(self, decode_seqs: int, decode_kv_mean: float = 0.0, chunks: tuple = (), logits: int | None = None) -> float:
        """Seconds of one step: ``decode_seqs`` decodes at mean KV length, ``chunks`` = ((chunk, context), ...);
        with PP, the slowest micro-batch's pass through the stages or the busiest stage's work over all of them,
        whichever is longer (micro_batches)."""
        key = ("step", decode_seqs, self._round_kv(decode_kv_mean) if decode_seqs else 0, chunks, logits)
        hit = self._memo.get(key)
        if hit is None:
            passes = [self._passes(d, decode_kv_mean, cs, lg)
                      for d, cs, lg in self.micro_batches(decode_seqs, chunks, logits)]
            busy = [sum(p[i] for p in passes) for i in (1, 2, 3)] if self.pp > 1 else []
            device = max([p[0] for p in passes] + busy)
            hit = self._memo[key] = device + self.host_exposed_s(device, decode_seqs + len(chunks))
        return hit

    def host_exposed_s(self, device_s: float, requests: int) -> float:
        """Seconds the engine's host work (EnginePreset.host_step_s + host_s_per_seq x the step's scheduled
        ``requests``) adds to a step of ``device_s`` device seconds: all of it when host and device take turns, what
        exceeds the device time under overlap scheduling (the host prepares the next step while this one runs)."""
        host = self.engine.host_work_s(requests)
        if host <= 0:
            return 0.0
        return max(0.0, host - device_s) if self.engine.overlaps_steps else host

    def breakdown(self, decode_seqs: int, decode_kv_mean: float = 0.0, chunks: tuple = ()) -> dict:
        """Seconds per category (compute, memory, communication, launch, attention) of one step (with PP, of its
        slowest micro-batch's pass), and its mode."""
        d, cs, lg = max(self.micro_batches(decode_seqs, chunks),
                        key=lambda mb: self._passes(mb[0], decode_kv_mean, mb[1], mb[2])[0])
        layer_s, bd, attn, launch_s, edge, ebd, graphs, _ = self._parts(d, decode_kv_mean, cs, lg)
        n = self.model.layers
        out = {k: n * v + ebd.get(k, 0.0) for k, v in bd.items()}
        out["launch"] += n * launch_s
        out["attention"] = n * attn
        out["total"] = n * layer_s + edge
        host = self.host_exposed_s(out["total"], decode_seqs + len(chunks))
        if host:
            out["host"] = host  # the engine's host work beyond the device time (host_step_s, host_s_per_seq)
            # under overlap scheduling only the excess shows: the host work, not any device part, sets the step
            out["host_sets_step"] = self.engine.overlaps_steps
            out["total"] += host
        out["cuda_graphs"] = graphs
        if (d + len(cs)) < decode_seqs + len(chunks):
            out["micro_batch_sequences"] = d + len(cs)  # PP: the pass above is one micro-batch's
        return out
