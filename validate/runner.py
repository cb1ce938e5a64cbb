"""One validation run: build the cases, ask the planner, measure, compare, rank, write.

    from accelcal.validate.runner import run_validation
    run = run_validation("profiles/my-cpu.yaml", device="cpu", nproc=2, models=["tiny"], quick=True)
    print(run.median_abs_rel_err, [r.agree for r in run.rankings])

Order matters for safety: the profile is loaded and every prediction is made
*before* anything is measured (a profile the planner cannot use fails in
milliseconds), and the profile is written only after every case, on every
rank, has finished; a failure anywhere leaves the file as it was.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from accelcal.machine_load import busy_note, cpu_seconds

from .compare import VALIDATION_IMPLEMENTATION, Comparison, predict_case, prediction_model, summarize, validation_dtype, write_validation
from .configs import Case, default_cases, ranking_cases
from .ranking import Ranking, layout_label

__all__ = ["ValidationRun", "run_validation"]


@dataclass
class ValidationRun:
    """Everything one ``accelcal validate`` produced."""

    device: str
    """Device spec the layers ran on."""
    device_name: str
    """Human-readable device name."""
    dtype: str
    """dtype the layers ran in (and the planner was asked about)."""
    comparisons: list[Comparison]
    """Measured vs predicted, one per case."""
    rankings: list[Ranking] = field(default_factory=list)
    """TP=k vs TP=1 x DP=k per phase (multi-rank runs only)."""
    written: bool = False
    """Whether the profile's validation section was written."""
    wall_s: float = 0.0
    """Seconds the run took."""
    notes: list[str] = field(default_factory=list)
    """Caveats worth printing (thread split across CPU ranks, noisy cases)."""

    @property
    def median_abs_rel_err(self) -> float:
        return summarize(self.comparisons)[0]

    @property
    def max_abs_rel_err(self) -> float:
        return summarize(self.comparisons)[1]


def _models(names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from accelcal.models import ModelConfig

    from .layers import LayerDims

    configs = {n: ModelConfig.resolve(n) for n in names}
    for n, m in configs.items():
        # the torch layers here are plain ones: what the planner costs differently would be compared with a layer
        # that does not do it
        built = [what for what, has in (("sliding-window attention (sliding_layers)", m.sliding_layers),
                                        (f"weight-only {m.expert_weight_dtype} experts", m.expert_weight_dtype),
                                        ("multi-head latent attention (kv_lora_rank)", m.is_mla),
                                        ("dense layers among the MoE ones (dense_layers)", m.dense_layers),
                                        ("Gated DeltaNet linear-attention layers (linear_layers)", m.linear_layers),
                                        ("gated attention output (attn_output_gate)", m.attn_output_gate),
                                        ("norms after the attention and the MLP (post_norms)", m.post_norms)) if has]
        if built:
            raise ValueError(f"validate --model {n}: its {' and '.join(built)} are not built into the torch layers "
                             f"validation runs (full attention, experts in the activation dtype); validate a model "
                             f"without them (e.g. small-moe, mixtral-8x7b, qwen3-30b-a3b)")
    return configs, {n: LayerDims.from_model(m) for n, m in configs.items()}


def _cache_notes(dev: Any, configs: dict[str, Any], dtype: str, cases: list[Case]) -> list[str]:
    """Say which models' layers fit in the last-level cache: their GEMMs then read cache, not DRAM.

    The profile's GEMM fits were measured with rotated (cold) buffers, as a
    real model's weights are; a layer that fits in cache runs faster than that
    and the comparison measures the cache, not the prediction.
    """
    from accelcal.vocab import DTYPE_BYTES

    from .measure import last_level_cache_bytes

    llc = last_level_cache_bytes(dev)
    out = []
    for name, m in configs.items():
        tps = sorted({c.tp for c in cases if c.model == name})
        for tp in tps:
            wbytes = m.layer_params() * DTYPE_BYTES[dtype] / tp
            if llc and wbytes * tp < llc:
                advice = ("use small/small-moe for DRAM-resident layers" if name not in ("small", "small-moe") else
                          "no validation preset is larger than this cache; the errors measure cache-resident GEMMs")
                out.append(f"{name} at TP={tp}: the layer's weights ({wbytes / 2**20:.1f} MiB per rank) fit in the "
                           f"{llc / 2**20:.0f} MiB last-level cache: its GEMMs run from cache, faster than the "
                           f"profile's cold-buffer fits predict ({advice})")
    return out


def _device_mismatch(profile: Any, profile_path: str, dev: Any) -> str:
    """"" when this run is on the device the profile describes, else what differs (another device's errors do not
    measure this profile's accuracy: --write refuses, a plain run warns)."""
    from accelcal.calibrate.priors import same_device_model

    ident = profile.identity
    mine = (str(ident.device_type), str(ident.device_name))
    here = (str(dev.type), str(dev.name()))
    if mine[0] == here[0] and same_device_model(mine[1], here[1]):
        return ""
    return f"{profile_path} describes {mine[1]} ({mine[0]}), but this run is on {here[1]} ({here[0]})"


def run_validation(profile_path: Any, device: str | None = None, nproc: int = 1, models: list[str] | None = None,
                   quick: bool = False, write: bool = True, dtype: str | None = None, ranking: bool = True,
                   preset: str | None = None, shapes: int | None = None, results_dir: Any = None,
                   progress: Callable[[str], None] | None = print, implementation: str | None = None) -> ValidationRun:
    """Validate the profile at ``profile_path`` on ``device``; see the module docstring for the order."""
    from accelcal.calibrate.profile import MissingMeasurement, Profile
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import Stats, TimingConfig

    from .configs import DEFAULT_MODELS
    from .measure import CaseSkipped, cpu_threads, measure_case, profile_threads

    say = progress or (lambda _msg: None)
    t0 = time.monotonic()
    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    profile = Profile.load(profile_path, what="--profile")
    from accelcal.calibrate.compose import require_device_profile

    require_device_profile(profile, fabric_flags=False)  # validate times a device's layers: it needs their compute
    if models:
        _models(models)  # a model the torch layers cannot build is refused before any device is touched
    # Destinations before measuring: the profile (its validation section) and the raw results folder.
    from accelcal.preflight import check_dir, check_file

    if write:
        check_file(profile_path, what="--profile (written back)", need_bytes=4 * 2**20)
        if os.path.exists(profile_path) and not os.access(profile_path, os.W_OK):
            # the write keeps the file's mode: a read-only profile would fail only after every case was measured
            raise ValueError(f"--profile {profile_path}: read-only (no write permission); --write puts the validation "
                             f"section into it: make it writable, or validate without --write")
    if results_dir is not None:
        check_dir(results_dir, what="--results", need_bytes=16 * 2**20)
    dev = resolve_device(device)
    mismatch = _device_mismatch(profile, profile_path, dev)
    if write and mismatch:
        raise ValueError(f"--write: {mismatch}; its validation would not be that profile's. Validate without --write, "
                         f"or calibrate a profile on this device and write into that one")
    if mismatch:
        mismatch = (f"WARNING: {mismatch}: the errors compare that profile's predictions with this device's timings, "
                    f"not the profile's accuracy; calibrate this device (accelcal calibrate) to validate its own profile")
        say(mismatch)
    if nproc > 1:
        from accelcal.collectives.launch import check_local_launch

        # the collective sweep's own limits: ranks per CPU core, one rank per accelerator
        check_local_launch(nproc, dev.type)
    dt = validation_dtype(profile, dev.type, dtype)
    names = models or DEFAULT_MODELS["cpu" if dev.is_cpu else "gpu"]
    configs, dims = _models(names)
    moe = {n for n, m in configs.items() if m.is_moe}
    cases = default_cases(dev.type, names, quick=quick, nproc=nproc, has_graphs=dev.has_graphs, moe_models=moe,
                          shapes=shapes)
    from .layers import check_tp

    for c in cases:
        check_tp(dims[c.model], c.tp)  # fail here, not inside the spawned ranks
    rank_sets: dict[str, list[Case]] = {}
    dense = [n for n in names if n not in moe]
    if ranking and nproc > 1 and dense:
        rank_sets = ranking_cases(dense[0], ranks=nproc)
    cfg_name = preset or ("quick" if quick else "default")
    cfg = TimingConfig.preset(cfg_name)

    impl = implementation or VALIDATION_IMPLEMENTATION
    # A CPU "device" is one rank's share of the cores: run every case, single-rank ones included,
    # with the thread count the profile's kernels were measured with, so both describe one device.
    threads = profile_threads(profile, dev)

    # 1. Predictions first: a profile or model the planner cannot cost fails before any measuring.
    pmodels = {n: prediction_model(m, dt) for n, m in configs.items()}
    every = cases + [c for cs in rank_sets.values() for c in cs if c not in cases]
    preds: dict[Case, Any] = {}
    notes: list[str] = [mismatch] if mismatch else []
    for c in every:
        try:
            preds[c] = predict_case(profile, pmodels[c.model], c, impl)
        except MissingMeasurement as exc:  # the profile lacks what this case needs; skip it, say why
            notes.append(f"skipped {c.name}: the planner cannot predict it from this profile: {exc}")
    if not preds:
        raise ValueError(f"the planner could not predict any validation case from {profile_path}: " + "; ".join(notes))
    # Say where the planner fell back on an unmeasured figure (e.g. a phase's attention the profile lacks):
    # those cases' errors measure the fallback, not the fit.
    notes += fallback_notes(preds)
    every = [c for c in every if c in preds]
    rank_sets = {ph: cs for ph, cs in rank_sets.items() if all(c in preds for c in cs)}

    cpu_start, wall_start = cpu_seconds(), time.perf_counter()  # what other processes use while we measure

    # 2. Single-rank cases in this process.
    measured: dict[Case, Any] = {}
    single = [c for c in every if c.ranks == 1]
    multi = [c for c in every if c.ranks > 1]
    say(f"validate: {len(every)} case(s) on {dev.spec} ({dev.name()}): {len(single)} in this process, "
        f"{len(multi)} on {nproc} ranks; dtype {dt}, timing preset {cfg_name}, costed as {impl}"
        + (f", {threads} thread(s) per CPU device (the profile's)" if threads else ""))
    with cpu_threads(threads):
        for n, c in enumerate(single, 1):
            try:
                m = measure_case(c, dims[c.model], dt, dev, cfg)
            except CaseSkipped as exc:
                notes.append(f"skipped {c.name}: {exc}")
                say(f"  [{n}/{len(single)}] {c.name}: skipped: {exc}")
                continue
            measured[c] = m
            say(f"  [{n}/{len(single)}] {c.name}: measured {m.measured_s * 1e3:.3f} ms, "
                f"predicted {preds[c].total_s * 1e3:.3f} ms ({m.method})")

    # 3. Multi-rank cases on spawned ranks (the layer's own all-reduces inside the timed forward).
    if multi:
        from .tp_worker import run_rank_cases

        out = run_rank_cases(multi, {n: dims[n] for n in {c.model for c in multi}}, nproc, device_type=dev.type,
                             dtype=dt, preset=cfg_name, progress=say, threads_per_rank=threads)
        by_dict = {tuple(sorted(r["case"].items())): r for r in out["rows"]}
        for c in multi:
            r = by_dict[tuple(sorted(c.to_dict().items()))]
            measured[c] = r
        checks = [r["check_max_abs_err"] for r in out["rows"] if r["case"]["tp"] > 1]
        if checks:
            notes.append(f"TP output check: max |diff| vs the unsharded layer = {max(checks):.3g} "
                         f"(fp32, through the real all-reduce)")
        if dev.is_cpu and not threads:
            notes.append(f"CPU ranks ran with {out['threads_per_rank']} thread(s) each (the cores split across "
                         f"{nproc} ranks); the profile does not say how many threads its kernels used "
                         f"(identity.threads_per_device unset), so measured and predicted may describe different devices")
    if dev.is_cpu and threads:
        notes.append(f"every CPU case ran with {threads} thread(s), the profile's threads_per_device")

    def _measured_s(c: Case) -> tuple[float, str]:
        m = measured[c]
        return (m["measured_s"], m["method"]) if isinstance(m, dict) else (m.measured_s, m.method)

    def _stats_note(c: Case) -> tuple[Any, str]:
        m = measured[c]
        if isinstance(m, dict):
            return Stats.from_samples(m["samples_s"]), "; ".join(m["warnings"])
        return m.stats, "; ".join(m.warnings)

    every = [c for c in every if c in measured]
    if not every:
        raise RuntimeError("no validation case could be measured: " + "; ".join(notes))
    rank_sets = {ph: cs for ph, cs in rank_sets.items() if all(c in measured for c in cs)}
    comparisons = []
    for c in every:
        ms, method = _measured_s(c)
        stats, note = _stats_note(c)
        p = preds[c]
        comparisons.append(Comparison(case=c, measured_s=ms, predicted_s=p.total_s, method=method,
                                      breakdown=dict(getattr(p, "breakdown", {}) or {}), note=note, stats=stats))
    rankings = []
    for phase, cs in rank_sets.items():
        st = [_stats_note(c)[0] for c in cs]
        rankings.append(Ranking(phase=phase, labels=[layout_label(c.tp, c.dp) for c in cs],
                                measured_s=[_measured_s(c)[0] for c in cs], predicted_s=[preds[c].total_s for c in cs],
                                measured_q1_s=[x.q1_s for x in st], measured_q3_s=[x.q3_s for x in st]))

    if dev.is_cpu:
        notes += _cache_notes(dev, configs, dt, every)
    load = busy_note(cpu_start, time.perf_counter() - wall_start, "validation")
    if load:
        notes.append(load)
    run = ValidationRun(device=dev.spec, device_name=dev.name(), dtype=dt, comparisons=comparisons, rankings=rankings,
                        notes=notes)
    if results_dir is not None:
        from accelcal.kernels.environment import capture_environment

        from .compare import result_set

        paths = result_set(comparisons, capture_environment(dev), dt).write(results_dir, stem="validation")
        say(f"validate: raw results in {', '.join(str(p) for p in paths.values())}")
    # 4. Only now, with every case done, touch the profile.
    if write:
        from accelcal.kernels.environment import command_line

        write_validation(profile_path, comparisons, device=f"{dev.spec} ({dev.name()})", command=command_line())
        run.written = True
    run.wall_s = time.monotonic() - t0
    return run


def fallback_notes(preds: dict) -> list[str]:
    """One note per figure the planner fell back on (a case -> prediction map; each prediction's ``extrapolated``
    lines): GEMM shapes the sweep did not cover are one note per profile section listing the (N, K) shapes."""
    notes: list[str] = []
    fallbacks: dict[str, list[str]] = {}
    shapes: dict[str, dict[str, None]] = {}  # section -> unmeasured GEMM (N, K) shapes, in order seen
    for c, p in preds.items():
        for line in getattr(p, "extrapolated", []) or []:
            if "not measured" in line or "no attention measured" in line:
                # one note per section for GEMM shapes the sweep did not cover (not one per (N, K)), else per
                # missing figure; never by the M-dependent model text
                gemm = re.search(r"\(N=(\d+), K=(\d+)\) not measured", line)
                section = re.search(r"\((compute\.[\w.]+)\)\s*$", line)
                key = (f"GEMM shapes not measured ({section.group(1) if section else 'compute'})" if gemm
                       else line.split(": ", 1)[-1])
                if gemm:
                    shapes.setdefault(key, {})[f"N={gemm.group(1)} K={gemm.group(2)}"] = None
                fallbacks.setdefault(key, []).append(c.name)
    for what, names in fallbacks.items():
        names = list(dict.fromkeys(names))
        nk = list(shapes.get(what, {}))
        detail = f": {', '.join(nk[:6])}{f' (+{len(nk) - 6} more)' if len(nk) > 6 else ''}" if nk else ""
        notes.append(f"prediction fell back on an unmeasured figure in {len(names)} case(s) ({names[0]}, ...): "
                     f"{what}{detail}")
    return notes
