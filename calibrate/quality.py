"""Fit quality: relative errors, k-fold splits, bound checks and the flags a profile stores.

    from accelcal.calibrate.quality import rel_errors, build_quality, kfold_splits
    errs = rel_errors(predicted_s, measured_s)
    q = build_quality("all_reduce", errs, heldout_errs, range_=(1024.0, 2.0**26), converged=True,
                      flags=[], target="collective")

A fit that did not converge, sits on a bound, or misses its error target is
recorded in ``Quality.flags`` (never silently used): the query API marks its
answers ``fit-flagged`` and ``accelcal show`` prints the flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .profile import Quality

__all__ = ["ErrorTarget", "TARGETS", "rel_errors", "kfold_splits", "build_quality", "bound_flags", "check_series"]


@dataclass(frozen=True)
class ErrorTarget:
    """Held-out error a fit must reach to go unflagged."""

    heldout_median: float
    """Largest acceptable median |relative error| on held-out points."""
    heldout_p90: float | None = None
    """Largest acceptable 90th-percentile |relative error| on held-out points (None: not checked)."""


TARGETS: dict[str, ErrorTarget] = {
    "gemm": ErrorTarget(0.05, 0.15),  # issue 4
    "collective": ErrorTarget(0.10),  # issue 4: over the measured sizes
    "memory": ErrorTarget(0.10),  # same alpha-beta model as collectives
    "attention": ErrorTarget(0.10),
}
"""Error targets per kind of fit."""


def rel_errors(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> np.ndarray:
    """|predicted / measured - 1| element-wise."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    return np.abs(p / m - 1.0)


def kfold_splits(n: int, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs; leave-one-out when n <= k.  Seeded so profiles are reproducible."""
    idx = np.random.default_rng(seed).permutation(n)
    k = min(k, n)
    folds = np.array_split(idx, k)
    return [(np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i])), np.sort(folds[i])) for i in range(k)]


def check_series(op: str, sizes: Sequence[float], times_s: Sequence[float], min_points: int = 3,
                 size_name: str = "size_bytes") -> tuple[np.ndarray, np.ndarray]:
    """Validate one series before fitting: enough points, several sizes, finite positive times."""
    x = np.asarray(sizes, dtype=float)
    t = np.asarray(times_s, dtype=float)
    if x.shape != t.shape:
        raise ValueError(f"{op}: {x.size} sizes but {t.size} times")
    if x.size < min_points:
        raise ValueError(f"{op}: too few points to fit: got {x.size}, need at least {min_points}")
    bad_t = [float(v) for v in t if not np.isfinite(v) or v <= 0]
    if bad_t:
        raise ValueError(f"{op}: timings must be finite and > 0 s; got {bad_t[:5]} "
                         f"({len(bad_t)} of {t.size} bad: NaN, zero or negative median_s)")
    bad_x = [float(v) for v in x if not np.isfinite(v) or v < 0]
    if bad_x:
        raise ValueError(f"{op}: {size_name} must be finite and >= 0; got {bad_x[:5]}")
    distinct = np.unique(x)
    if distinct.size < 2:
        raise ValueError(f"{op}: all {x.size} points have the same {size_name} ({distinct[0]:g}); "
                         f"a latency + bytes/bandwidth fit needs at least 2 distinct sizes")
    return x, t


def bound_flags(names: Sequence[str], values: Sequence[float], lower: Sequence[float], upper: Sequence[float],
                active_mask: Iterable[int] | None = None, rtol: float = 1e-6) -> list[str]:
    """One flag per parameter that sits on (or within rtol of) a bound."""
    out = []
    mask = list(active_mask) if active_mask is not None else [0] * len(names)
    for name, v, lo, hi, a in zip(names, values, lower, upper, mask):
        if a < 0 or abs(v - lo) <= rtol * max(abs(lo), 1e-300):
            out.append(f"{name} at lower bound {lo:g}")
        elif a > 0 or abs(v - hi) <= rtol * abs(hi):
            out.append(f"{name} at upper bound {hi:g}")
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _over(x: float, limit: float) -> str:
    """``x > limit`` as percentages with the digits that tell them apart (10.04% > 10%, not 10.0% > 10.0%)."""
    digits = 1
    while digits < 4 and f"{100 * x:.{digits}f}" == f"{100 * limit:.{digits}f}":
        digits += 1
    return f"{100 * x:.{digits}f}% > {100 * limit:.{digits}f}%"


def build_quality(what: str, errs: np.ndarray, heldout: np.ndarray, range_: tuple[float, float], converged: bool,
                  flags: Sequence[str], target: str) -> Quality:
    """Summarise in-sample and held-out errors; append flags for a missed target or non-convergence."""
    errs = np.asarray(errs, dtype=float)
    heldout = np.asarray(heldout, dtype=float)
    flags = list(flags)
    if heldout.size == 0:
        # Cannot happen with >= 2 points, but keep a number the loader accepts and say why.
        heldout = errs
        flags.append("no held-out points: held-out error equals in-sample error")
    med_h = float(np.median(heldout))
    p90_h = float(np.percentile(heldout, 90))
    t = TARGETS[target]
    if med_h > t.heldout_median:
        flags.append(f"target missed: held-out median |rel err| {_over(med_h, t.heldout_median)}")
    if t.heldout_p90 is not None and p90_h > t.heldout_p90:
        flags.append(f"target missed: held-out p90 |rel err| {_over(p90_h, t.heldout_p90)}")
    if not converged:
        flags.append("optimiser did not converge")
    return Quality(
        points=int(errs.size),
        median_rel_err=float(np.median(errs)),
        max_rel_err=float(np.max(errs)),
        heldout_median_rel_err=med_h,
        heldout_p90_rel_err=p90_h,
        range_min=float(range_[0]),
        range_max=float(range_[1]),
        converged=bool(converged),
        flags=[f"{what}: {f}" for f in flags],
    )
