"""Measured vs predicted layer time per case, summary errors, and the profile's validation section.

    from accelcal.validate.compare import Comparison, summarize, format_table, write_validation
    from accelcal.validate.configs import Case
    case = Case("tiny", "decode", 8, 1, 512)
    rows = [Comparison(case, measured_s=1.2e-3, predicted_s=1.1e-3, method="host-queue")]
    print(format_table(rows))
    med, worst = summarize(rows)             # median and max |predicted / measured - 1|
    write_validation("profiles/node.yaml", rows, device="cpu")   # Profile.load -> with_validation -> save

Predictions come from the planner (``accelcal.planner.predict.predict_layer_time_s``)
for the same layer, shape, dtype and layout; nothing here adjusts them.  The
relative error is ``predicted / measured - 1`` (positive: the planner is
pessimistic).  Imports no torch.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import statistics
from dataclasses import dataclass, field
from typing import Any

from .configs import Case

__all__ = ["VALIDATION_IMPLEMENTATION", "Comparison", "format_table", "result_set", "predict_case", "summarize", "to_validation", "validation_dtype",
           "write_validation"]

PREFERRED_DTYPE = {"cpu": "fp32", "gpu": "bf16"}
"""dtype a validation layer runs in when the profile has compute data for it."""

RUNNABLE_DTYPES = ("fp32", "bf16", "fp16")
"""dtypes validate.measure can build layers in."""


@dataclass(frozen=True)
class Comparison:
    """One case: what the layer took and what the planner said it would take."""

    case: Case
    """The measured case."""
    measured_s: float
    """Measured median seconds per layer forward."""
    predicted_s: float
    """Planner's prediction for the same case, in seconds."""
    method: str
    """How the measurement was taken (graph, host-queue, ranks-host-queue, ...)."""
    breakdown: dict[str, float] = field(default_factory=dict)
    """Planner's split of ``predicted_s`` (compute, memory, communication, launch), seconds."""
    note: str = ""
    """Noise or extrapolation notes."""
    stats: Any = field(default=None, repr=False, compare=False)
    """The measurement's :class:`accelcal.kernels.timing.Stats` (every sample), when kept."""

    @property
    def rel_err(self) -> float:
        """predicted / measured - 1."""
        return self.predicted_s / self.measured_s - 1.0


def validation_dtype(profile: Any, device_type: str, requested: str | None = None) -> str:
    """The dtype to validate in: ``requested``, else fp32 on CPUs / bf16 on GPUs, else one the profile has."""
    have = [d for d in profile.dtypes() if d in RUNNABLE_DTYPES]
    if requested:
        if requested not in have:
            raise ValueError(f"--dtype {requested}: the profile has compute data for {profile.dtypes()}, "
                             f"validate can run {list(RUNNABLE_DTYPES)}; pick one in both")
        return requested
    pref = PREFERRED_DTYPE["cpu" if device_type == "cpu" else "gpu"]
    if pref in have:
        return pref
    if not have:
        raise ValueError(f"the profile has compute data only for {profile.dtypes()}; validate needs one of {list(RUNNABLE_DTYPES)}")
    return have[0]


def prediction_model(model: Any, dtype: str) -> Any:
    """The model config with weights and KV cache in the validation dtype (what really runs)."""
    return dataclasses.replace(model, weight_dtype=dtype, kv_dtype=dtype)


VALIDATION_IMPLEMENTATION = "torch-eager"
"""Kernel-count preset of the layers validate runs (validate/layers.py is plain PyTorch eager)."""


def predict_case(profile: Any, model: Any, case: Case, implementation: str = VALIDATION_IMPLEMENTATION) -> Any:
    """The planner's :class:`LayerPrediction` for one replica of ``case``, costed as ``implementation``."""
    from accelcal.planner.predict import predict_layer_time_s

    return predict_layer_time_s(profile, model, case.phase, case.replica_batch, case.q_len, case.kv_len,
                                tp=case.tp, cuda_graphs=case.graphs, implementation=implementation)


def summarize(rows: list[Comparison]) -> tuple[float, float]:
    """(median, max) of |rel_err| over ``rows``."""
    if not rows:
        raise ValueError("no validation cases to summarise")
    errs = [abs(r.rel_err) for r in rows]
    return statistics.median(errs), max(errs)


def format_table(rows: list[Comparison]) -> str:
    """A fixed-width table, one line per case, times in ms, plus the summary line."""
    head = f"{'case':<44} {'measured_ms':>11} {'predicted_ms':>12} {'rel_err':>8}  {'method':<16} biggest predicted part"
    lines = [head, "-" * len(head)]
    for r in rows:
        part = ""
        if r.breakdown:
            k, v = max(r.breakdown.items(), key=lambda kv: kv[1])
            part = f"{k} {v * 1e3:.3f} ms"
        lines.append(f"{r.case.name:<44} {r.measured_s * 1e3:>11.4f} {r.predicted_s * 1e3:>12.4f} {r.rel_err:>+8.1%}  "
                     f"{r.method:<16} {part}")
    med, worst = summarize(rows)
    lines.append(f"median |rel err| = {med:.1%}, max |rel err| = {worst:.1%} over {len(rows)} cases")
    return "\n".join(lines)


def to_validation(rows: list[Comparison], device: str, date: str | None = None, command: str = "") -> Any:
    """The profile's ``validation`` section for ``rows``; ``command``: the one that ran them (its provenance)."""
    from accelcal.calibrate.profile import Validation, ValidationCase

    med, worst = summarize(rows)
    date = date or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    cases = [ValidationCase(name=r.case.name, phase=r.case.phase, measured_s=float(r.measured_s),
                            predicted_s=float(r.predicted_s), rel_err=float(r.rel_err)) for r in rows]
    return Validation(date=date, device=device, median_abs_rel_err=float(med), max_abs_rel_err=float(worst), cases=cases,
                      command=command)


def write_validation(profile_path: Any, rows: list[Comparison], device: str, command: str = "") -> Any:
    """Re-read the profile, set its validation section, save atomically; returns the saved Profile.

    Re-reading (rather than saving the copy loaded at the start) keeps any
    change made to the file while the validation ran.
    """
    from accelcal.calibrate.profile import Profile

    profile = Profile.load(profile_path).with_validation(to_validation(rows, device, command=command))
    profile.save(profile_path)
    return profile


def result_set(rows: list[Comparison], env: dict[str, Any], dtype: str) -> Any:
    """The comparisons as long-format records (suite ``validation``, op ``layer``), samples included."""
    from accelcal.results import ResultSet

    rs = ResultSet(suite="validation", env=env)
    for r in rows:
        c = r.case
        params = {"model": c.model, "phase": c.phase, "batch": c.batch, "q_len": c.q_len, "kv_len": c.kv_len,
                  "tp": c.tp, "dp": c.dp, "graphs": c.graphs, "predicted_s": r.predicted_s, "rel_err": r.rel_err}
        if r.stats is None:
            rs.add_skip(op="layer", case=c.name, params=params, dtype=dtype, reason="no samples kept", status="failed")
            continue
        rs.add_stats(op="layer", case=c.name, params=params, dtype=dtype, figure="device", method=r.method,
                     stats=r.stats, note=r.note)
    return rs
