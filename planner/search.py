"""Enumerate TP x PP x DP (x EP for MoE, SP for prefill), cost each, rank, explain.

    from accelcal.calibrate.profile import Profile
    from accelcal.planner.cluster import Cluster
    from accelcal.planner.search import plan
    from accelcal.planner.workload import Workload
    res = plan("llama3-70b", Cluster.homogeneous(Profile.load("profiles/datasheet/h100-sxm.yaml")),
               Workload(prompt_len=2048, output_len=256, batch=8))
    best = res.best
    print(best.label, best.ttft_s, best.tpot_s, best.tokens_per_s_per_device)
    for line in best.why: print(line)

Model of a plan (one device group): a replica is ``tp x pp`` devices; ``dp =
devices // (tp x pp)`` replicas each decode ``batch`` sequences.  Decode splits
the batch into ``min(batch, pp)`` micro-batches, so TPOT = max(one token's path
through all stages, micro-batches x slowest stage).  A prompt is prefilled on
its own: TTFT is its path through the stages; with SP it is split across
``sp`` replicas (prefill only; they all-gather K/V per layer).  Tokens/s per
device = batch x output_len / (batch x replica time spent on prefills +
(output_len - 1) x TPOT) / (tp x pp): each prefill emits its request's first token, as in the request latency
TTFT + (output_len - 1) x TPOT.  Devices are numbered node-major, TP innermost,
then PP stages, then replicas; a group that crosses a node boundary uses
inter-node collectives.

Ranking (``objective``): ``latency`` = request latency (TTFT + (output-1) x
TPOT), ``throughput`` = tokens/s per device; ``auto`` = throughput when a TTFT,
TPOT or request-rate target is given (best throughput that meets them), else latency.  Plans
that miss a target rank after those that meet it.  Every order is total (ties
broken by the degrees), so results are deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable

from accelcal.calibrate.compose import (datasheet_names, doubtful_collectives, fabric_device_mismatch,
                                       wider_node_than_measured)
from accelcal.calibrate.profile import MissingCollective, MissingMeasurement
from accelcal.models import ModelConfig
from accelcal.models.implementation import Implementation

from .cluster import Cluster, DeviceGroup
from .cost import CATEGORIES, Coster, CostedDAG, model_coster
from .dag import DagOptions, build_edge_dag, build_layer_dag, edge_parallelism, layer_parallelism
from .memory import MemoryEstimate, device_memory
from .pareto import pareto_front
from .parallelism import Parallelism
from .workload import Workload, miss_factor

__all__ = ["Candidate", "GroupPlan", "NoFeasiblePlan", "PlanContext", "PlanOptions", "PlanResult", "Rejection", "plan"]


@dataclass(frozen=True)
class PlanOptions:
    """Knobs of the search."""

    cuda_graphs: bool = False
    """Cost launches as CUDA-graph replay (True) or eager launches (False)."""
    objective: str = "auto"
    """auto | latency | throughput (see module docstring)."""
    memory_utilization: float = 0.9
    """Fraction of device memory a plan may use (vLLM's gpu_memory_utilization default)."""
    tp_comm: str = "auto"
    """TP reduction: all_reduce | rs_ag | auto (the cheaper, costed per phase)."""
    moe_imbalance: float | None = None
    """Max/mean expert load per EP rank; None = computed from routing statistics."""
    sp_threshold: bool = True
    """Compute the prompt length above which SP pays off for the best plan."""
    implementation: str = "fused"
    """Kernel-count preset of the layer (models/presets/implementations): fused (serving engines) or torch-eager."""
    assume_zero_latency: bool = False
    """Cost collectives whose latency the profile does not give (datasheet priors) at 0 s instead of refusing them."""
    max_layouts: int = 200_000
    """Most layouts one device group may cost; a larger search is refused with the count (a huge --nodes)."""

    def __post_init__(self) -> None:
        if self.objective not in ("auto", "latency", "throughput"):
            raise ValueError(f"objective must be auto, latency or throughput, got {self.objective!r}")
        if not 0.0 < self.memory_utilization <= 1.0:
            raise ValueError(f"memory_utilization must be in (0, 1], got {self.memory_utilization}")
        if self.tp_comm not in ("auto", "all_reduce", "rs_ag"):
            raise ValueError(f"tp_comm must be auto, all_reduce or rs_ag, got {self.tp_comm!r}")
        from accelcal.models.implementation import implementation_names

        if self.implementation not in implementation_names():
            raise ValueError(f"implementation must be one of {implementation_names()}, got {self.implementation!r}")


def _largest_first(phases) -> list[str]:
    """Each extrapolated profile answer once, the largest share of its phase's time first: a decode all-reduce
    costed from a large-message fit can be most of TPOT, a GEMM shape just past the measured range a sliver of
    TTFT.  ``phases``: (PhaseCost, layers its layer DAG runs per stage)."""
    share: dict[str, float] = {}
    for pc, layers in phases:
        for cd, times in ((pc.layer, layers), *((e, 1) for e in pc.edges.values())):
            for text, s in cd.extrapolated_s:
                share[text] = max(share.get(text, 0.0), s * times / pc.path_s if pc.path_s > 0 else 0.0)
    return sorted(share, key=lambda t: (-share[t], t))


@dataclass
class PhaseCost:
    """One phase of a plan: the layer DAG, the stage edges, the path and the slowest stage."""

    layer: CostedDAG
    """One decoder layer as costed."""
    edges: dict[str, CostedDAG]
    """embed / head / pp_send DAGs as costed (pp_send only when pp > 1)."""
    path_s: float
    """One token's (decode) or one prompt's (prefill) path through all stages."""
    max_stage_s: float
    """The slowest pipeline stage."""
    breakdown: dict[str, float]
    """Seconds per category along the path."""
    tp_comm: str
    """TP reduction used: all_reduce or rs_ag."""


class _Degrees:
    """Read-only views of ``self.parallelism``'s degrees and scopes (``c.tp``, ``c.scopes["tp"]``, ...)."""

    parallelism: Parallelism
    tp = property(lambda self: self.parallelism.tp, doc="Tensor-parallel degree.")
    pp = property(lambda self: self.parallelism.pp, doc="Pipeline stages.")
    dp = property(lambda self: self.parallelism.dp, doc="Data-parallel replicas.")
    ep = property(lambda self: self.parallelism.ep, doc="Expert-parallel degree.")
    sp = property(lambda self: self.parallelism.sp, doc="Sequence-parallel degree (prefill).")
    scopes = property(lambda self: self.parallelism.scopes, doc="intra_node / inter_node per tp, pp, ep, sp group.")


@dataclass
class Candidate(_Degrees):
    """One feasible layout of one device group, costed."""

    group: str
    parallelism: Parallelism
    """The degrees and where each group sits (intra_node / inter_node for the tp, pp, ep and sp groups)."""
    idle_devices: int
    """Devices of the group left unused (group size not a multiple of tp x pp)."""
    ttft_s: float
    """Time to first token: one prompt's prefill."""
    tpot_s: float
    """Time per output token at the workload's batch."""
    request_latency_s: float
    """TTFT + (output_len - 1) x TPOT."""
    tokens_per_s_per_device: float
    """Output tokens per second per device used, prefill time included."""
    tokens_per_s: float
    """Output tokens per second of the whole group."""
    memory: MemoryEstimate
    """Per-device memory of the busiest stage."""
    memory_limit_bytes: float
    """memory_utilization x device capacity."""
    decode: PhaseCost
    prefill: PhaseCost
    misses: list[str] = field(default_factory=list)
    """Targets this plan misses, with the arithmetic; empty = meets them all."""
    extrapolated: list[str] = field(default_factory=list)
    """Profile answers outside the measured range that this plan relies on."""
    why: list[str] = field(default_factory=list)
    """Filled for the listed plans by accelcal.planner.why."""
    miss_factor: float = 0.0
    """How far it is from its targets: the largest of TTFT / target, TPOT / target and offered / sustained
    requests/s over the targets it misses; 0 when it meets them all (the closest miss has the smallest); infinite
    (null in JSON) when nothing completes."""

    @property
    def meets_targets(self) -> bool:
        return not self.misses

    @property
    def devices(self) -> int:
        """Devices used (tp x pp x dp)."""
        return self.parallelism.devices

    @property
    def label(self) -> str:
        return self.parallelism.label

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.tp, self.pp, self.ep, self.sp)

    def summary(self) -> dict:
        return {
            "group": self.group, "label": self.label, "tp": self.tp, "pp": self.pp, "dp": self.dp, "ep": self.ep,
            "sp": self.sp, "devices": self.devices, "idle_devices": self.idle_devices, "scopes": dict(self.scopes),
            "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "request_latency_s": self.request_latency_s,
            "tokens_per_s_per_device": self.tokens_per_s_per_device, "tokens_per_s": self.tokens_per_s,
            "memory": self.memory.to_dict(), "memory_limit_bytes": self.memory_limit_bytes,
            "decode_breakdown_s": self.decode.breakdown, "prefill_breakdown_s": self.prefill.breakdown,
            "tp_comm": {"decode": self.decode.tp_comm, "prefill": self.prefill.tp_comm},
            "meets_targets": self.meets_targets, "misses": list(self.misses),
            "miss_factor": self.miss_factor if math.isfinite(self.miss_factor) else None,
            "extrapolated": list(self.extrapolated), "why": list(self.why),
        }


@dataclass(frozen=True)
class Rejection(_Degrees):
    """A layout the search threw out, and why."""

    group: str
    parallelism: Parallelism
    """The layout rejected (scopes not yet placed: intra_node)."""
    constraint: str
    """divisibility | placement | measurement | memory."""
    reason: str
    """The arithmetic."""
    excess: float = 0.0
    """For memory: needed / limit (>1); else 0."""
    collective: bool = False
    """For measurement: the missing measurement is a collective's (a fabric's data fixes it, not the device's)."""

    @property
    def label(self) -> str:
        # SP splits a prompt over DP replicas: a layout with SP names its DP too ("TP1 PP1 DP8 SP8", not "... SP8")
        p = self.parallelism
        return p.label if p.sp > 1 else p.model_label

    def to_dict(self) -> dict:
        return {"group": self.group, "label": self.label, "tp": self.tp, "pp": self.pp, "ep": self.ep, "sp": self.sp,
                "constraint": self.constraint, "reason": self.reason}


class NoFeasiblePlan(ValueError):
    """No layout passed every constraint; the message says which failed first and by how much."""

    def __init__(self, message: str, rejections: list[Rejection]):
        super().__init__(message)
        self.rejections = rejections


@dataclass
class GroupPlan:
    """Search result for one device group."""

    group: str
    device_name: str
    devices: int
    devices_per_node: int
    objective: str
    ranked: list[Candidate]
    rejected: list[Rejection]
    pareto: list[Candidate]
    candidates_evaluated: int
    sp_threshold: dict | None = None
    """{prompt_len, sp, tp, pp, detail} for the best plan, or {prompt_len: None, detail: why not}."""
    notes: list[str] = field(default_factory=list)
    context: "PlanContext | None" = field(default=None, repr=False, compare=False)
    """What the plans were costed with (for the why-lines' what-if queries); not serialised."""


@dataclass(frozen=True)
class PlanContext:
    """The public costing context of one group's search: the model, the workload and the memoising coster."""

    model: ModelConfig
    """The model planned."""
    workload: Workload
    """The workload planned for."""
    coster: Coster
    """Answers node costs from the group's profiles (what-if queries such as an inter-node collective)."""


@dataclass
class PlanResult:
    """Everything the planner found."""

    model: ModelConfig
    workload: Workload
    options: PlanOptions
    groups: list[GroupPlan]
    datasheet_profiles: list[str] = field(default_factory=list)
    """identity.name of every profile used (device groups and inter-node links) whose source is a datasheet."""
    provenance: list[str] = field(default_factory=list)
    """Where each part of every profile used came from (device: measured on <host, date>; intra-node: published by ...)."""

    @property
    def best(self) -> Candidate:
        return self.groups[0].ranked[0]

    @property
    def ranked(self) -> list[Candidate]:
        return self.groups[0].ranked

    @property
    def rejected(self) -> list[Rejection]:
        return self.groups[0].rejected

    @property
    def pareto(self) -> list[Candidate]:
        return self.groups[0].pareto

    @property
    def sp_threshold(self) -> dict | None:
        return self.groups[0].sp_threshold

    def combined(self) -> dict:
        """DP across device groups: each group runs its best plan; totals and the worst latencies."""
        bests = [g.ranked[0] for g in self.groups]
        devices = sum(c.devices for c in bests)
        tps = sum(c.tokens_per_s for c in bests)
        return {"groups": [c.label + f" on {c.group}" for c in bests], "devices": devices,
                "tokens_per_s": tps, "tokens_per_s_per_device": tps / devices,
                "ttft_s_worst": max(c.ttft_s for c in bests), "tpot_s_worst": max(c.tpot_s for c in bests),
                "requests_per_s": tps / self.workload.output_len}


# ----------------------------------------------------------------------------- helpers

def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n ** 0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def count_layouts(model: ModelConfig, n: int, dpn: int) -> int:
    """How many (tp, pp, ep, sp) layouts :func:`search_group` will cost for ``n`` devices (a cheap pre-pass)."""
    total = 0
    for tp in range(1, min(n, model.heads) + 1):
        for pp in range(1, min(n // tp, model.layers) + 1):
            base = Parallelism(tp, pp, n // (tp * pp))
            if _check_divisible(model, base) or _check_placement(tp, dpn):
                continue
            total += len(_ep_options(model, base, "", [])) * len(_divisors(base.dp))
    return total


def _scope_of(devices: list[int], dpn: int) -> str:
    return "intra_node" if len({d // dpn for d in devices}) == 1 else "inter_node"


def _placed(par: Parallelism, dpn: int) -> Parallelism:
    """``par`` with the worst scope of every TP, PP-boundary, EP and SP group (device = replica*tp*pp + stage*tp + rank)."""
    tp, pp, dp, ep, sp = par.tp, par.pp, par.dp, par.ep, par.sp
    rep = tp * pp

    def dev(r: int, s: int, k: int) -> int:
        return r * rep + s * tp + k

    worst = {"tp": "intra_node", "pp": "intra_node", "ep": "intra_node", "sp": "intra_node"}

    def note(kind: str, devs: list[int]) -> None:
        if _scope_of(devs, dpn) == "inter_node":
            worst[kind] = "inter_node"

    for r in range(dp):
        for s in range(pp):
            note("tp", [dev(r, s, k) for k in range(tp)])
            if s + 1 < pp:
                for k in range(tp):
                    note("pp", [dev(r, s, k), dev(r, s + 1, k)])
    for size, kind, per in ((ep, "ep", tp), (sp, "sp", 1)):
        if size <= 1:
            continue
        span = size // per  # replicas per group
        for r0 in range(0, dp - span + 1, span):
            for s in range(pp):
                if kind == "ep":
                    note(kind, [dev(r0 + i, s, k) for i in range(span) for k in range(tp)])
                else:
                    for k in range(tp):
                        note(kind, [dev(r0 + i, s, k) for i in range(span)])
    return Parallelism.with_scopes(tp, pp, dp, ep, sp, worst)


def _add(a: dict[str, float], b: dict[str, float], scale: float = 1.0) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0.0) + scale * v


# ----------------------------------------------------------------------------- costing one plan

class _Evaluator:
    """Costs layouts of one group; memoises layer costs across candidates."""

    def __init__(self, model: ModelConfig, workload: Workload, group: DeviceGroup, options: PlanOptions):
        self.model, self.w, self.g, self.o = model, workload, group, options
        self.coster, self.dag_model = model_coster(group.profile, model, cuda_graphs=options.cuda_graphs,
                                                   inter_node_profile=group.inter_node_profile,
                                                   assume_zero_latency=options.assume_zero_latency)
        self.input_quant = self.dag_model.weight_dtype != model.weight_dtype
        self.el = self.dag_model.weight_bytes_per_elem
        self.impl = Implementation.from_name(options.implementation)
        self._memo: dict[tuple, CostedDAG] = {}

    def _layer(self, phase: str, batch: int, q_len: int, kv_len: int, par: Parallelism,
               options: DagOptions) -> CostedDAG:
        key = ("layer", phase, batch, q_len, kv_len, layer_parallelism(par, phase), options)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self.coster.cost_dag(
                build_layer_dag(self.dag_model, phase, batch, q_len, kv_len, par, self.impl, options), self.el)
        return hit

    def _edge(self, phase: str, part: str, tokens: int, logits: int, par: Parallelism) -> CostedDAG:
        key = ("edge", phase, part, tokens, logits, edge_parallelism(par))
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self.coster.cost_dag(
                build_edge_dag(self.dag_model, phase, part, tokens, logits, par), self.el)
        return hit

    def phase(self, phase: str, par: Parallelism, batch: int, q_len: int, kv_len: int) -> PhaseCost:
        tp, pp, sp = par.tp, par.pp, par.sp
        comms = ["all_reduce", "rs_ag"] if self.o.tp_comm == "auto" and tp > 1 else [
            self.o.tp_comm if self.o.tp_comm != "auto" else "all_reduce"]
        best = None
        for comm in comms:
            layer = self._layer(phase, batch, q_len, kv_len, par,
                                DagOptions(comm, self.o.moe_imbalance, gemm_input_quant=self.input_quant))
            if best is None or layer.total_s < best[1].total_s:
                best = (comm, layer)
        comm, layer = best
        tokens = batch * math.ceil(q_len / (sp if phase == "prefill" else 1))
        logits = batch  # the last prompt token (prefill) or the new token (decode) of each sequence
        edges = {"embed": self._edge(phase, "embed", tokens, logits, par),
                 "head": self._edge(phase, "head", tokens, logits, par)}
        if pp > 1:
            edges["pp_send"] = self._edge(phase, "pp_send", tokens, logits, par)
        per_stage = self.model.layers // pp
        stage = per_stage * layer.total_s
        p2p = edges["pp_send"].total_s if pp > 1 else 0.0
        first = stage + edges["embed"].total_s + p2p
        last = stage + edges["head"].total_s + (edges["embed"].total_s if pp == 1 else 0.0)
        path = pp * stage + edges["embed"].total_s + edges["head"].total_s + (pp - 1) * p2p
        bd = {c: 0.0 for c in CATEGORIES}
        _add(bd, layer.breakdown, pp * per_stage)
        _add(bd, edges["embed"].breakdown)
        _add(bd, edges["head"].breakdown)
        if pp > 1:
            _add(bd, edges["pp_send"].breakdown, pp - 1)
        return PhaseCost(layer, edges, path, max(first, last, stage), bd, comm)

    def ttft_s(self, par: Parallelism, prompt_len: int) -> float:
        return self.phase("prefill", par, 1, prompt_len, prompt_len).path_s

    def candidate(self, par: Parallelism, mem: MemoryEstimate, limit: float) -> Candidate:
        w = self.w
        tp, pp, sp = par.tp, par.pp, par.sp
        m = min(w.batch, pp)
        b = math.ceil(w.batch / m)
        dec = self.phase("decode", dataclasses.replace(par, sp=1), b, 1, w.mean_decode_kv_len)
        tpot = max(dec.path_s, m * dec.max_stage_s)
        pre = self.phase("prefill", par, 1, w.prompt_len, w.prompt_len)
        ttft = pre.path_s
        # replica time per request: the slowest prefill stage (prefills pipeline), on each of sp replicas
        # ... and the output's other tokens, one decode step each (the prefill emits the first, as in the latency)
        cycle = w.batch * sp * pre.max_stage_s + (w.output_len - 1) * tpot
        per_device = w.batch * w.output_len / cycle / (tp * pp)
        devices = par.devices
        misses = []
        if w.ttft_s is not None and ttft > w.ttft_s:
            misses.append(f"TTFT {ttft:.4g} s > target {w.ttft_s:.4g} s (x{ttft / w.ttft_s:.3g})")
        if w.tpot_s is not None and tpot > w.tpot_s:
            misses.append(f"TPOT {tpot:.4g} s > target {w.tpot_s:.4g} s (x{tpot / w.tpot_s:.3g})")
        rate = per_device * devices / w.output_len
        if w.request_rate_per_s is not None and rate < w.request_rate_per_s:
            misses.append(f"sustains {rate:.4g} req/s < offered {w.request_rate_per_s:.4g} req/s")
        extrap = _largest_first(((dec, self.model.layers // pp), (pre, self.model.layers // pp)))
        return Candidate(self.g.name, par, self.g.devices - devices, ttft, tpot,
                         ttft + (w.output_len - 1) * tpot, per_device, per_device * devices, mem, limit, dec, pre,
                         misses, extrap,
                         miss_factor=miss_factor(ttft, tpot, rate, w.ttft_s, w.tpot_s, w.request_rate_per_s))


# ----------------------------------------------------------------------------- search

def _check_divisible(model: ModelConfig, par: Parallelism) -> str | None:
    tp, pp = par.tp, par.pp
    issue = model.tp_split_issue(tp)
    if issue is not None:
        return f"tp {tp}: {issue}: the layers must split evenly"
    if model.layers % pp:
        return (f"layers({model.layers}) % pp({pp}) = {model.layers % pp}: {model.layers}/{pp} = "
                f"{model.layers / pp:.4g} layers per stage; stages must be equal here (accelcal predict and plan "
                f"--engine split them unevenly, as vLLM and SGLang do)")
    return None


def _check_placement(tp: int, dpn: int) -> str | None:
    if tp <= dpn and dpn % tp:
        return (f"devices_per_node({dpn}) % tp({tp}) = {dpn % tp}: TP groups would straddle node boundaries "
                f"unevenly")
    if tp > dpn and tp % dpn:
        return f"tp({tp}) % devices_per_node({dpn}) = {tp % dpn}: a TP group spanning nodes must take whole nodes"
    return None


def _ep_options(model: ModelConfig, par: Parallelism, group: str, rejected: list[Rejection]) -> list[int]:
    if not model.is_moe:
        return [1]
    tp, dp = par.tp, par.dp
    opts = [1] if model.expert_ffn_size % tp == 0 else []
    if model.expert_ffn_size % tp:
        rejected.append(Rejection(group, par, "divisibility",
                                  f"expert_ffn_size({model.expert_ffn_size}) % tp({tp}) = {model.expert_ffn_size % tp}: "
                                  f"experts cannot be TP-split; use EP"))
    for ep in range(max(2, tp), tp * dp + 1, tp):
        if (tp * dp) % ep:
            continue
        if model.num_experts % ep:
            rejected.append(Rejection(group, dataclasses.replace(par, ep=ep), "divisibility",
                                      f"num_experts({model.num_experts}) % ep({ep}) = {model.num_experts % ep}: "
                                      f"{model.num_experts}/{ep} = {model.num_experts / ep:.4g} experts per rank"))
            continue
        opts.append(ep)
    return opts


def _rank_key(objective: str) -> Callable[[Candidate], tuple]:
    if objective == "throughput":
        return lambda c: (bool(c.misses), c.miss_factor, -round(c.tokens_per_s_per_device, 9),
                          round(c.request_latency_s, 15), c.tp * c.pp, c.tp, c.pp, c.ep, c.sp)
    # plans that miss a target come after those that meet them all, the closest first
    return lambda c: (bool(c.misses), c.miss_factor, round(c.request_latency_s, 15),
                      -round(c.tokens_per_s_per_device, 9), c.tp * c.pp, c.tp, c.pp, c.ep, c.sp)


def _pareto(cands: list[Candidate]) -> list[Candidate]:
    return pareto_front(cands, order=lambda c: (c.request_latency_s, -c.tokens_per_s_per_device, c.tp, c.pp, c.ep, c.sp),
                        better=lambda c: c.tokens_per_s_per_device)


def search_group(model: ModelConfig, workload: Workload, group: DeviceGroup, options: PlanOptions,
                 progress: Callable[[str], None] | None = None) -> GroupPlan:
    """Every layout of one device group, costed and ranked."""
    n, dpn = group.devices, group.devices_per_node
    limit = options.memory_utilization * group.memory_capacity_bytes
    objective = options.objective
    if objective == "auto":
        objective = "throughput" if (workload.ttft_s or workload.tpot_s or workload.request_rate_per_s) else "latency"
    ev = _Evaluator(model, workload, group, options)
    ranked: list[Candidate] = []
    rejected: list[Rejection] = []
    evaluated = 0
    # TP above the head count never splits the heads and PP above the layer count never splits the layers:
    # not enumerated (one rejection says so), which bounds the search on huge clusters.
    if n > model.heads:
        rejected.append(Rejection(group.name, Parallelism(tp=model.heads + 1), "divisibility",
                                  f"tp {model.heads + 1}..{n} not enumerated: above heads({model.heads})"))
        evaluated += 1  # that one line stands for them: feasible + rejected = evaluated
    planned = count_layouts(model, n, dpn)
    if planned > options.max_layouts:
        raise ValueError(f"{group.name}: {n} devices give {planned} layouts to cost, above the limit of "
                         f"{options.max_layouts}; plan fewer nodes (the best layout repeats per replica)")
    if progress:
        progress(f"[plan] {group.name}: {planned} layouts to evaluate")
    for tp in range(1, min(n, model.heads) + 1):
        for pp in range(1, min(n // tp, model.layers) + 1):
            dp = n // (tp * pp)
            base = Parallelism(tp, pp, dp)
            evaluated += 1
            why = _check_divisible(model, base)
            if why:
                rejected.append(Rejection(group.name, base, "divisibility", why))
                continue
            why = _check_placement(tp, dpn)
            if why:
                rejected.append(Rejection(group.name, base, "placement", why))
                continue
            before = len(rejected)
            eps = _ep_options(model, base, group.name, rejected)
            evaluated += sum(1 for r in rejected[before:] if r.parallelism.ep > 1)  # EP layouts it refused
            for ep in eps:
                for sp in _divisors(dp):
                    evaluated += 1 if sp > 1 or ep > 1 else 0
                    par = Parallelism(tp, pp, dp, ep, sp)
                    mem = device_memory(model, workload, par)
                    if mem.total_bytes > limit:
                        rejected.append(Rejection(
                            group.name, par, "memory",
                            f"needs {mem.describe()} > limit {options.memory_utilization:g} x "
                            f"{group.memory_capacity_bytes / 1e9:.4g} GB = {limit / 1e9:.4g} GB "
                            f"(over by {(mem.total_bytes - limit) / 1e9:.4g} GB, x{mem.total_bytes / limit:.3g})",
                            mem.total_bytes / limit))
                        continue
                    try:
                        ranked.append(ev.candidate(_placed(par, dpn), mem, limit))
                    except MissingMeasurement as exc:  # names what the profile lacks
                        msg = exc.args[0] if exc.args else str(exc)
                        rejected.append(Rejection(group.name, par, "measurement", str(msg),
                                                  collective=isinstance(exc, MissingCollective)))
        if progress and tp % 8 == 0:
            progress(f"[plan] {group.name}: TP up to {tp} of {n}: {len(ranked)} feasible, {len(rejected)} rejected")
    if not ranked:
        raise NoFeasiblePlan(_no_plan_message(model, group, rejected), rejected)
    ranked.sort(key=_rank_key(objective))
    gp = GroupPlan(group.name, str(group.profile.identity.device_name), n, dpn, objective, ranked, rejected,
                   _pareto(ranked), evaluated, context=PlanContext(ev.model, ev.w, ev.coster))
    if ranked and all(c.misses for c in ranked):
        rate_miss = any(m.startswith("sustains ") for m in ranked[0].misses)
        gp.notes.append(f"no plan meets the targets; the closest ({ranked[0].label}) misses: "
                        + "; ".join(ranked[0].misses)
                        # the request rate a layout sustains is its fixed batch's: say which knob moves it
                        + (f" (each replica here runs a fixed batch of {ev.w.batch}: a larger --batch, or --engine "
                           f"vllm|sglang|trtllm, which searches concurrency with the engine's batching, can sustain "
                           f"more)" if rate_miss else ""))
    gp.notes += (wider_node_than_measured(group.profile, dpn) + fabric_device_mismatch(group.profile)
                 + doubtful_collectives(group.profile))
    launch = ev.coster.launch
    if "fallback" in launch.flags:
        # the stand-in is a tiny kernel's launch, not a real layer's op mix: eager decode, launch-bound, comes out
        # fast, so a profile without the measurement can out-run a better device's that has it
        gp.notes.append(f"eager launches: {launch.detail}; TPOT and the ranking of launch-bound plans lean "
                        f"optimistic (--cuda-graphs costs what engines replay)")
    if options.sp_threshold:
        gp.sp_threshold = sp_threshold(ev, ranked[0], dpn)
    return gp


def sp_threshold(ev: _Evaluator, best: Candidate, dpn: int) -> dict:
    """Smallest prompt length at which splitting the prefill over SP replicas lowers TTFT, for ``best``'s TP/PP/EP."""
    sp = best.sp if best.sp > 1 else next((d for d in _divisors(best.dp) if d > 1), None)
    if sp is None:
        return {"prompt_len": None, "sp": None,
                "detail": f"DP={best.dp}: this layout has no second replica to split a prompt across, "
                          f"so SP does not apply to it"}
    with_sp = _placed(dataclasses.replace(best.parallelism, sp=sp), dpn)
    without = dataclasses.replace(with_sp, sp=1)  # the same groups, the prompt not split
    scopes = with_sp.scopes

    def gain(length: int) -> bool:
        return ev.ttft_s(with_sp, length) < ev.ttft_s(without, length)

    hi, limit = 1, 1 << 22
    try:
        while hi <= limit and not gain(hi):
            hi *= 2
    except MissingMeasurement as exc:  # the SP group's collectives are not in the profile
        return {"prompt_len": None, "sp": sp, "tp": best.tp, "pp": best.pp,
                "detail": f"SP{sp} cannot be costed: {exc.args[0] if exc.args else exc}"}
    if hi > limit:
        return {"prompt_len": None, "sp": sp, "tp": best.tp, "pp": best.pp,
                "detail": f"SP{sp} never lowers TTFT up to {limit} tokens on this profile"}
    lo = hi // 2  # gain(lo) is False (or lo == 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if gain(mid):
            hi = mid
        else:
            lo = mid
    t1 = ev.ttft_s(without, hi)
    ts = ev.ttft_s(with_sp, hi)
    return {"prompt_len": hi, "sp": sp, "tp": best.tp, "pp": best.pp, "scope": scopes["sp"],
            "detail": (f"SP{sp} lowers TTFT from prompt length {hi} on (TTFT {t1 * 1e3:.4g} ms without SP, "
                       f"{ts * 1e3:.4g} ms with): below it the per-layer K/V all-gather ({scopes['sp']}) and "
                       f"launches cost more than the split prefill saves")}


def _no_plan_message(model: ModelConfig, group: DeviceGroup, rejected: list[Rejection]) -> str:
    head = (f"no feasible plan for {model.name} on {group.name} ({group.nodes} node(s) x "
            f"{group.devices_per_node} devices)")
    by: dict[str, list[Rejection]] = {}
    for r in rejected:
        by.setdefault(r.constraint, []).append(r)
    parts = []
    if by.get("measurement"):
        # checked after memory: these layouts fit, but the profile cannot cost them (their collectives, mostly)
        m = by["measurement"][0]
        parts.append(f"{len(by['measurement'])} layouts fit in memory but need measurements the profile lacks "
                     f"(e.g. {m.label}: {m.reason})")
        if not getattr(group.profile, "collectives", None) and any(r.collective for r in by["measurement"]):
            # A profile measured on one device (or with --skip-collectives) can cost only single-device layouts.
            parts.append(f"the profile has no collective measurements at all: measure them on a node with "
                         f"{group.devices_per_node} devices (bash run_bench.sh --nproc {group.devices_per_node}, or "
                         f"accelcal calibrate --nproc {group.devices_per_node}), pass an interconnect profile "
                         f"(--interconnect profiles/interconnect/..., or your own from accelcal import nccl-tests), "
                         f"or plan with --devices-per-node 1")
    mem = by.get("memory")
    if mem:
        closest = min(mem, key=lambda r: (r.excess, r.tp * r.pp, r.tp, r.pp, r.ep, r.sp))
        parts.append(f"memory failed for {len(mem)} layouts; closest {closest.label}: {closest.reason}")
    for kind in ("placement", "divisibility"):
        if by.get(kind):
            parts.append(f"{kind} ruled out {len(by[kind])} (e.g. {by[kind][0].label}: {by[kind][0].reason})")
    return head + ": " + "; ".join(parts)


def _provenance(cluster: Cluster) -> list[str]:
    """One line per part of every profile the plan read (composed profiles list their parts)."""
    from accelcal.calibrate.compose import describe_origin

    out: list[str] = []
    for g in cluster.groups:
        parts = getattr(g.profile, "parts", None)
        n = len(g.profile.collectives)
        role = f"device + {n} collective fit(s)" if n else "device (no collectives measured)"
        lines = ([p.line() for p in parts] if parts else
                 [f"{role}: {g.profile.identity.name} - {describe_origin(g.profile)}"])
        if g.inter_node_profile is not None:
            lines.append(f"inter-node: {g.inter_node_profile.identity.name} - {describe_origin(g.inter_node_profile)}")
        prefix = f"{g.name}: " if len(cluster.groups) > 1 else ""
        out += [prefix + line for line in lines if prefix + line not in out]
    return out


def plan(model: ModelConfig | str, cluster: Cluster, workload: Workload = Workload(),
         options: PlanOptions = PlanOptions(), progress: Callable[[str], None] | None = None) -> PlanResult:
    """Search every device group of ``cluster``; explain the listed plans."""
    from .why import explain

    model = ModelConfig.resolve(model)
    groups = [search_group(model, workload, g, options, progress) for g in cluster.groups]
    # Reports must say when numbers are datasheet priors, not measurements (latencies missing = 0 assumed).
    datasheet = datasheet_names(*(p for g in cluster.groups for p in (g.profile, g.inter_node_profile)))
    res = PlanResult(model, workload, options, groups, datasheet, _provenance(cluster))
    for gp in groups:
        explain(gp)
    return res
