"""One layout, one load, one engine: what the benchmark client would measure.

    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import predict_serving
    r = predict_serving(Profile.load("profiles/nvidia-h100.yaml"), "llama3-8b", engine="vllm", tp=1,
                        concurrency=16, isl=1024, osl=128)
    print(r.feasible, r.to_json()["tpot_mean_s"])

DP replicas each serve an even share of the clients (or of the request rate); the step-level simulation
of each distinct share is the prediction (``method="simulate"``), or the analytic steady state
(``method="steady"``, what the search uses).  Infeasible (weights + reserves do not fit, or one request
cannot fit) comes back as ``feasible=False`` with the arithmetic in ``reason``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from accelcal.calibrate.compose import (SMOKE_NOTE, datasheet_names, doubtful_collectives, fabric_device_mismatch,
                                        fabric_part, smoke_sweep, wider_node_than_measured)
from accelcal.models import ModelConfig
from accelcal.vocab import FP8_SCALINGS, SERVING_DTYPES

from ..report import datasheet_note
from .deployment import device_of
from .engine import EnginePreset, sizes_text
from .kv import Infeasible, KVBudget, check_request_runs, kv_budget, memory_in_use_bytes
from .moe_op import check_tables, pick_table
from .metrics import ServingMetrics, summarise
from .simulate import SimRun, simulate, simulate_lockstep
from .steady import steady_over_replicas
from .step_cost import StepCoster, StepCostError, expert_split_issue, replica_parallelism, require_engine_ep
from .workload import MAX_REQUESTS, ServingWorkload

__all__ = ["ServingPrediction", "predict_serving", "combine_profiles", "open_loop_requests", "serving_dtypes",
           "serving_warnings", "pooled_metrics", "simulate_replicas"]

JSON_KEYS = ("ttft_mean_s", "ttft_p50_s", "ttft_p99_s", "tpot_mean_s", "itl_mean_s", "request_latency_mean_s",
             "output_tokens_per_s", "output_tokens_per_s_per_device", "output_tokens_per_s_per_user", "requests_per_s")


@dataclass
class ServingPrediction:
    """The prediction, or why there is none."""

    feasible: bool
    reason: str
    engine: str
    layout: dict
    workload: dict
    metrics: ServingMetrics | None = None
    max_concurrent_sequences: int = 0
    memory: dict = field(default_factory=dict)
    steps_simulated: int = 0
    preemptions: int = 0
    decode_step: dict = field(default_factory=dict)
    prefill_share_of_decode_time: float = 0.0
    notes: list[str] = field(default_factory=list)
    engine_settings: dict = field(default_factory=dict)
    """How the engine ran, as accelcal predict set it: preset name, release, deployment recipe, --engine-arg
    overrides (empty from the Python API)."""
    warnings: list[str] = field(default_factory=list)
    """What makes the figures less than measured: one line per datasheet profile used (its missing latencies and
    launch overheads are costed at 0 s)."""
    inputs: dict = field(default_factory=dict)
    """What was predicted: model, device profile (and inter-node profile), weight and KV dtypes, method."""

    def to_json(self) -> dict:
        out: dict[str, Any] = {k: (getattr(self.metrics, k) if self.metrics else None) for k in JSON_KEYS}
        # every metric key, null when infeasible, so a program reads one schema
        out.update({f.name: (getattr(self.metrics, f.name) if self.metrics else None)
                    for f in dataclasses.fields(ServingMetrics) if f.name not in out})
        out.update({"max_concurrent_sequences": self.max_concurrent_sequences, "memory": self.memory,
                    "steps_simulated": self.steps_simulated, "feasible": self.feasible, "reason": self.reason,
                    "engine": self.engine, "engine_settings": self.engine_settings, "layout": self.layout,
                    "workload": self.workload, "inputs": self.inputs,
                    # null with the metrics when nothing ran (0 would read as a run without preemptions)
                    "preemptions": self.preemptions if self.metrics else None,
                    # the unit in every key: the breakdown's parts are seconds
                    "decode_step": {(f"{k}_s" if k in _STEP_SECONDS else k): v for k, v in self.decode_step.items()},
                    "prefill_share_of_decode_time": self.prefill_share_of_decode_time if self.metrics else None,
                    "notes": list(self.notes),
                    # always present so programs can test it: [] when every profile used is measured
                    "warnings": list(self.warnings)})
        if self.metrics and self.workload.get("osl") == 1:
            # one output token per request: no time per output token after the first, so no TPOT, ITL or per-user
            # token rate (null, as the table says n/a)
            for k in ("tpot_mean_s", "tpot_p50_s", "tpot_p90_s", "tpot_p99_s", "itl_mean_s",
                      "output_tokens_per_s_per_user"):
                out[k] = None
            out["decode_step"] = {}  # nothing decodes: the prefill makes the only token (the table says none)
        return out


_STEP_SECONDS = ("compute", "memory", "communication", "launch", "attention", "host", "total")
"""Parts of a decode step's breakdown (StepCoster.breakdown) that are seconds."""


def combine_profiles(profile: Any, interconnect: Any = None, inter_node: Any = None) -> tuple[Any, Any, list[str]]:
    """(device profile with the interconnect's collectives, inter-node profile, notes).

    Composition is ``accelcal.calibrate.compose.compose``: device numbers from ``profile``, each scope's
    collectives from its fabric's profile.
    """
    from accelcal.calibrate.compose import compose, require_device_profile

    require_device_profile(profile)
    notes: list[str] = []
    if interconnect is None and inter_node is None:
        return profile, None, notes

    return compose(profile, interconnect, inter_node), None, notes


def serving_warnings(profile: Any, inter_node_profile: Any, model: ModelConfig, isl: int, osl: int,
                     devices_per_node: int | None = None) -> list[str]:
    """What makes a serving answer less than measured: one line per datasheet profile used (its missing latencies
    and launch overheads are costed at 0 s), a request of ``isl`` + ``osl`` tokens beyond the model's context,
    each feature of the model's config the costing leaves out ("not modelled" in its source), and a
    ``devices_per_node`` (--devices-per-node) wider than the node the profile's fabric was measured on."""
    too_long = model.context_warning(isl, osl)
    # what the model's config has that the costing leaves out (e.g. Mistral's sliding window: KV and attention are
    # costed at full context, an overstatement once the context passes the window)
    unmodelled = [f"{model.name}: {part}" for part in str(model.source or "").split("; ") if "not modelled" in part]
    smoke = [f"profile {p.identity.name}: {SMOKE_NOTE}" for p in (profile, inter_node_profile)
             if p is not None and smoke_sweep(p)]
    return ([datasheet_note(n, True) for n in datasheet_names(profile, inter_node_profile)]
            + smoke + ([too_long] if too_long else []) + wider_node_than_measured(profile, devices_per_node)
            + unmodelled + fabric_device_mismatch(profile) + doubtful_collectives(profile))


def serving_dtypes(model: ModelConfig, weight_dtype: str | None = None, kv_dtype: str | None = None,
                   fp8_scaling: str | None = None) -> tuple[str, str, str, list[str]]:
    """(weight dtype, KV dtype, fp8 scaling, notes) a deployment of ``model`` runs: each None is the model's own
    (a Hugging Face config's fp8 ``quantization_config`` gives fp8_e4m3 weights, block-scaled when it has a
    ``weight_block_size``); 16- and 32-bit checkpoints are served in bf16, as the serving model costs them."""
    notes: list[str] = []
    for flag, value in (("--weight-dtype", weight_dtype), ("--kv-dtype", kv_dtype)):
        if value is not None and value not in SERVING_DTYPES:
            raise ValueError(f"{flag} must be one of {list(SERVING_DTYPES)}, got {value!r}")
    if fp8_scaling is not None and fp8_scaling not in FP8_SCALINGS:
        raise ValueError(f"--fp8-scaling must be one of {list(FP8_SCALINGS)}, got {fp8_scaling!r}")
    if weight_dtype is None:
        weight_dtype = model.weight_dtype if model.weight_dtype in SERVING_DTYPES else "bf16"
        if weight_dtype != model.weight_dtype:
            notes.append(f"{model.name} stores {model.weight_dtype} weights: served and costed as bf16 (--weight-dtype)")
        elif weight_dtype == "fp8_e4m3":
            notes.append(f"fp8_e4m3 weights: {model.name}'s own precision (its quantization config); "
                         f"--weight-dtype bf16 costs the unquantised model")
    if kv_dtype is None:
        kv_dtype = model.kv_dtype if model.kv_dtype in SERVING_DTYPES else "bf16"
    if fp8_scaling is None:
        fp8_scaling = "block" if weight_dtype == "fp8_e4m3" and model.weight_block_size else "per_tensor"
    elif fp8_scaling == "block" and weight_dtype != "fp8_e4m3":
        raise ValueError(f"--fp8-scaling block: the weights are {weight_dtype}; block scaling applies to fp8_e4m3 "
                         f"weights (--weight-dtype fp8_e4m3)")
    return weight_dtype, kv_dtype, fp8_scaling, notes


def node_devices(profile: Any, devices_per_node: int | None) -> int:
    """Devices per node: ``devices_per_node`` where given (>= 1), else the profile's (its fabric's)."""
    if devices_per_node is None:
        return int(profile.identity.devices_per_node)
    if not isinstance(devices_per_node, int) or devices_per_node < 1:
        raise ValueError(f"--devices-per-node must be an integer >= 1, got {devices_per_node!r}")
    return devices_per_node


def predict_serving(profile: Any, model: ModelConfig | str, engine: EnginePreset | str, tp: int = 1, pp: int = 1,
                    dp: int = 1, concurrency: int | None = None, isl: int = 1024, osl: int = 128,
                    request_rate_per_s: float | None = None, num_requests: int | None = None,
                    weight_dtype: str | None = None, kv_dtype: str | None = None, inter_node_profile: Any = None,
                    method: str = "simulate", range_ratio: float | None = None, fp8_scaling: str | None = None,
                    capacity_bytes: float | None = None, turnaround_s: float | None = None, client_gap_s: float = 0.0,
                    warmup_requests: int = 0, warmup_drains: bool = False, ep: int = 1,
                    range_mode: str = "around", moe_tp: int = 0,
                    devices_per_node: int | None = None, moe_tables: Any = (),
                    progress: Callable[[int, int], None] | None = None) -> ServingPrediction:
    """``turnaround_s`` None: the workload's default client turnaround (ServingWorkload.turnaround_s);
    ``client_gap_s``: the closed-loop client's pause between a response and its next request (outside TTFT).
    ``ep``: 1 (experts TP-split), ``tp`` (a MoE model's experts spread over the replica's TP group) or ``tp`` x k
    (over k replicas with attention data-parallel, k dividing ``dp``: replica_parallelism).  ``moe_tp``: ``tp`` x k
    with ``ep`` 1, every expert TP-split over k attention data-parallel replicas (vLLM's default for a MoE model
    with --data-parallel-size; 0: as ``ep`` says).  ``devices_per_node`` None: the profile's (its fabric's); given,
    where the node boundaries fall for TP, PP and EP groups (a group wider than it runs over the inter-node profile).
    ``range_ratio``, ``range_mode``: the client's length spread (ServingWorkload.range_mode says what each means).
    ``weight_dtype``, ``kv_dtype``, ``fp8_scaling`` None: the model's own (serving_dtypes).  ``moe_tables``:
    published tables of engines' MoE ops (calibrate.moe_table.MoeOpTable), ``engine``'s answering for the routed
    experts where it has the model's shape (moe_op.EngineMoeOp); one for another engine only is an error.
    ``progress``: (requests simulated, requests in all) now and then during a simulation (simulate_replicas)."""
    model = ModelConfig.resolve(model)
    weight_dtype, kv_dtype, fp8_scaling, dtype_notes = serving_dtypes(model, weight_dtype, kv_dtype, fp8_scaling)
    if not isinstance(engine, EnginePreset):
        # a name or preset file carries no release: its newest documented defaults and this device's, as `accelcal
        # predict` and the search take them (an EnginePreset passed in is used as it is, e.g. one apply_deployment
        # gave)
        engine = EnginePreset.resolve(engine).for_release_on("", *device_of(profile))[0]
    for name, v in (("tp", tp), ("pp", pp), ("dp", dp), ("ep", ep)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {v!r}")
    if not isinstance(moe_tp, int) or moe_tp < 0:
        raise ValueError(f"--moe-tp must be an integer >= 0 (0, the default: each replica keeps every expert; --tp x k: "
                         f"every expert split over k replicas), got {moe_tp!r}")
    extra = {} if turnaround_s is None else {"turnaround_s": turnaround_s}
    if num_requests is None and request_rate_per_s is not None and concurrency is None and isinstance(dp, int) and dp >= 1:
        num_requests = open_loop_requests(dp)
    workload = ServingWorkload(isl=isl, osl=osl, concurrency=concurrency, request_rate_per_s=request_rate_per_s,
                               num_requests=num_requests, range_ratio=range_ratio, range_mode=range_mode,
                               warmup_requests=warmup_requests,
                               warmup_drains=warmup_drains, client_gap_s=client_gap_s, **extra)
    if method not in ("simulate", "steady"):
        raise ValueError(f"method must be simulate or steady, got {method!r}")
    dpn = node_devices(profile, devices_per_node)
    check_tables(moe_tables, profile)  # a table of another device is bad input, whichever engine it is for
    table = pick_table(moe_tables, engine.name)
    unused = [t for t in moe_tables or () if t is not table]  # another engine's, given beside this one's
    if ep > 1 and not model.is_moe:
        raise ValueError(f"--ep {ep}: {model.name} is a dense model (no experts to spread)")
    if moe_tp and not model.is_moe:
        raise ValueError(f"--moe-tp {moe_tp}: {model.name} is a dense model (no experts to split)")
    model.require_tp_divides_heads(tp)  # before any memory arithmetic: a TP that cannot split the heads is bad input
    par = replica_parallelism(tp, pp, dp, dpn, ep, model.num_experts, moe_tp)
    require_engine_ep(engine, tp, ep)
    split_issue = expert_split_issue(model, par, engine, weight_dtype, fp8_scaling)
    if split_issue is not None and split_issue.unequal:
        raise ValueError(split_issue.message)
    engine, layout_notes = engine.for_layout(tp, pp, par.moe_replicas)
    layout = {"tp": tp, "pp": pp, "dp": dp, "ep": ep, "moe_tp": par.moe_tp, "devices": par.devices,
              "tp_scope": par.tp_scope}
    # the measured requests it ran, the default (10 x C, at least 100; 200 open loop) or the given count
    wl = {**{k: v for k, v in dataclasses.asdict(workload).items() if k != "stream"},  # a replica's share only
          "num_requests": workload.requests - workload.warmup_requests}
    pred = ServingPrediction(False, "", engine.name, layout, wl, notes=dtype_notes + layout_notes)
    if unused:
        pred.notes.append(f"--moe-table: {', '.join(f'{t.origin} ({t.engine})' for t in unused)} not used: this run "
                          f"is {engine.name}'s")
    if moe_tp and moe_tp == tp:
        pred.notes.append(f"--moe-tp {moe_tp} = --tp {tp}: every expert is split over the replica's own TP group, as "
                          f"without --moe-tp (it splits them over several replicas only as --tp x k, k >= 2)")
    inter_part = fabric_part(profile, "inter_node")
    pred.inputs = {"model": model.name, "profile": getattr(profile.identity, "name", "?"),
                   "inter_node_profile": (getattr(inter_node_profile.identity, "name", "?")
                                          if inter_node_profile is not None else inter_part.name if inter_part else None),
                   "weight_dtype": weight_dtype, "expert_weight_dtype": model.expert_weight_dtype or None,
                   "kv_dtype": kv_dtype, "method": method, "moe_table": table.origin if table is not None else None}
    if workload.closed_loop and num_requests is not None and num_requests < workload.concurrency and method == "simulate":
        # (the steady state runs no requests: it says it leaves --num-requests out)
        # --concurrency is every replica's clients together (ServingWorkload.client_shares splits it)
        pred.notes.append(f"--num-requests {num_requests} < --concurrency {workload.concurrency}: only "
                          f"{num_requests} request(s) are sent, so fewer than {workload.concurrency} are ever in flight")
    isls, osls = workload.lengths()
    pred.warnings = serving_warnings(profile, inter_node_profile, model, int(isls.max()), int(osls.max()),
                                     devices_per_node)
    if split_issue is not None:  # partial fp8 blocks: the engine is documented to refuse them; predicted as asked
        pred.warnings.append(f"{split_issue.message} (predicted as asked; accelcal plan leaves such layouts out)")
    cap = capacity_bytes or float(profile.identity.memory_capacity_bytes)
    try:
        kv = kv_budget(model, engine, tp, pp, cap, weight_dtype, kv_dtype, ep, memory_in_use_bytes(profile),
                       par.moe_tp)
        pred.memory = kv.to_dict()
        per_replica = -(-workload.concurrency // dp) if workload.closed_loop else None
        if kv.max_state_seqs and (per_replica is None or kv.max_state_seqs < min(per_replica, engine.max_seqs)):
            pred.notes.append(f"linear-attention state pool: {engine.name} runs at most {kv.max_state_seqs} requests at "
                              f"once per replica ({kv.state_pool_bytes / 1e9:.3g} GB of states, "
                              f"{kv.state_bytes_per_seq / 1e6:.4g} MB each, {engine.linear_state_slots_per_request} kept "
                              f"per running request), fewer than the "
                              + (f"{per_replica} clients per replica" if per_replica else "load may bring")
                              + "; the rest queue (engine keys linear_state_memory_ratio, linear_state_slots_per_request)")
        check_request_runs(engine, kv, isl, osl)  # the nominal request; the simulation checks each drawn one
    except Infeasible as exc:
        pred.reason = str(exc)
        pred.memory = pred.memory or exc.memory
        return pred
    coster = StepCoster(profile, model, par, engine, weight_dtype, kv_dtype, inter_node_profile,
                        fp8_scaling=fp8_scaling, moe_table=table)
    pred.notes += coster.notes
    pred.warnings += [w for w in coster.warnings if w not in pred.warnings]
    devices = tp * pp
    if method == "steady":
        if not workload.closed_loop:
            raise ValueError("the steady-state shortcut models a closed loop; use --method simulate (the default) "
                             "with --request-rate")
        ignored = [flag for flag, given in (("--num-requests", num_requests is not None),
                                            ("--warmup-requests", workload.warmup_requests > 0),
                                            ("--turnaround-ms", turnaround_s is not None),
                                            ("--client-gap-ms", workload.client_gap_s > 0)) if given]
        if ignored:
            pred.notes.append(f"the steady state leaves out {', '.join(ignored)}: it models a long run of identical "
                              f"requests from clients that send at once and do not cluster (--method simulate "
                              f"models them)")
        steady_isl, steady_osl = workload.mean_lengths
        if not workload.fixed_lengths:
            pred.notes.append(f"the steady state leaves out the spread of --range-ratio {workload.range_ratio:g} "
                              f"({workload.range_mode}): its identical requests have the spread's mean lengths, "
                              f"{steady_isl} prompt and {steady_osl} output tokens (--method simulate draws them)")
        # each replica's clients (C = 4 over 3 replicas: 2, 1, 1); the busiest replica sets the latencies
        s, tps, rps = steady_over_replicas(engine, coster, kv, steady_isl, steady_osl, workload.concurrency, dp)
        per_user = 1.0 / s.tpot_s if s.tpot_s > 0 else 0.0
        n = workload.requests - workload.warmup_requests
        # duration: what the run's requests take at the steady rate; percentiles None: the steady state has means
        # only (one request's TTFT, TPOT and latency in a long run of identical ones)
        pred.metrics = ServingMetrics(s.ttft_s, None, None, None, s.tpot_s, None, None, None,
                                      s.tpot_s, s.request_latency_s, None, None, None, tps, tps / (devices * dp),
                                      per_user, rps, n / rps if rps > 0 else 0.0, n)
        pred.notes.append("the steady state gives means only: no percentiles (null in the JSON; --method simulate "
                          "gives them)")
        pred.max_concurrent_sequences = s.in_engine
        pred.decode_step = s.decode_breakdown
        pred.notes += _eager_batch_note(engine, pred.decode_step) + _host_work_note(engine, pred.decode_step)
        pred.prefill_share_of_decode_time = s.prefill_share
        pred.notes += [n for n in coster.notes if n not in pred.notes]  # what the steady state's steps met
        pred.feasible = True
        return pred
    try:
        runs = simulate_replicas(engine, coster, kv, workload, dp, devices, progress)
    except Infeasible as exc:
        pred.reason = str(exc)
        return pred
    pred.metrics = pooled_metrics(runs, devices * dp)
    pred.notes += [n for n in coster.notes if n not in pred.notes]  # what the steps met (e.g. extrapolated collectives)
    beyond = coster.moe_op.beyond_note()
    if beyond:
        pred.notes.append(beyond)
    if not workload.closed_loop:
        note = _overload_note(runs, workload.request_rate_per_s, pred.metrics.requests_per_s)
        if note:
            pred.notes.insert(0, note)
    else:
        note = _closed_loop_span_note(pred.metrics, workload)
        if note:
            pred.notes.append(note)
        if workload.fixed_lengths:
            note = _clustering_note(pred.metrics.ttft_mean_s, engine, coster, kv, isl, osl, workload.concurrency, dp,
                                    workload.turnaround_s / 2)
            if note:
                pred.notes.append(note)
    first = runs[0][0]
    pred.max_concurrent_sequences = max(run.max_running for run, _ in runs)
    pred.steps_simulated = sum(run.steps * k for run, k in runs)
    pred.preemptions = sum(run.preemptions * k for run, k in runs)
    pred.decode_step = first.decode_step
    pred.notes += _eager_batch_note(engine, pred.decode_step) + _host_work_note(engine, pred.decode_step)
    pred.prefill_share_of_decode_time = first.prefill_share_of_decode_time
    pred.feasible = True
    return pred


def _host_work_note(engine: EnginePreset, decode_step: dict) -> list[str]:
    """Where --engine-arg set the engine's host work: what it came to at the typical decode step, and whether it
    added to the device time, was hidden by overlap scheduling, or set the step."""
    b = decode_step.get("batch")
    if not (engine.host_step_s or engine.host_s_per_seq) or not b:
        return []
    host = engine.host_work_s(int(b))
    device = decode_step.get("total", 0.0) - decode_step.get("host", 0.0)
    how = ("sets the step under overlap scheduling (the device waits for it)" if decode_step.get("host_sets_step")
           else "is hidden: overlap scheduling prepares the next step while the device runs this one"
           if engine.overlaps_steps else "adds to it: host and device take turns")
    return [f"engine host work at the typical decode step: {host * 1e3:.4g} ms (host_step_s "
            f"{engine.host_step_s:g} s + host_s_per_seq {engine.host_s_per_seq:g} s x {b} requests) against "
            f"{device * 1e3:.4g} ms of device time: it {how}"]


def _eager_batch_note(engine: EnginePreset, decode_step: dict) -> list[str]:
    """A note when the typical decode batch has no captured CUDA graph (it runs eager, launches and all), which
    can make a higher concurrency slower per token than a lower one whose batch replays a graph."""
    b = decode_step.get("batch")
    if not (engine.cuda_graphs and engine.cuda_graph_sizes and b) or engine.graph_batch(int(b)) is not None:
        return []
    sizes = engine.cuda_graph_sizes
    why = "above the largest" if b > sizes[-1] else "between captured sizes, padding off"
    return [f"CUDA graphs: the typical decode batch {b} runs eager ({why}: {engine.name} captures "
            f"{sizes_text(sizes)}; --engine-arg cuda_graph_sizes=[...] sets them as your deployment does)"]


def simulate_replicas(engine: EnginePreset, coster: StepCoster, kv: KVBudget, workload: ServingWorkload, dp: int,
                      devices: int, progress: Callable[[int, int], None] | None = None) -> list[tuple[SimRun, int]]:
    """[(run, replicas it stands for)]: every one of ``dp`` replicas simulated with its share of the load
    (workload.replica_shares: its clients, or its round-robin share of the one open-loop stream; its requests; its
    own seed); the replicas of one attention data-parallel MoE group (moe_group / tp of them) together, in lockstep
    (simulate_lockstep); replicas whose runs cannot differ (a closed loop with fixed lengths and no turnaround
    delay, where the seed draws nothing) are run once.
    ``accelcal predict`` and the serving search's re-check both run a layout through here, so they agree.
    ``progress``: called now and then with (requests simulated, an estimate of all the runs' requests)."""
    seedless = workload.closed_loop and workload.fixed_lengths and workload.turnaround_s == 0
    # attention data parallelism: the replicas of one MoE group run in lockstep, so they are simulated together
    lock = coster.parallelism.moe_replicas
    groups: dict = {}
    every = workload.replica_shares(dp)
    for first in range(0, dp, lock):
        shares = tuple(every[first:first + lock])
        key = tuple(dataclasses.replace(s, seed=0) for s in shares) if seedless else shares
        groups.setdefault(key, [shares, 0])[1] += 1
    runs: list[tuple[SimRun, int]] = []
    finished = 0  # requests of the runs done so far

    def report(done: int, total: int, left: int) -> None:
        # the runs still to come are taken to be as long as this one
        progress(finished + done, finished + total * (1 + left))

    for i, (shares, k) in enumerate(groups.values()):
        left = len(groups) - 1 - i
        if len(shares) == 1:
            feed = None if progress is None else (lambda d, t, left=left: report(d, t, left))
            group = [simulate(engine, coster, kv, shares[0], devices, progress=feed)]
        else:
            group = simulate_lockstep(engine, coster, kv, list(shares), devices)
        runs += [(run, k) for run in group]
        finished += sum(len(run.times_s) for run in group)
    return runs


def _overload_note(runs: list[tuple[SimRun, int]], offered_per_s: float, completed_per_s: float) -> str:
    """Open loop: when the engine falls behind the arrivals, TTFT and latency say how long the run was, not how the
    engine serves: say so, with the rate it does complete.  Falling behind shows as fewer completions than arrivals
    over the middle half of the arrivals, counted one request latency later (a backlog grows, whether as waits for
    the first token or, where an engine admits every request at once, as longer decode steps; counted without the
    shift, a short run whose latency is long next to that span read as one), or as the last quarter of the requests
    waiting far longer for their first token than the first quarter.  A completed rate below the offered one
    without either is the run's span (a finite sample of arrivals, then the last requests' latency): say that
    instead."""
    times = sorted(t for run, k in runs for _ in range(k) for t in run.times_s)
    n = len(times)
    if n < 2 or completed_per_s <= 0:
        return ""
    q = n // 4
    if q >= 5:
        first_wait = sum(f - a for a, f, _ in times[:q]) / q
        last_wait = sum(f - a for a, f, _ in times[-q:]) / q
        lat = sum(e - a for a, _, e in times[:q]) / q  # what a request takes before any backlog
        t0, t1 = times[q][0], times[3 * q][0]  # the middle half of the arrivals
        # completions over the same span, one first-quarter latency later: as many as arrived unless a backlog grows
        finished = sum(t0 + lat <= e < t1 + lat for _, _, e in times)
        if finished < OVERLOAD_COMPLETED_SHARE * 2 * q or last_wait >= OVERLOAD_TTFT_GROWTH * first_wait:
            return (f"overloaded: {offered_per_s:g} requests/s offered, {completed_per_s:.4g} completed; the backlog "
                    f"grows over the run ({finished} requests finished while the middle {2 * q} arrived, "
                    f"{lat:.4g} s later; mean TTFT of the last quarter of the requests {last_wait:.4g} s, of the "
                    f"first {first_wait:.4g} s), so TTFT and latency grow with --num-requests: lower --request-rate "
                    f"or add replicas")
    if completed_per_s < 0.97 * offered_per_s:
        return (f"{completed_per_s:.4g} requests/s completed of the {offered_per_s:g} offered: the rate is the "
                f"requests over the run's span, as benchmark clients report it (the seeded arrivals of {n} requests, "
                f"then the last ones' latency), and comes closer to the offered rate with more --num-requests")
    return ""


OVERLOAD_TTFT_GROWTH = 3.0
"""Open loop: the last quarter's mean TTFT this many times the first quarter's reads as a growing backlog."""

OVERLOAD_COMPLETED_SHARE = 0.8
"""Open loop: fewer completions than this share of the middle half's arrivals, over the same span shifted by the
first quarter's latency, reads as a growing backlog (also where an engine admits every arrival and slows every step
instead of queueing)."""

OPEN_LOOP_MIN_PER_REPLICA = 2
"""An open loop's default run sends at least this many requests per DP replica (200 in all otherwise)."""


def open_loop_requests(dp: int) -> int:
    """Requests an open loop runs by default over ``dp`` replicas: ServingWorkload's 200, but at least
    OPEN_LOOP_MIN_PER_REPLICA for each replica to serve (``accelcal predict`` and plan's open-loop run).  Refused,
    naming the default, where that is more than one simulated run holds (the user gave no request count)."""
    n = max(ServingWorkload(isl=1, osl=1, request_rate_per_s=1.0).requests, OPEN_LOOP_MIN_PER_REPLICA * dp)
    if n > MAX_REQUESTS:
        raise ValueError(f"--dp {dp} with --request-rate runs {OPEN_LOOP_MIN_PER_REPLICA} requests per replica by "
                         f"default ({n}), more than the {MAX_REQUESTS} one simulated run holds; "
                         + (f"pass --num-requests N with {dp} <= N <= {MAX_REQUESTS} (each replica needs one)"
                            if dp <= MAX_REQUESTS else
                            "the replicas share the stream alike: predict one with --dp 1 at the rate / dp"))
    return n


CLUSTERING_NOTE_RATIO = 1.3
"""A closed loop's simulated mean TTFT this many times the steady state's (desynchronised clients) gets a note."""


LITTLE_NOTE_SHARE = 0.97
"""A closed loop's completed requests/s x (latency + client gap) below this share of its clients: predict says the
rate is the run's span (its start and its drain), not a long run's."""


def _closed_loop_span_note(m: ServingMetrics, workload: ServingWorkload) -> str:
    """Closed loop: requests/s is the requests over the run's span, as benchmark clients report it, the clients'
    start and the last requests' drain included; where that is visibly below Little's law for an unending run
    (clients / (latency + gap)), say so and how to come closer."""
    c = workload.concurrency
    per_client_s = m.request_latency_mean_s + workload.client_gap_s
    if not c or m.requests < c or m.requests_per_s <= 0 or per_client_s <= 0:
        return ""  # fewer requests than clients: the note on --num-requests says why the rate falls short
    steady = c / per_client_s
    if m.requests_per_s >= LITTLE_NOTE_SHARE * steady:
        return ""
    return (f"{m.requests_per_s:.4g} requests/s completed over the run's span, as benchmark clients report it (the "
            f"{c} clients' start and the last requests' drain included); an unending run of {c} clients at this "
            f"latency completes {c} / {per_client_s:.4g} s = {steady:.4g} requests/s (Little's law), and more "
            f"--num-requests ({m.requests} now) come closer to it")


def _clustering_note(ttft_s: float, engine: EnginePreset, coster: StepCoster, kv: KVBudget, isl: int, osl: int,
                     concurrency: int, dp: int, turnaround_mean_s: float) -> str:
    """Closed loop of identical requests: say how much of the simulated TTFT is clients arriving together (they
    start together and, finishing close together, come back together), against the steady state's desynchronised
    clients plus the mean client turnaround the simulation adds to every TTFT, when the two differ by
    CLUSTERING_NOTE_RATIO or more.  Which one a benchmark sees depends on its client (benchmarks/RESULTS.md:
    published rows of both kinds)."""
    try:
        steady, _, _ = steady_over_replicas(engine, coster, kv, isl, osl, concurrency, dp)
    except (Infeasible, StepCostError):
        return ""
    spread = steady.ttft_s + turnaround_mean_s
    if steady.ttft_s <= 0 or ttft_s < CLUSTERING_NOTE_RATIO * spread:
        return ""
    return (f"TTFT: {ttft_s * 1e3:.4g} ms mean here, where clients that start together stay clustered (as in a "
            f"benchmark whose clients all start at once, e.g. after a drained warm-up); clients whose requests "
            f"arrive spread out would see about {spread * 1e3:.4g} ms (the steady state, --method steady, with the "
            f"client turnaround); "
            f"which a benchmark sees depends on its client (benchmarks/RESULTS.md compares published runs of both "
            f"kinds)")


def pooled_metrics(parts: list[tuple[SimRun, int]], devices: int) -> ServingMetrics:
    """Replicas side by side from t = 0, as one benchmark client sees them: every measured request of every
    replica (a run standing for ``k`` identical replicas counted ``k`` times) in one set of means, percentiles
    and throughput over the whole run."""
    if len(parts) == 1 and parts[0][1] == 1:
        m = parts[0][0].metrics
        return dataclasses.replace(m, output_tokens_per_s_per_device=m.output_tokens_per_s / devices)
    times = [t for run, k in parts for _ in range(k) for t in run.times_s]
    osl = [o for run, k in parts for _ in range(k) for o in run.output_tokens]
    a, f, e = zip(*times)
    return summarise(a, f, e, osl, devices)
