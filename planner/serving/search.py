"""Search layout x concurrency (x engine) for the most output tokens/s per device that meets TTFT/TPOT targets.

    from accelcal.planner.serving.search import ServingTargets, search_serving
    res = search_serving(profile, "llama3-70b", devices=8, engines=["vllm"], concurrencies=[1, 4, 16, 64, 256],
                         isl=2048, osl=256, targets=ServingTargets(ttft_s=2.0, tpot_s=0.05))
    print(res.best.label, res.best.output_tokens_per_s_per_device)
    for c in res.pareto: print(c.label, c.per_user, c.per_device)
    for line in res.best.why: print(line)

Each candidate (engine, TP, PP, DP = devices / (TP x PP), for a MoE model each way its engine places the experts
(``_expert_layouts``), total concurrency C, each replica serving C / DP clients) is costed with the analytic steady state (``steady.py``, checked against the step-level simulation
in the tests to STEADY_REL_TOL on TPOT and throughput); the candidates that pass there, or miss TPOT or the
offered rate by less than that error with their TTFT met, are re-checked by simulation at the asked statistic
(mean, p90 or p99) in throughput order until one passes and no later one can beat it: the steady state assumes
desynchronised clients, and a closed loop of identical requests clusters, which raises TTFT (simulate.py).
Each re-check is the run ``accelcal predict`` makes of that layout and load (10 requests per client, every DP
replica), so a simulated row shows predict's figures.  When the re-checks allowed (UNCONFIRMED_CHECKS) all miss,
the best row left is a steady-state estimate and the result says so.  Without targets the ranking is by request
latency (the planner's default), and the fastest rows (as many as the table shows) are re-checked the same way
and ranked by their simulated latency.  Layouts the profile cannot cost (missing collectives) or that do not fit
are listed with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from accelcal.models import ModelConfig
from accelcal.units import count
from accelcal.vocab import DTYPE_BYTES

from ..parallelism import layout_label
from ..pareto import pareto_front
from ..workload import miss_factor
from .deployment import device_of
from .engine import EnginePreset, release_range_notes
from .kv import Infeasible, check_request_runs, kv_budget, memory_in_use_bytes
from .moe_op import check_tables, pick_table
from .predict import node_devices, serving_dtypes, serving_warnings
from .steady import PREFILL_BINDS_SHARE, STEADY_REL_TOL, steady_over_replicas
from .step_cost import (SMALL_ALL_REDUCE, STEP_PARTS, StepCoster, StepCostError, expert_split_issue,
                        replica_parallelism)
from .workload import ServingWorkload

__all__ = ["NoServingLayout", "ServingCandidate", "ServingSearch", "ServingTargets", "UNCONFIRMED_CHECKS",
           "search_serving"]

UNCONFIRMED_CHECKS = 32
"""Most candidates re-checked by simulation while none has passed there yet (each is one ``accelcal predict``
run); past it, the best candidate left is reported as a steady-state estimate, not confirmed."""

DEFER_FACTOR = 1.5
"""A candidate whose steady-state TTFT or TPOT, times the smallest simulated / steady ratio its engine showed in
the re-checks that missed at as many clients per replica or more, exceeds its target by this factor is re-checked
only after the candidates without such evidence (a closed loop's clustering raised TTFT 3-50x over the steady
state at concurrency 128-512 in a reviewer's case; it shrinks with concurrency, hence the margin).  An ordering of
the re-checks only: what the search reports as a pass is always a simulated one."""


@dataclass(frozen=True)
class ServingTargets:
    """Latency targets a deployment must meet."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    stat: str = "mean"
    """mean | p90 | p99: which statistic of TTFT/TPOT the targets bound."""
    request_rate_per_s: float | None = None
    """Offered load the whole cluster must sustain, requests/s (accelcal plan --request-rate): a candidate meets
    it when its closed loop completes at least this many requests per second over all its replicas."""

    def __post_init__(self) -> None:
        if self.stat not in ("mean", "p90", "p99"):
            raise ValueError(f"--target-stat must be mean, p90 or p99, got {self.stat!r}")
        for f, flag in (("ttft_s", "--ttft"), ("tpot_s", "--tpot")):
            v = getattr(self, f)
            if v is not None and not 0 < v < math.inf:
                raise ValueError(f"{flag} target must be a finite number > 0 seconds, got {v}")
        if self.request_rate_per_s is not None and not 0 < self.request_rate_per_s < math.inf:
            raise ValueError(f"--request-rate must be a finite number > 0 requests/s, got {self.request_rate_per_s}")

    @property
    def any(self) -> bool:
        return self.ttft_s is not None or self.tpot_s is not None or self.request_rate_per_s is not None


@dataclass
class ServingCandidate:
    """One engine + layout + concurrency, costed."""

    engine: str
    tp: int
    pp: int
    dp: int
    concurrency: int
    ttft_s: float
    tpot_s: float
    request_latency_s: float
    """Seconds from a request's arrival to its last token, at ``latency_stat``."""
    per_device: float
    """Output tokens/s per device."""
    per_user: float
    """Output tokens/s one user sees (1 / TPOT)."""
    binding: str
    """What limits this row, a code (the steady state's, or for the rows with why-lines their first line's): a key of
    _BINDING_NAMES, which gives the name the table shows."""
    detail: dict = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    checked_by: str = "steady"
    """How the figures were obtained: ``steady`` (the steady-state shortcut) or ``simulate (STAT)``."""
    latency_stat: str = "mean"
    """The statistic ``ttft_s``, ``tpot_s`` and ``request_latency_s`` hold: ``mean`` for a steady-state row, the simulation's
    (mean | p90 | p99, the targets' statistic) for a simulated one."""
    ep: int = 1
    """1: a MoE model's experts TP-split; = tp: spread over the replica's TP group; a divisor of tp: over that many
    groups of the TP ranks, each TP-splitting its experts; = tp x dp: over every replica's, attention
    data-parallel."""
    moe_tp: int = 0
    """0: as ``ep`` says; tp x dp (with ``ep`` 1): every expert TP-split over every replica's devices, whose attention
    runs data-parallel (``accelcal predict --moe-tp``)."""
    requests_per_s: float = 0.0
    """Requests/s the whole cluster completes (all DP replicas)."""
    miss_factor: float = 0.0
    """How far it is from its targets: the largest of TTFT / target, TPOT / target and offered / completed
    requests/s over the targets it misses; 0 when it meets them all (the closest miss has the smallest); infinite
    (null in JSON) when nothing completes."""
    unchecked: str = ""
    """Why a steady-state pass that out-ranks the best simulated pass was not simulated ("" otherwise): the engine's
    own simulated clustering made it a likely miss, or the search's re-checks ran out."""

    @property
    def simulated(self) -> bool:
        """Whether the step-level simulation (not the steady-state shortcut) gave this row's figures."""
        return self.checked_by != "steady"

    @property
    def clients_per_replica(self) -> int:
        """The busiest replica's clients: the concurrency over the DP replicas, rounded up (each a closed loop)."""
        return -(-self.concurrency // self.dp)

    @property
    def layout(self) -> tuple[str, int, int, int, int]:
        """(engine, TP, PP, EP, MoE TP): the deployment without its load."""
        return self.engine, self.tp, self.pp, self.ep, self.moe_tp

    @property
    def tiebreak(self) -> tuple[int, int, int, int]:
        """The last keys of every ranking: fewer devices per replica, less expert spreading, fewer clients."""
        return self.tp * self.pp, self.ep, self.moe_tp, self.concurrency

    @property
    def label(self) -> str:
        return f"{self.engine} {layout_label(self.tp, self.pp, self.dp, self.ep, self.moe_tp)} C{self.concurrency}"

    @property
    def predict_flags(self) -> list[str]:
        """This row's layout and load as ``accelcal predict`` flags (the run a simulated re-check makes), its
        defaults left out; the engine is the caller's to name (a preset file by its path)."""
        flags = ["--tp", str(self.tp)]
        for flag, v, default in (("--pp", self.pp, 1), ("--dp", self.dp, 1), ("--ep", self.ep, 1),
                                 ("--moe-tp", self.moe_tp, 0)):
            if v != default:
                flags += [flag, str(v)]
        return flags + ["--concurrency", str(self.concurrency)]

    def to_dict(self) -> dict:
        return {"label": self.label, "engine": self.engine, "tp": self.tp, "pp": self.pp, "dp": self.dp, "ep": self.ep,
                "moe_tp": self.moe_tp, "concurrency": self.concurrency,
                "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "stat": self.latency_stat,
                "request_latency_s": self.request_latency_s,
                "output_tokens_per_s_per_device": self.per_device, "output_tokens_per_s_per_user": self.per_user,
                "requests_per_s": self.requests_per_s,
                "binding": self.binding, "misses": list(self.misses),
                "miss_factor": self.miss_factor if math.isfinite(self.miss_factor) else None,
                "why": list(self.why), "checked_by": self.checked_by, "unchecked": self.unchecked or None}


class NoServingLayout(ValueError):
    """No engine x layout of the model could be costed on these devices (each one's reason in ``rejected``)."""

    def __init__(self, message: str, rejected: list[str]) -> None:
        super().__init__(message)
        self.rejected = rejected


@dataclass
class ServingSearch:
    """Everything the search found."""

    ranked: list[ServingCandidate]
    pareto: list[ServingCandidate]
    rejected: list[str]
    targets: ServingTargets
    evaluated: int
    search_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    """predict.serving_warnings for the search's profiles, model and request size."""
    notes: list[str] = field(default_factory=list)
    """How the search costed the model (predict.serving_dtypes: the dtypes taken from the model)."""
    load: str = ""
    """What was searched for: the model, devices and request lengths (the header's second part)."""
    devices_per_node: int = 0
    """Devices per node the layouts were placed with (node_devices: the given value, else the profile's)."""
    open_loop: dict = field(default_factory=dict)
    """With --request-rate: the best layout at that open-loop (Poisson) rate, as ``accelcal predict --request-rate``
    runs it (``rate_per_s``, ``stat``, ``ttft_s`` and ``tpot_s`` at that statistic (``tpot_s`` None for one output
    token), ``requests_per_s``, ``requests``, ``misses``, ``note``; or ``error`` when it cannot run); {} otherwise."""

    @property
    def best(self) -> ServingCandidate:
        return self.ranked[0]

    @property
    def best_notes(self) -> list[str]:
        """How the best row's layout is costed (what its layout changes in the engine, e.g. vLLM's async scheduling
        off with PP, then its step coster's notes: PP stages and hand-offs, fp8 KV, the all-reduce kernel, sampling,
        launch fallbacks), as accelcal predict prints them for it."""
        d = self.best.detail
        return list(d.get("engine_notes", [])) + list(d["coster"].notes)


def _layouts(model: ModelConfig, devices: int, dpn: int) -> list[tuple[int, int]]:
    out = []
    for tp in range(1, devices + 1):
        if devices % tp or model.tp_split_issue(tp) is not None:
            continue
        for pp in range(1, devices // tp + 1):
            if (devices // tp) % pp or pp > model.layers:  # uneven stages as the engines split them (StepCoster)
                continue
            out.append((tp, pp))
    return out


def _expert_layouts(model: ModelConfig, engine: EnginePreset, tp: int, pp: int, devices: int) -> list[tuple[int, int]]:
    """(ep, moe_tp) for every way the search places a MoE model's experts in a TP ``tp`` x PP ``pp`` layout of
    ``devices`` (a dense model: (1, 0) only).  Experts TP-split (1, 0); spread over the replica's TP group (tp, 0);
    over groups of it, each TP-splitting its experts (e, 0) for e dividing tp, where the engine runs that
    (EnginePreset.ep_below_tp); and without PP, over every replica's devices with attention data-parallel, spread
    (tp x dp, 0) or TP-split (1, tp x dp).  The experts' count is checked by replica_parallelism, which names the
    degrees they split over."""
    if not model.is_moe:
        return [(1, 0)]
    dp = devices // (tp * pp)
    out = [(1, 0)]
    if tp > 1:
        out.append((tp, 0))
    if engine.ep_below_tp:
        out += [(e, 0) for e in range(2, tp) if tp % e == 0]
    if pp == 1 and dp > 1:
        out += [(tp * dp, 0), (1, tp * dp)]
    return out


def search_serving(profile: Any, model: ModelConfig | str, devices: int, engines: list[str], concurrencies: list[int],
                   isl: int, osl: int, targets: ServingTargets = ServingTargets(), weight_dtype: str | None = None,
                   kv_dtype: str | None = None, inter_node_profile: Any = None, verify: int = 8,
                   top: int = 10, engine_overrides: dict | None = None, range_ratio: float | None = None,
                   range_mode: str = "around", devices_per_node: int | None = None,
                   progress: Any = None, moe_tables: Any = (), engine_version: str = "") -> ServingSearch:
    """``range_ratio``, ``range_mode``: the client's length spread (ServingWorkload.range_mode): the re-checks by
    simulation draw the lengths as ``accelcal predict`` does, the steady state screens at their mean, and a layout is
    refused when the longest request cannot run.
    ``weight_dtype``, ``kv_dtype`` None: the model's own (predict.serving_dtypes).  ``verify``: more re-checks by
    simulation once a candidate has passed there (before that, up to UNCONFIRMED_CHECKS); ``top``: rows re-checked when there are no targets;
    ``engine_overrides``: preset keys set for every engine (accelcal plan --engine-arg), after its release's
    defaults; ``devices_per_node``: as predict_serving takes it (None: the profile's); ``progress``: an
    accelcal.progress.StageProgress shown the steady-state pass (a case per layout) and the re-checks by simulation
    (a case per re-check), or None; ``moe_tables``: published tables of engines' MoE ops, each engine's own
    answering for its routed experts (predict_serving), every table for one of ``engines``."""
    import time

    t0 = time.perf_counter()
    model = ModelConfig.resolve(model)
    weight_dtype, kv_dtype, fp8_scaling, dtype_notes = serving_dtypes(model, weight_dtype, kv_dtype)
    if not concurrencies or any((not isinstance(c, int)) or c < 1 for c in concurrencies):
        raise ValueError(f"--concurrency needs integers >= 1, got {concurrencies}")
    if osl == 1 and targets.tpot_s is not None:
        raise ValueError("--tpot with --output-len 1: each request's one token comes from its prefill, so there is "
                         "no time per output token to meet (leave --tpot out, or ask for more output tokens)")
    # the benchmark client every simulated re-check runs (its concurrency set per row); bad ratios are named here
    client = ServingWorkload(isl=isl, osl=osl, concurrency=1, range_ratio=range_ratio, range_mode=range_mode)
    steady_isl, steady_osl = client.mean_lengths
    longest = (client.bounds(isl)[1], client.bounds(osl)[1])
    dpn = node_devices(profile, devices_per_node)
    cap = float(profile.identity.memory_capacity_bytes)
    in_use = memory_in_use_bytes(profile)
    cands: list[ServingCandidate] = []
    rejected: list[str] = []
    coster_warnings: dict[str, int] = {}  # each layout's coster warnings -> the TP degree that raised them
    evaluated = 0
    min_dp: int | None = None  # the fewest replicas of any layout built: a smaller concurrency leaves one idle
    # an engine name carries no release: its newest documented defaults, as `accelcal predict` without
    # --engine-version gives them, or ``engine_version``'s (one engine searched)
    if engine_version and len(engines) != 1:
        raise ValueError(f"--engine-version {engine_version}: a release of one engine; search one --engine with it "
                         f"(got {', '.join(engines)})")
    resolved = [EnginePreset.resolve(name) for name in engines]
    release_notes = [n for e in resolved for n in release_range_notes(e, engine_version)]
    presets = []
    for e in resolved:  # the release's defaults, then the device's (the engine reads its memory and name)
        preset, _, device_notes = e.for_release_on(engine_version, *device_of(profile))
        presets.append(preset)
        release_notes += device_notes
    named: dict[str, str] = {}
    for spec, preset in zip(engines, presets):
        if preset.name in named:
            raise ValueError(f"--engine: {named[preset.name]!r} and {spec!r} are both the engine preset named "
                             f"{preset.name!r}, so their rows could not be told apart; list each engine once, and give "
                             f"a preset file a name of its own (its 'name:' key)")
        named[preset.name] = spec
    check_tables(moe_tables, profile)  # another device's table is bad input, not every layout's rejection
    strays = [t for t in (moe_tables or ()) if t.engine not in named]
    if strays:
        raise ValueError(f"--moe-table: {', '.join(f'{t.origin} is {t.engine}' for t in strays)}, not an engine of "
                         f"this search ({', '.join(named)})")
    closest: tuple[str, dict] | None = None
    fits: str | None = None  # the first layout whose weights fit but one request does not
    if progress is not None:
        progress.start("steady state", None)
    for engine in presets:
        if engine_overrides:
            try:
                engine = engine.with_overrides(engine_overrides, "--engine-arg (this search)")
            except ValueError as exc:
                raise ValueError(f"--engine-arg: {exc}") from None
        # a MoE model's replicas also run with their experts spread or split over more devices (_expert_layouts:
        # SGLang --ep-size / --enable-dp-attention, vLLM --enable-expert-parallel / --data-parallel-size,
        # TensorRT-LLM moe_expert_parallel_size / enable_attention_dp)
        layouts = [(tp, pp, ep, moe_tp) for tp, pp in _layouts(model, devices, dpn)
                   for ep, moe_tp in _expert_layouts(model, engine, tp, pp, devices)]
        for tp, pp, ep, moe_tp in layouts:
            dp = devices // (tp * pp)
            label = f"{engine.name} {layout_label(tp, pp, dp, ep, moe_tp)}"
            if progress is not None:
                progress.advance(label)
            try:
                par = replica_parallelism(tp, pp, dp, dpn, ep, model.num_experts, moe_tp)
                eng, layout_notes = engine.for_layout(tp, pp, par.moe_replicas)
                split_issue = expert_split_issue(model, par, eng, weight_dtype, fp8_scaling)
                if split_issue is not None:  # unequal slices, or partial fp8 blocks the engine refuses: not offered
                    # the reason alone (the label names the layout), so that the table groups the layouts it rejects
                    raise ValueError(f"{split_issue.reason} ({split_issue.source.split(':')[0]})")
            except ValueError as exc:  # experts that do not spread or split over it: this layout's rejection
                rejected.append(f"{label}: {exc}")
                continue
            try:
                kv = kv_budget(model, eng, tp, pp, cap, weight_dtype, kv_dtype, ep, in_use, moe_tp)
                check_request_runs(eng, kv, *longest)
                coster = StepCoster(profile, model, par, eng, weight_dtype, kv_dtype, inter_node_profile,
                                    fp8_scaling=fp8_scaling, moe_table=pick_table(moe_tables, eng.name, strict=False))
            except (Infeasible, StepCostError) as exc:
                rejected.append(f"{label}: {exc}")
                mem = getattr(exc, "memory", None)
                if getattr(exc, "kind", "") == "request" and fits is None:
                    fits = label  # its weights fit: nearer than any layout whose weights overflow
                elif mem and (closest is None or -mem["kv_pool_bytes"] < -closest[1]["kv_pool_bytes"]):
                    closest = (label, mem)  # the layout whose weights and reserves overflow least
                continue
            for w in coster.warnings:
                coster_warnings.setdefault(w, tp)
            min_dp = dp if min_dp is None else min(min_dp, dp)
            for c in concurrencies:
                if c < dp:
                    continue
                evaluated += 1
                try:
                    # C clients split over the replicas (C = 5 on DP 4: 2, 1, 1, 1); the busiest sets the latencies
                    s, tps, rps = steady_over_replicas(eng, coster, kv, steady_isl, steady_osl, c, dp)
                except (Infeasible, StepCostError) as exc:
                    rejected.append(f"{label} C{c}: {exc}")
                    break
                cand = ServingCandidate(engine.name, tp, pp, dp, c, s.ttft_s, s.tpot_s, s.request_latency_s,
                                        tps / devices, 1.0 / s.tpot_s if s.tpot_s > 0 else 0.0, s.binding,
                                        {"steady": s, "kv_tokens": kv.tokens, "engine": eng, "coster": coster,
                                         "engine_notes": layout_notes,
                                         "kv": kv}, ep=ep, moe_tp=moe_tp, requests_per_s=rps)
                _check(cand, targets, "mean")
                cands.append(cand)
    if not cands:
        if progress is not None:
            progress.close()
        items = rejections_by_reason(rejected)
        if fits is not None:
            lead = f"closest {fits}: its weights fit, but one request cannot run there (see its reason); "
        else:
            lead = "" if closest is None else _closest_line(*closest, weight_dtype, devices) + "; "
        if not rejected and min_dp is not None:  # every layout built, none ran: each has more replicas than clients
            raise NoServingLayout(f"no layout of {model.name} on {count(devices, 'device')} ran: "
                                  f"{_below_replicas(concurrencies, min_dp, devices, '')}", rejected)
        raise NoServingLayout(f"no layout of {model.name} on {count(devices, 'device')} can be costed: {lead}"
                              + "; ".join(_reason_lines(items[:4]))
                              + (f"; and {len(items) - 4} more reasons (--format json lists every candidate)"
                                 if len(items) > 4 else ""), rejected)
    notes = release_notes + list(dtype_notes)
    idle = [c for c in concurrencies if min_dp is not None and c < min_dp]  # not a KV or target miss: no layout ran it
    if idle:
        notes.append(_below_replicas(idle, min_dp, devices, " not evaluated"))
    if engine_version:
        notes.append(f"{presets[0].name} {engine_version}'s defaults (--engine-version), as accelcal predict "
                     f"--engine-version gives them")
    if moe_tables and model.is_moe:
        with_table = sorted(t.engine for t in moe_tables)
        without = [e for e in named if e not in with_table]
        notes.append(f"--moe-table: {', '.join(with_table)} layouts with every expert TP-split take their routed "
                     f"experts' time from the published op table where it has {model.name}'s expert shape; EP "
                     f"layouts{', and ' + ', '.join(without) + ' (no table)' if without else ''} keep the "
                     f"profile's estimate, so the rows compare two costings (the best row's notes say which it "
                     f"got)")
    if engine_overrides:
        notes.append("every engine searched with " + ", ".join(f"--engine-arg {k}={v!r}" for k, v in engine_overrides.items()))
    on_check = None
    if progress is not None:
        progress.start("re-checks by simulation", None)
        on_check = progress.advance
    try:
        if targets.any:
            cands.sort(key=lambda c: (bool(c.misses), -c.per_device, c.request_latency_s, *c.tiebreak))
            unconfirmed = _verify(cands, targets, client, verify, on_check)
            if unconfirmed:
                notes.append(unconfirmed)
        else:
            cands.sort(key=lambda c: (c.request_latency_s, -c.per_device, *c.tiebreak))
            _verify_latency(cands, client, top, on_check)
    finally:
        if progress is not None:
            progress.close()
    warnings = serving_warnings(profile, inter_node_profile, model, isl, osl, devices_per_node)
    small_ar = [w for w in coster_warnings if w.startswith(SMALL_ALL_REDUCE)]
    if small_ar:
        # one line for every TP degree the extrapolation touches (each layout's coster says it for its own)
        # the best row's TP degree leads, where the extrapolation touches it
        lead = next((w for w in small_ar if cands and coster_warnings[w] == cands[0].tp), small_ar[0])
        others = sorted({coster_warnings[w] for w in small_ar} - {coster_warnings[lead]})
        warnings.append(lead + (f" (likewise for the TP {', '.join(map(str, others))} layouts: accelcal predict "
                                f"prints each)" if others else ""))
    warnings += [w for w in coster_warnings if w not in small_ar and w not in warnings]
    res = ServingSearch(cands, _pareto(cands), rejected, targets, evaluated, warnings=warnings, notes=notes,
                        devices_per_node=dpn,
                        load=f"{model.name} on {devices} device{'s' if devices != 1 else ''}"
                        + (f" ({dpn} per node)" if devices > dpn or devices_per_node is not None else "")
                        + f"; prompt {isl}, output {osl}"
                        + ("" if client.fixed_lengths else
                           f" (--range-ratio {client.range_ratio:g} {client.range_mode}: simulated rows draw the "
                           f"lengths, steady rows run their mean, {steady_isl} x {steady_osl})"))
    if targets.request_rate_per_s is not None:
        res.open_loop = _open_loop(res.best, targets, client)
    for c in res.ranked[:10]:
        c.binding, c.why = why_lines(c, targets, cands)
    res.search_s = time.perf_counter() - t0
    return res


def _check(c: ServingCandidate, t: ServingTargets, stat: str, ttft: float | None = None, tpot: float | None = None) -> None:
    ttft = c.ttft_s if ttft is None else ttft
    tpot = c.tpot_s if tpot is None else tpot
    c.misses = _latency_misses(t, stat, ttft, tpot)
    if t.request_rate_per_s is not None and c.requests_per_s < t.request_rate_per_s:
        c.misses.append(f"completes {c.requests_per_s:.4g} requests/s < offered {t.request_rate_per_s:.4g} requests/s")
    c.miss_factor = miss_factor(ttft, tpot, c.requests_per_s, t.ttft_s, t.tpot_s, t.request_rate_per_s)


def _latency_misses(t: ServingTargets, stat: str, ttft: float, tpot: float | None) -> list[str]:
    """The latency targets ``ttft`` and ``tpot`` (statistic ``stat``; ``tpot`` None: one output token) miss."""
    out = []
    # a p90/p99 target judged by a steady-state mean (rows the simulation did not re-check): the target's own
    # statistic is named, so the line does not read as a mean target
    target = "target" if stat == t.stat else f"{t.stat} target"
    if t.ttft_s is not None and ttft > t.ttft_s:
        out.append(f"TTFT {stat} {ttft * 1e3:.4g} ms > {target} {t.ttft_s * 1e3:.4g} ms")
    if t.tpot_s is not None and tpot is not None and tpot > t.tpot_s:
        out.append(f"TPOT {stat} {tpot * 1e3:.4g} ms > {target} {t.tpot_s * 1e3:.4g} ms")
    return out


def _within_steady_error(c: ServingCandidate, t: ServingTargets) -> bool:
    """Whether a candidate the steady state rejects could still pass when simulated: its TTFT meets the target
    (the simulation's is no lower: clustering only adds) and its TPOT and completed requests/s miss by no more
    than the steady state's checked error (STEADY_REL_TOL)."""
    if t.ttft_s is not None and c.ttft_s > t.ttft_s:
        return False
    if t.tpot_s is not None and c.tpot_s > t.tpot_s * (1.0 + STEADY_REL_TOL):
        return False
    return t.request_rate_per_s is None or c.requests_per_s * (1.0 + STEADY_REL_TOL) >= t.request_rate_per_s


def _run(c: ServingCandidate, load: Any) -> tuple[list, Any]:
    """(runs, pooled metrics) of ``c``'s layout under ``load`` (a ServingWorkload), every DP replica with its share,
    as ``accelcal predict`` runs it."""
    from .predict import pooled_metrics, simulate_replicas

    d = c.detail
    runs = simulate_replicas(d["engine"], d["coster"], d["kv"], load, c.dp, c.tp * c.pp)
    return runs, pooled_metrics(runs, c.tp * c.pp * c.dp)


def _simulate_candidate(c: ServingCandidate, client: ServingWorkload, stat: str) -> None:
    """Replace ``c``'s steady-state figures with the run ``accelcal predict`` makes of its layout and load (its
    defaults: 10 x C requests, every replica with its share and seed; ``client``: the search's ServingWorkload, its
    lengths and their spread), at the statistic ``stat``."""
    runs, m = _run(c, dataclasses.replace(client, concurrency=c.concurrency))
    # the why-lines quote the simulation's own typical decode step beside its TPOT
    c.detail["simulated_decode_step"] = runs[0][0].decode_step
    # one statistic per row: the JSON's "stat" names what ttft_s, tpot_s and request_latency_s all hold
    c.ttft_s, c.tpot_s, c.request_latency_s = (m.stat("ttft", stat), m.stat("tpot", stat),
                                               m.stat("request_latency", stat))
    c.per_device = m.output_tokens_per_s_per_device
    c.per_user = m.output_tokens_per_s_per_user
    c.requests_per_s = m.requests_per_s
    c.checked_by, c.latency_stat = f"simulate ({stat})", stat


def _verify(cands: list[ServingCandidate], t: ServingTargets, client: ServingWorkload, limit: int,
            on_check: Callable[[str], Any] | None = None) -> str:
    """Re-check by simulation, at the asked statistic, the candidates in steady-state throughput order that pass
    there or miss only by less than the steady state's own error, until one passes and no later one can beat it
    (at most ``limit`` more re-checks once one has passed, UNCONFIRMED_CHECKS before).  Returns a note when the best
    candidate left is a steady-state pass no simulation confirmed ("" otherwise).  ``on_check`` is told each
    re-check's label before it runs."""
    done = after = 0  # re-checks in all, and since the first pass
    best = None  # simulated tokens/s per device of the best candidate that passed so far
    eligible = sorted((c for c in cands if not c.misses or _within_steady_error(c, t)), key=lambda c: -c.per_device)
    # engine -> [(clients per replica, simulated / steady TTFT, simulated / steady TPOT)] of the re-checks that
    # missed: each replica is a closed loop of its own, so its clustering grows with its own clients
    ratios: dict[str, list[tuple[int, float, float]]] = {}

    def likely_miss(c: ServingCandidate) -> tuple[float, str]:
        """(estimated miss factor, why ``c`` likely misses; "" when nothing says so): its steady figures scaled by the
        smallest simulated / steady ratios its engine showed in missed re-checks at as many clients per replica or
        more, over their targets (0.0 without such evidence)."""
        seen = [r for r in ratios.get(c.engine, ()) if r[0] >= c.clients_per_replica]  # clustering grows with the clients
        if not seen:
            return 0.0, ""
        k_ttft, k_tpot = min(r[1] for r in seen), min(r[2] for r in seen)
        worst, why = 0.0, ""
        for name, est, k, v in (("TTFT", c.ttft_s, k_ttft, t.ttft_s), ("TPOT", c.tpot_s, k_tpot, t.tpot_s)):
            if v is not None and est * k / v > worst:
                worst = est * k / v
                why = (f"likely misses: {name} {est * 1e3:.4g} ms (steady) x {k:.3g} ({c.engine}'s smallest "
                       f"simulated/steady ratio in missed re-checks at >= {c.clients_per_replica} clients per replica) = "
                       f"{est * k * 1e3:.4g} ms > {DEFER_FACTOR} x target {v * 1e3:.4g} ms; not simulated")
        return worst, why if worst > DEFER_FACTOR else ""

    # first every candidate in steady-state throughput order, those the evidence says likely miss set aside; then the
    # set-aside ones, the closest to their targets (by the evidence gathered so far) first
    queue = list(eligible)
    deferred: list[ServingCandidate] = []
    while queue or deferred:
        if (best is not None and after >= limit) or (best is None and done >= UNCONFIRMED_CHECKS):
            break
        first_visit = bool(queue)
        if first_visit:
            c = queue.pop(0)
        else:
            c = min(deferred, key=lambda o: (likely_miss(o)[0], -o.per_device))
            deferred.remove(c)
        if best is not None and c.per_device * (1.0 + STEADY_REL_TOL) <= best:
            continue  # its simulated figure cannot reach the passing one's
        if first_visit:
            c.unchecked = likely_miss(c)[1]  # said in the table if the re-checks end before it comes back round
            if c.unchecked:
                deferred.append(c)
                continue
        c.unchecked = ""
        if on_check is not None:
            on_check(c.label)
        steady = (c.ttft_s, c.tpot_s)
        # the simulated figures replace the steady state's for this candidate (table, Pareto front, why-lines)
        _simulate_candidate(c, client, t.stat)
        _check(c, t, t.stat, c.ttft_s, c.tpot_s)
        done += 1
        after += best is not None
        if not c.misses:
            best = max(best or 0.0, c.per_device)
        else:
            r = tuple(sim / st if st > 0 else 1.0 for sim, st in zip((c.ttft_s, c.tpot_s), steady))
            ratios.setdefault(c.engine, []).append((c.clients_per_replica, *r))
    # steady-state passes the re-checks left out that would out-rank the best simulated pass say why
    for c in eligible:
        if c.simulated or c.misses or (best is not None and c.per_device <= best):
            c.unchecked = ""
        elif not c.unchecked:
            c.unchecked = f"not simulated: the search's re-checks ran out ({done} run)"
    # passes confirmed by simulation, then passes at the steady state only, then misses, closest first; with a TTFT
    # target the simulated misses come first, since a steady-state TTFT leaves clustering out (its miss factor can
    # be far too small), while its TPOT and requests/s hold to STEADY_REL_TOL
    demote = t.ttft_s is not None
    rate = _ranking_rates(cands)
    cands.sort(key=lambda c: (2 if c.misses else int(not c.simulated),
                              int(demote and not c.simulated) if c.misses else 0, c.miss_factor,
                              -rate[id(c)], c.request_latency_s, *c.tiebreak))
    if best is None and cands and not cands[0].misses:
        return (f"none of the {done} candidates re-checked by simulation meets the targets; the best row is the "
                f"steady state's estimate, not confirmed (clients of identical requests cluster, which raises TTFT): "
                f"check it with accelcal predict")
    return ""


def _capped(c: ServingCandidate) -> bool:
    """More clients per replica than the engine runs at once (max_seqs, or the KV pool's room): the rest queue."""
    s = c.detail.get("steady")
    return s is not None and s.in_engine < c.clients_per_replica


def _ranking_rates(cands: list[ServingCandidate]) -> dict[int, float]:
    """id(candidate) -> the tokens/s per device the ranking compares.  A passing row whose extra clients only queue
    behind the engine's cap ranks at the rate of the smallest such concurrency of its layout (costed the same way):
    past the cap a closed loop's throughput is the cap's (the steady state's exactly; a simulation's differs by its
    run's noise), so more clients buy queueing, and the tie goes to the lower latency, not to noise."""
    floor: dict[tuple, float] = {}
    for c in sorted(cands, key=lambda c: c.concurrency):
        if _capped(c) and not c.misses:
            floor.setdefault((c.layout, c.dp, c.simulated), c.per_device)
    return {id(c): (min(c.per_device, floor[(c.layout, c.dp, c.simulated)]) if _capped(c) and not c.misses
                    else c.per_device) for c in cands}


def _open_loop(c: ServingCandidate, t: ServingTargets, client: ServingWorkload) -> dict:
    """``c``'s layout at the offered rate as an open loop: the run ``accelcal predict --request-rate`` makes (its
    default of 200 requests, at least OPEN_LOOP_MIN_PER_REPLICA per DP replica; one stream split round-robin over the
    replicas), its latencies at the targets' statistic, predict's note on the completed rate (overloaded, or the
    run's span), and the targets it misses (an overloaded run misses the rate)."""
    from .kv import Infeasible
    from .predict import _overload_note, open_loop_requests

    try:
        runs, m = _run(c, dataclasses.replace(client, concurrency=None, request_rate_per_s=t.request_rate_per_s,
                                              num_requests=open_loop_requests(c.dp)))
    except (Infeasible, ValueError) as exc:
        return {"rate_per_s": t.request_rate_per_s, "stat": t.stat, "error": str(exc)}
    ttft = m.stat("ttft", t.stat)
    tpot = m.stat("tpot", t.stat) if client.osl > 1 else None  # one output token: no TPOT (predict says n/a)
    note = _overload_note(runs, t.request_rate_per_s, m.requests_per_s)
    misses = ([f"overloaded: {m.requests_per_s:.4g} of {t.request_rate_per_s:g} requests/s completed"]
              if note.startswith("overloaded") else []) + _latency_misses(t, t.stat, ttft, tpot)
    return {"rate_per_s": t.request_rate_per_s, "stat": t.stat, "ttft_s": ttft, "tpot_s": tpot,
            "requests_per_s": m.requests_per_s, "requests": m.requests, "misses": misses, "note": note}


def _verify_latency(cands: list[ServingCandidate], client: ServingWorkload, top: int,
                    on_check: Callable[[str], Any] | None = None) -> None:
    """No targets: re-check the ``top`` fastest candidates (steady-state request latency) by simulation and rank
    them by their simulated latency, ahead of the rows only the steady state costed."""
    for c in cands[:top]:
        if on_check is not None:
            on_check(c.label)
        _simulate_candidate(c, client, "mean")
    cands.sort(key=lambda c: (not c.simulated, c.request_latency_s, -c.per_device, *c.tiebreak))


def _pareto(cands: list[ServingCandidate]) -> list[ServingCandidate]:
    return pareto_front(cands, order=lambda c: (-c.per_user, -c.per_device, c.tp, c.pp, c.ep, c.moe_tp, c.concurrency),
                        better=lambda c: c.per_device)


_NEGLIGIBLE_SHARE = 0.01
"""A why-line term below this (a share of TPOT or of the decode step, a fraction of a target) is not listed."""


def why_lines(c: ServingCandidate, t: ServingTargets,
              cands: list[ServingCandidate]) -> tuple[str, list[str]]:
    """(the binding term's code, a key of _BINDING_NAMES; the lines, the binding term first, each with its value)."""
    s = c.detail["steady"]
    sim = c.detail.get("simulated_decode_step")
    # a simulated row's decode step is the simulation's most common one; prefill work is TPOT beyond it
    bd = (sim if sim is not None else s.decode_breakdown) or {}
    step_s = bd.get("total", 0.0) if sim is not None else s.decode_step_s
    share = max(0.0, 1.0 - step_s / c.tpot_s) if sim is not None and c.tpot_s > 0 else s.prefill_share
    lines: list[str] = []
    terms: list[tuple[float, str, str]] = []  # (weight, code, line)
    capped = _capped(c)  # fewer requests in the engine than clients: the pool's room or the engine's cap
    if capped:
        room = (f"linear-attention state pool: it allows {s.kv_limit} running requests" if s.binding == "state_capacity"
                else f"max sequences: the engine runs at most {s.in_engine} requests at once per replica (engine key "
                     f"max_seqs; the KV pool holds {s.kv_limit})" if s.binding == "max_seqs"
                else f"KV capacity: the pool holds {c.detail['kv_tokens']} tokens = {s.kv_limit} requests at their mean "
                     f"length")
        terms.append((1.0 + s.queue_wait_s / max(c.ttft_s, 1e-12), s.binding,
                      f"{room}; {c.clients_per_replica - s.in_engine} of {c.clients_per_replica} "
                      f"clients per replica wait {s.queue_wait_s * 1e3:.4g} ms to start"))
    if t.tpot_s is not None:
        nxt = [o for o in cands if o.layout == c.layout and o.concurrency > c.concurrency]
        nxt.sort(key=lambda o: o.concurrency)
        more = ""
        if nxt and not c.misses:  # what stopped the sweep at this row; a row that misses has its own misses line
            o = nxt[0]
            src = "simulated" if o.simulated else "steady state"
            more = (f"; C{o.concurrency} ({src}): TPOT {o.tpot_s * 1e3:.4g} ms" +
                    (f", misses {'; '.join(o.misses)}" if o.misses else ""))
        terms.append((c.tpot_s / t.tpot_s, "tpot_target", f"TPOT target: {c.tpot_s * 1e3:.4g} ms of {t.tpot_s * 1e3:.4g} ms "
                                           f"({c.tpot_s / t.tpot_s:.0%}){more}"))
    if t.ttft_s is not None:
        terms.append((c.ttft_s / t.ttft_s, "ttft_target", f"TTFT target: {c.ttft_s * 1e3:.4g} ms of {t.ttft_s * 1e3:.4g} ms "
                                           f"({c.ttft_s / t.ttft_s:.0%})"))
    if t.request_rate_per_s is not None and c.requests_per_s > 0:
        terms.append((t.request_rate_per_s / c.requests_per_s, "offered_load",
                      f"offered load: {t.request_rate_per_s:.4g} requests/s of the {c.requests_per_s:.4g} it completes "
                      f"at C{c.concurrency} ({t.request_rate_per_s / c.requests_per_s:.0%})"))
    decodes = c.tpot_s > 0  # one output token per request: nothing decodes, the prefill makes it
    if decodes:
        terms.append((share, "prefill_interference", f"prefill interference: {share:.0%} of TPOT is prefill work "
                             f"(decode step alone {step_s * 1e3:.4g} ms, TPOT {c.tpot_s * 1e3:.4g} ms)"))
    if decodes and bd.get("total"):
        comm = bd.get("communication", 0.0)
        terms.append((comm / bd["total"], "collective_latency", f"collective latency: {comm * 1e3:.4g} ms of the {bd['total'] * 1e3:.4g} ms "
                                          f"decode step ({comm / bd['total']:.0%}) is "
                                          f"{'TP/PP/EP' if c.ep > 1 or c.moe_tp else 'TP/PP'} communication"))
    if not terms:  # one output token, no target, room for every request: the prefill is all there is
        terms.append((0.0, "prefill", f"prefill: each request's one token comes from its prefill (TTFT {c.ttft_s * 1e3:.4g} ms)"))
    elif decodes and step_s > 0 and max(x[0] for x in terms) <= PREFILL_BINDS_SHARE:
        # nothing above binds (no target or queue near its limit, prefill work and communication at most half of
        # the time, the steady state's rule): TPOT is mostly the decode step itself, named by its largest part
        parts = {name: bd[k] for k, name in STEP_PARTS.items() if bd.get(k, 0.0) > 0}
        big = max(parts, key=parts.get) if parts else ""
        if bd.get("host_sets_step"):
            # overlap scheduling: the step lasts as long as the engine's host work, which hides the device's
            terms.append((1.0, "decode", f"decode step: {step_s * 1e3:.4g} ms of the {c.tpot_s * 1e3:.4g} ms TPOT, set by "
                               f"the engine's host work ({bd['host'] * 1e3:.4g} ms beyond the "
                               f"{(bd['total'] - bd['host']) * 1e3:.4g} ms of device time it hides: host_step_s, "
                               f"host_s_per_seq)"))
        else:
            terms.append((1.0, "decode", f"decode step: {step_s * 1e3:.4g} ms of the {c.tpot_s * 1e3:.4g} ms TPOT"
                               + (f", {parts[big] * 1e3:.4g} ms of it {big}" if big else "")))
    terms.sort(key=lambda x: -x[0])
    lines.append(f"binding: {terms[0][2]}")
    lines += [f"also: {x[2]}" for x in terms[1:3] if x[0] >= _NEGLIGIBLE_SHARE]
    if c.misses:
        lines.append("misses: " + "; ".join(c.misses))
    elif ((t.ttft_s is not None or t.tpot_s is not None) and c.concurrency >= max(o.concurrency for o in cands)
          and not capped):
        # (a capped row's larger concurrencies would only queue: no hint to try them)
        # the targets were not what stopped the sweep: a larger concurrency was never tried
        lines.append(f"sweep: C{c.concurrency} is the largest concurrency tried and meets the targets; a larger one "
                     f"may too, with more tokens/s per device (--concurrency with larger values tries it)")
    return terms[0][1], lines


_BINDING_NAMES = {"kv_capacity": "KV capacity", "state_capacity": "linear-attention state pool",
                  "max_seqs": "max sequences", "prefill_interference": "prefill interference", "decode": "decode step",
                  "tpot_target": "TPOT target", "ttft_target": "TTFT target", "offered_load": "offered load",
                  "collective_latency": "collective latency", "prefill": "prefill"}
"""Binding codes (the steady state's, and those the why-lines add) as the table and the why-lines name them; the
JSON keeps the codes."""


def format_search(res: ServingSearch, top: int = 10) -> str:
    t = res.targets
    rate = f", {t.request_rate_per_s:g} requests/s offered" if t.request_rate_per_s is not None else ""
    given = [f"{name} {v * 1e3:g} ms" for name, v in (("TTFT", t.ttft_s), ("TPOT", t.tpot_s)) if v is not None]
    head = (f"serving search: {res.evaluated} engine x layout x concurrency points in {res.search_s:.3f} s; "
            + (f"targets {', '.join(given)} ({t.stat}){rate}" if given else f"no latency targets{rate}") if t.any else
            f"serving search: {res.evaluated} points in {res.search_s:.3f} s; no targets: ranked by request latency")
    if res.load:
        head += f"; {res.load}"
    lines = [f"WARNING: {w}" for w in res.warnings] + [head] + [f"note: {n}" for n in res.notes]
    if t.any:
        lines.append("note: rows in three groups: passes a simulation confirmed, then passes at the steady state only, "
                     "then misses (closest first); most tokens/s per device first within a group")
    if t.any and t.stat != "mean":
        lines.append(f"note: TTFT and TPOT columns are {t.stat} on simulated rows, steady-state means on steady rows")
    if t.request_rate_per_s is not None:
        lines.append(f"note: every row is a closed loop of C clients; --request-rate {t.request_rate_per_s:g} only "
                     f"requires it to complete that many requests/s. At that open-loop rate a layout serves "
                     f"{t.request_rate_per_s:g} x osl tokens/s over its devices; the best layout's latencies there "
                     f"follow the table (accelcal predict --request-rate {t.request_rate_per_s:g} gives any layout's)")
    lines.append(f"{'#':>2} {'plan':<34} {'TTFT ms':>10} {'TPOT ms':>9} {'tok/s/dev':>10} {'tok/s/user':>10}  "
                 f"{'from':<9} binding")
    for i, c in enumerate(res.ranked[:top], 1):
        mark = "  (misses)" if c.misses else ("  (likely misses)" if c.unchecked.startswith("likely")
                                              else "  (unconfirmed)" if c.unchecked else "")
        src = "simulated" if c.simulated else "steady"
        tpot, user = (f"{c.tpot_s * 1e3:9.2f}", f"{c.per_user:10.1f}") if c.tpot_s > 0 else (f"{'n/a':>9}", f"{'n/a':>10}")
        lines.append(f"{i:>2} {c.label:<34} {c.ttft_s * 1e3:10.1f} {tpot} {c.per_device:10.1f} "
                     f"{user}  {src:<9} {_BINDING_NAMES.get(c.binding, c.binding)}{mark}")
    best = res.best
    if best.misses:
        head = "closest (none meets the targets)"
    elif t.any and not best.simulated:
        head = "best steady-state estimate (not confirmed by simulation)"
    else:
        head = "best"
    lines.append(f"{head}: {best.label} ({best.checked_by})")
    lines += [f"  {w}" for w in best.why]
    lines += [f"  note: {n}" for n in res.best_notes]
    above = [c for c in res.ranked[:top] if c.unchecked and c is not best]
    if best.unchecked:  # no re-check passed: the best row is itself a steady-state estimate
        lines.append(f"  note: the best row is not confirmed by simulation: {best.unchecked}")
    elif above:
        lines.append(f"  note: {count(len(above), 'steady-state row')} in the table "
                     f"{'shows' if len(above) == 1 else 'show'} more tokens/s per device than the best "
                     f"but no simulation confirmed it (clients of identical requests cluster, which the steady state "
                     f"leaves out): {above[0].label}: {above[0].unchecked}; accelcal predict checks any of them")
    ol = res.open_loop
    if ol:
        layout = best.label.rsplit(" C", 1)[0]
        if "error" in ol:
            lines.append(f"  open loop: {layout} at {ol['rate_per_s']:g} requests/s not run: {ol['error']}")
        else:
            verdict = ("misses: " + "; ".join(ol["misses"]) if ol["misses"]
                       else "meets the latency targets" if t.ttft_s is not None or t.tpot_s is not None
                       else "the rate is served (no --ttft or --tpot target given)")
            tpot = f"{ol['tpot_s'] * 1e3:.4g} ms" if ol["tpot_s"] is not None else "n/a (one output token)"
            lines.append(f"  open loop: {layout} at {ol['rate_per_s']:g} requests/s (Poisson, {ol['requests']} requests, "
                         f"as accelcal predict --request-rate runs it): TTFT {ol['stat']} {ol['ttft_s'] * 1e3:.4g} ms, "
                         f"TPOT {ol['stat']} {tpot}, {ol['requests_per_s']:.4g} requests/s completed; {verdict}")
            if ol["note"]:
                lines.append(f"  open loop note: {ol['note']}")
    lines.append("Pareto front (tokens/s per user vs per device):")
    for c in res.pareto:
        src = (("" if c.simulated else "  (steady state)") + ("  (misses)" if c.misses else "")
               + ("  (likely misses)" if c.unchecked.startswith("likely") else ""))
        lines.append(f"  {c.label:<34} per user {c.per_user:8.1f}  per device {c.per_device:8.1f}{src}")
    if res.rejected:
        lines.append(f"rejected {len(res.rejected)}:")
        items = rejections_by_reason(res.rejected)
        lines += [f"  {line}" for line in _reason_lines(items[:6])]
        if len(items) > 6:
            lines.append(f"  ... {len(items) - 6} more reasons ({sum(len(v) for _, v in items[6:])} candidates; --format json "
                         f"lists them all)")
    return "\n".join(lines) + "\n"


def rejections_by_reason(rejected: list[str]) -> list[tuple[str, list[str]]]:
    """[(reason, labels of the candidates it rejected)] in first-seen order: the reasons repeat across layouts
    ("LABEL: REASON" entries; "the profile cannot cost TP=1 PP=2: X" is X for every layout, the layout being the
    label's); a label of an entry without a reason is given as ""."""
    by_reason: dict[str, list[str]] = {}
    for r in rejected:
        label, _, why = r.partition(": ")
        why = re.sub(r"^the profile cannot cost TP=\d+ PP=\d+: ", "", why)
        by_reason.setdefault(why or label, []).append(label if why else "")
    return list(by_reason.items())


def _below_replicas(concurrencies: list[int], min_dp: int, devices: int, verdict: str) -> str:
    """Why concurrencies below every layout's replica count give no row: a closed loop of C clients keeps at most C
    replicas busy, and the search spreads every layout over all the devices."""
    shown = ", ".join(str(c) for c in sorted(concurrencies))
    return (f"--concurrency {shown}{verdict}: below every layout's replica count (each layout uses all {devices} devices; "
            f"the fewest replicas any has is DP{min_dp}), so a replica would get no request; give a concurrency >= "
            f"{min_dp}, or fewer devices (--nodes / --devices-per-node)")


def _closest_line(label: str, memory: dict, weight_dtype: str, devices: int) -> str:
    """The layout that comes nearest to fitting (smallest memory overflow), by how much, and what would fit it."""
    g = 1e9
    short = -memory["kv_pool_bytes"]
    per = DTYPE_BYTES.get(weight_dtype, 1)
    # offered only where 1 byte per weight saves more than the overflow (a model 10x too big gets no fp8 hint)
    fixes = (["fp8 weights (--weight-dtype fp8_e4m3) store 1 byte per weight"]
             if per > 1 and memory["weights_bytes"] * (1 - 1 / per) > short else [])
    fixes.append(f"more devices than {devices} (--nodes) split the weights further")
    return (f"closest {label}: weights {memory['weights_bytes'] / g:.4g} GB per device of {memory['capacity_bytes'] / g:.4g} "
            f"GB, {short / g:.4g} GB over what leaves any KV cache ({' or '.join(fixes)})")


def _reason_lines(items: list[tuple[str, list[str]]]) -> list[str]:
    """One line per reason: how many candidates it rejected, and up to four of them named."""
    out = []
    for why, labels in items:
        named = [x for x in labels if x]
        shown = ", ".join(named[:4]) + (f" (+{len(named) - 4} more)" if len(named) > 4 else "")
        # "9 candidates: REASON", not "9 x REASON": a reason may open with a count or a profile name of its own
        out.append(f"{count(len(labels), 'candidate')}: {why}" + (f" [{shown}]" if shown else ""))
    return out


def plot_pareto(res: ServingSearch, path: str) -> None:
    """PNG of every candidate and the Pareto front (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from accelcal.atomic import atomic_write_with

    fig, ax = plt.subplots(figsize=(7, 5))
    for eng in sorted({c.engine for c in res.ranked}):
        pts = [c for c in res.ranked if c.engine == eng]
        ax.scatter([c.per_user for c in pts], [c.per_device for c in pts], s=12, alpha=0.5, label=eng)
    front = res.pareto
    ax.plot([c.per_user for c in front], [c.per_device for c in front], "k-o", ms=4, label="Pareto front")
    best = res.best
    if best.per_user > 0:
        ax.scatter([best.per_user], [best.per_device], s=120, facecolors="none", edgecolors="red", linewidths=1.5,
                   label=f"{'closest' if best.misses else 'best'}: {best.label}", zorder=3)
    t = res.targets
    if t.tpot_s:
        # a TPOT target is a floor on tokens/s per user (1 / TPOT)
        ax.axvline(1.0 / t.tpot_s, color="red", ls="--", lw=0.8, label=f"TPOT target {t.tpot_s * 1e3:g} ms")
    ax.set_xlabel("output tokens/s per user")
    ax.set_ylabel("output tokens/s per device")
    given = [f"{n} {v * 1e3:g} ms" for n, v in (("TTFT", t.ttft_s), ("TPOT", t.tpot_s)) if v is not None]
    ax.set_title((res.load or "serving search") + (f"\ntargets ({t.stat}): {', '.join(given)}" if given else ""),
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
