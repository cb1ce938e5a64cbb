"""GEMM time(M, N, K) per dtype: roofline with a measured efficiency correction.

    from accelcal.calibrate.fit_gemm import fit_gemm
    entry = fit_gemm("bf16", points)            # points: [(m, n, k, median_s), ...]
    entry.peak_flop_per_s, entry.quality.heldout_median_rel_err

Model (shared with the query API, :func:`accelcal.calibrate.profile.gemm_model_time_s`):
time = overhead + max(FLOP' / peak, bytes / bandwidth), where FLOP' counts whole
waves of 128x128 tiles when ``wave_units`` (SM/CU count) is known.  That
captures the memory-bound small-M regime (bytes term), the compute-bound regime
(FLOP term) and the wave-quantisation steps.  The three parameters are fitted by
``scipy.optimize.least_squares`` on relative residuals with a soft_l1 loss and
physical bounds.  Queries then multiply the model by the measured
measured/model ratio, interpolated between measured shapes in log space
(efficiency space) and held constant outside them.  Held-out error is leave-one-out
(10-fold above 100 shapes): each fold refits the parameters without its points and predicts them with the
same interpolation the query API uses.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares

from accelcal.vocab import DTYPE_BYTES, gemm_element_bytes, gemm_flop, gemm_traffic_bytes

from .profile import (MAX_BANDWIDTH_BYTES_PER_S, MAX_FLOP_PER_S, ComputeEntry, gemm_estimate_s,
                      gemm_flop, gemm_model_time_s)
from .quality import bound_flags, build_quality, kfold_splits, rel_errors

__all__ = ["fit_gemm", "fit_roofline", "MIN_GEMM_POINTS"]

MIN_GEMM_POINTS = 4
"""Fewest measured shapes for a GEMM fit (three parameters plus one to hold out)."""

_MIN_PEAK = 1e6
_MIN_BW = 1e6
_SOFT_L1_SCALE = 0.05


def _check(dtype: str, points: Sequence[Sequence[float]]) -> np.ndarray:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"gemm: unknown dtype {dtype!r}; known {sorted(DTYPE_BYTES)}")
    arr = np.asarray(points, dtype=float).reshape(-1, 4) if len(points) else np.zeros((0, 4))
    if arr.shape[0] < MIN_GEMM_POINTS:
        raise ValueError(f"gemm {dtype}: too few measured shapes to fit: got {arr.shape[0]}, need at least {MIN_GEMM_POINTS}")
    bad = arr[~np.isfinite(arr[:, 3]) | (arr[:, 3] <= 0)]
    if bad.size:
        raise ValueError(f"gemm {dtype}: median_s must be finite and > 0; bad rows (m, n, k, time_s): {bad[:3].tolist()}")
    if (~np.isfinite(arr[:, :3]) | (arr[:, :3] < 1)).any():
        raise ValueError(f"gemm {dtype}: m, n, k must be integers >= 1")
    flop = 2 * arr[:, 0] * arr[:, 1] * arr[:, 2]
    if np.unique(flop).size < 2:
        raise ValueError(f"gemm {dtype}: all {arr.shape[0]} points have the same FLOP count ({flop[0]:g}); "
                         f"need shapes of different sizes")
    return arr


def fit_roofline(points: np.ndarray, el: tuple[int, int], wave_units: int | None = None
                 ) -> tuple[float, float, float, bool, list[str]]:
    """(peak_flop_per_s, bandwidth_bytes_per_s, overhead_s, converged, bound flags); ``el`` is
    (input, output) element bytes (accelcal.vocab.gemm_element_bytes)."""
    m, n, k, t = points.T
    flop = gemm_flop(m, n, k)
    nbytes = gemm_traffic_bytes(m, n, k, *el)
    tmin = float(t.min())
    # Start from the best rates seen: every point then sits at or above the roofline.
    peak0 = float(np.clip((flop / t).max(), _MIN_PEAK * 2, MAX_FLOP_PER_S / 2))
    bw0 = float(np.clip((nbytes / t).max(), _MIN_BW * 2, MAX_BANDWIDTH_BYTES_PER_S / 2))
    lo = np.array([math.log(_MIN_PEAK), math.log(_MIN_BW), 0.0])
    hi = np.array([math.log(MAX_FLOP_PER_S), math.log(MAX_BANDWIDTH_BYTES_PER_S), 1.0])
    x0 = np.array([math.log(peak0), math.log(bw0), 0.1])

    def model(z: np.ndarray) -> np.ndarray:
        peak, bw, ov = math.exp(z[0]), math.exp(z[1]), z[2] * tmin
        return np.array([gemm_model_time_s(a, b, c, el[0], peak, bw, ov, wave_units, el[1]) for a, b, c in zip(m, n, k)])

    res = least_squares(lambda z: model(z) / t - 1.0, x0, bounds=(lo, hi), loss="soft_l1", f_scale=_SOFT_L1_SCALE,
                        method="trf", x_scale=np.array([1.0, 1.0, 0.1]))
    peak, bw, ov = math.exp(res.x[0]), math.exp(res.x[1]), float(res.x[2] * tmin)
    flags = bound_flags(["peak_flop_per_s", "memory_bandwidth_bytes_per_s", "overhead_s"],
                        [peak, bw, ov], [_MIN_PEAK, _MIN_BW, 0.0], [MAX_FLOP_PER_S, MAX_BANDWIDTH_BYTES_PER_S, tmin],
                        res.active_mask)
    return peak, bw, ov, bool(res.success), flags


def _entry(arr: np.ndarray, el: tuple[int, int], wave_units: int | None) -> tuple[ComputeEntry, bool, list[str]]:
    peak, bw, ov, ok, flags = fit_roofline(arr, el, wave_units)
    e = ComputeEntry(peak_flop_per_s=peak, memory_bandwidth_bytes_per_s=bw, overhead_s=ov,
                     points=[[float(v) for v in row] for row in arr], wave_units=wave_units)
    return e, ok, flags


def _predict(e: ComputeEntry, el: tuple[int, int], queries: np.ndarray) -> np.ndarray:
    model = lambda a, b, c: e.model_time_s(a, b, c, *el)  # noqa: E731
    return np.array([gemm_estimate_s(model, e.points, a, b, c)[0] for a, b, c in queries[:, :3]])


def _heldout(arr: np.ndarray, el: tuple[int, int], wave_units: int | None, k: int) -> np.ndarray:
    errs = []
    for train, test in kfold_splits(arr.shape[0], k):
        e, _, _ = _entry(arr[train], el, wave_units)
        errs.append(rel_errors(_predict(e, el, arr[test]), arr[test, 3]))
    return np.concatenate(errs)


LOO_MAX_POINTS = 100
"""Up to this many shapes the held-out error is leave-one-out (the query use case: one unmeasured shape); 10-fold above."""


def fit_gemm(dtype: str, points: Sequence[Sequence[float]], wave_units: int | None = None,
             k: int | None = None) -> ComputeEntry:
    """Fit one dtype from measured ``(m, n, k, median_s)``; with ``wave_units`` also try the wave-quantised
    model and keep whichever predicts held-out shapes better.  ``k`` folds (default: see LOO_MAX_POINTS)."""
    arr = _check(dtype, points)
    if k is None:
        k = arr.shape[0] if arr.shape[0] <= LOO_MAX_POINTS else 10
    el = gemm_element_bytes(dtype)
    candidates = [None] + ([int(wave_units)] if wave_units else [])
    best = None
    for w in candidates:
        held = _heldout(arr, el, w, k)
        if best is None or np.median(held) < np.median(best[1]):
            best = (w, held)
    w, held = best
    e, ok, flags = _entry(arr, el, w)
    # The efficiency-corrected model reproduces its own points exactly, so the in-sample error stored is
    # the parametric roofline's: `show` then says how much the correction does; held-out error is the honest one.
    param_errs = rel_errors([e.model_time_s(a, b, c, *el) for a, b, c in arr[:, :3]], arr[:, 3])
    flop = [gemm_flop(a, b, c) for a, b, c in arr[:, :3]]
    e.quality = build_quality(f"gemm {dtype}", param_errs, held,
                              (float(min(flop)), float(max(flop))), ok, flags, "gemm")
    return e
