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

__all__ = ["fit_gemm", "fit_roofline", "fit_gemm_model", "family_heldout_errors", "families", "family_folds",
           "interpolated_fit", "gemm_candidates", "nested_selection", "MIN_GEMM_POINTS", "FAMILY_LOO_MAX"]

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
             k: int | None = None, shape_model: bool = True) -> ComputeEntry:
    """Fit one dtype from measured ``(m, n, k, median_s)``; with ``wave_units`` also try the wave-quantised
    model and keep whichever predicts held-out shapes better.  ``k`` folds (default: see LOO_MAX_POINTS).

    With ``shape_model`` (default) and >= 2 (N, K) families, the shape model (:class:`GemmModel`) and the
    efficiency-interpolated roofline (with and, given ``wave_units``, without the wave term) are judged by
    family-held-out error (every (N, K) left out in turn, or 10 groups of families above
    :data:`FAMILY_LOO_MAX`; score = median + p90, :func:`gemm_candidates`); the entry carries the shape model
    (the query then uses it) only where it wins.  Its quality holds the held-out errors of the selection
    itself (:func:`nested_selection`: each family predicted by the candidate the other families chose)."""
    arr = _check(dtype, points)
    if shape_model and len(families(arr)) >= 2:
        return _fit_with_shape_model(dtype, arr, wave_units)
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


# ----------------------------------------------------------------------------- the shape model (gemm_model.py)

GPU_TILES_M = (16, 32, 64, 128)
GPU_TILES_N = (64, 128, 256)
GPU_SPLIT_K_MIN = (256, 1024, 4096)
GEMV_MAX_M = (0, 1)
"""Integer terms of the shape model searched on a grid (tile edges and split-K slices that GPU GEMM libraries
use); with one unit (a one-thread CPU device) tiles and split-K change nothing, so only the GEMV path is searched."""

_MAX_SHARPNESS = 40.0
_SCREEN_NFEV = 8
_REFINE_TOP = 3
_MAX_OUT_S_PER_ELEMENT = 1e-6


def _shape_grid(units: int) -> list[tuple[int, int, int | None, int]]:
    if units <= 1:
        return [(1, 1, None, g) for g in GEMV_MAX_M]
    return [(tm, tn, s, g) for tm in GPU_TILES_M for tn in GPU_TILES_N for s in GPU_SPLIT_K_MIN for g in GEMV_MAX_M]


def _fit_shape_fixed(arr: np.ndarray, elsize: int, units: int, tm: int, tn: int, split: int | None, gemv: int,
                     max_nfev: int | None = None):
    from .gemm_model import GemmModel

    m, n, k, t = arr.T
    tmin = float(t.min())
    nbytes = (m * k + k * n + m * n) * elsize
    peak0 = float(np.clip((2 * m * n * k / t).max(), _MIN_PEAK * 2, MAX_FLOP_PER_S / 2))
    bw0 = float(np.clip((nbytes / t).max(), _MIN_BW * 2, MAX_BANDWIDTH_BYTES_PER_S / 2))
    out_scale = tmin / float((m * n).max())
    col_scale = float((t / n).min())
    # column_s x N can be no more than any measured call's whole time.  Only CPU devices (one unit) fit it: GPU
    # GEMM kernels do not repack the weights per call, and their per-tile costs are the wave term's (so their
    # fit has five parameters, as before the term existed).
    cols = units <= 1

    def build(z: np.ndarray) -> "GemmModel":
        return GemmModel(peak_flop_per_s=math.exp(z[0]), memory_bandwidth_bytes_per_s=math.exp(z[1]),
                         overhead_s=float(z[2] * tmin), element_bytes=elsize, wave_units=units, tile_m=tm, tile_n=tn,
                         split_k_min=split, gemv_max_m=gemv, sharpness=float(z[3]),
                         output_s_per_element=float(z[4] * out_scale), column_s=float(z[5] * col_scale) if cols else 0.0)

    lo = np.array([math.log(_MIN_PEAK), math.log(_MIN_BW), 0.0, 1.0, 0.0] + [0.0] * cols)
    hi = np.array([math.log(MAX_FLOP_PER_S), math.log(MAX_BANDWIDTH_BYTES_PER_S), 1.0, _MAX_SHARPNESS,
                   max(1e-9, _MAX_OUT_S_PER_ELEMENT / out_scale)] + [1.0] * cols)
    x0 = np.array([math.log(peak0), math.log(bw0), 0.2, 3.0, 0.0] + [0.0] * cols)
    res = least_squares(lambda z: build(z).times_s(m, n, k) / t - 1.0, x0, bounds=(lo, hi), loss="soft_l1",
                        f_scale=_SOFT_L1_SCALE, method="trf", x_scale=np.array([1.0, 1.0, 0.1, 1.0, 0.1] + [0.1] * cols),
                        max_nfev=max_nfev)
    return build(res.x), float(res.cost), bool(res.success), res


def fit_gemm_model(dtype: str, points: Sequence[Sequence[float]], wave_units: int | None = None,
                   grid: Sequence[tuple[int, int, int | None, int]] | None = None):
    """Fit :class:`~accelcal.calibrate.gemm_model.GemmModel` to measured ``(m, n, k, median_s)`` of one dtype.

    Continuous parameters (peak, bandwidth, overhead, sharpness, per-output cost) by ``least_squares`` on
    relative residuals with a soft-L1 loss inside physical bounds; the integer terms (tile edges, split-K
    slice, GEMV path) by the lowest robust cost over a small grid (``grid``: (tile_m, tile_n, split_k_min,
    gemv_max_m) tuples, default :func:`_shape_grid`).  Returns (model, converged, bound flags).
    """
    arr = _check(dtype, points)
    units = int(wave_units) if wave_units else 1
    elsize = DTYPE_BYTES[dtype]
    # Screen every integer combination with a short fit, then fit the most promising ones to convergence.
    screened = sorted(list(grid) if grid is not None else _shape_grid(units), key=lambda c: _fit_shape_fixed(arr, elsize, units, *c, max_nfev=_SCREEN_NFEV)[1])
    model, _, ok, res = min((_fit_shape_fixed(arr, elsize, units, *c) for c in screened[:_REFINE_TOP]), key=lambda f: f[1])
    names = ["log peak_flop_per_s", "log memory_bandwidth_bytes_per_s", "overhead_s / min time", "sharpness",
             "output_s_per_element"]
    flags = bound_flags(names[:3], res.x[:3], [math.log(_MIN_PEAK), math.log(_MIN_BW), 0.0],
                        [math.log(MAX_FLOP_PER_S), math.log(MAX_BANDWIDTH_BYTES_PER_S), 1.0], res.active_mask[:3])
    return model, ok, flags


def families(points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """The (N, K) weight shapes (families: every M of one projection) present in ``points``."""
    return sorted({(float(p[1]), float(p[2])) for p in points})


FAMILY_LOO_MAX = 12
"""Up to this many (N, K) families calibrate leaves each out in turn; above, 10 seeded groups of families (each
family is still predicted by a fit that never saw it; ``benchmarks/fit_accuracy.py`` leaves one out at a time)."""


def family_folds(points: Sequence[Sequence[float]], folds: int | None = None, seed: int = 0) -> np.ndarray:
    """Fold id of every point: its (N, K) family's index (``folds`` None: one family per fold), or one of
    ``folds`` seeded groups of whole families."""
    arr = np.asarray(points, dtype=float)
    fams = families(arr)
    index = {f: i for i, f in enumerate(fams)}
    fam_of = np.array([index[(float(p[1]), float(p[2]))] for p in arr])
    if folds is None or folds >= len(fams):
        return fam_of
    group = np.empty(len(fams), dtype=int)
    for g, members in enumerate(np.array_split(np.random.default_rng(seed).permutation(len(fams)), folds)):
        group[members] = g
    return group[fam_of]


def family_heldout_errors(dtype: str, points: Sequence[Sequence[float]], wave_units: int | None = None,
                          fit=None, folds: int | None = None) -> np.ndarray:
    """|rel err| of every point when its whole (N, K) family is left out of the fit and predicted from the rest.

    This is the question a planner asks (a TP-divided projection the sweep never measured); leave-one-out keeps
    a point's neighbours on the same line in the training set and so flatters a model that only interpolates M.
    ``fit(dtype, train_points, wave_units) -> model with times_s`` defaults to :func:`fit_gemm_model`.
    ``folds``: None leaves one family out at a time; a number leaves out that many seeded groups of families
    in turn (:func:`family_folds`).
    """
    arr = _check(dtype, points)
    fams = families(arr)
    if len(fams) < 2:
        raise ValueError(f"gemm {dtype}: family-held-out error needs >= 2 (N, K) families, got {fams}")
    fit = fit or (lambda d, pts, w: fit_gemm_model(d, pts, w)[0])
    fold = family_folds(arr, folds)
    errs = np.empty(arr.shape[0])
    for f in np.unique(fold):
        test = fold == f
        train = arr[~test]
        if train.shape[0] < MIN_GEMM_POINTS or np.unique(2 * train[:, 0] * train[:, 1] * train[:, 2]).size < 2:
            errs[test] = np.nan
            continue
        model = fit(dtype, train.tolist(), wave_units)
        errs[test] = rel_errors(model.times_s(arr[test, 0], arr[test, 1], arr[test, 2]), arr[test, 3])
    return errs


def interpolated_fit(el: tuple[int, int], wave_units: int | None):
    """``fit(dtype, points, w)`` for :func:`family_heldout_errors` giving the efficiency-interpolated roofline query."""
    def fit(dtype: str, train: Sequence[Sequence[float]], w: int | None):
        e, _, _ = _entry(np.asarray(train, dtype=float), el, wave_units)
        return type("Interpolated", (), {"times_s": staticmethod(
            lambda m, n, k: _predict(e, el, np.column_stack([np.ravel(m), np.ravel(n), np.ravel(k)])))})
    return fit


def _score(errs: np.ndarray) -> float:
    errs = errs[np.isfinite(errs)]
    return float(np.median(errs) + np.percentile(errs, 90)) if errs.size else math.inf


def gemm_candidates(dtype: str, wave_units: int | None) -> dict[str, object]:
    """The GEMM queries a profile may carry, as ``fit`` functions for :func:`family_heldout_errors`: the shape
    model (calibrate/gemm_model.py) and the efficiency-interpolated roofline with and without the 128x128
    wave term (the roofline the query corrects between measured shapes)."""
    el = gemm_element_bytes(dtype)
    w = int(wave_units) if wave_units else None
    out: dict[str, object] = {"shape model": lambda d, pts, u: fit_gemm_model(d, pts, u)[0],
                              "interpolated": interpolated_fit(el, None)}
    if w:
        out["interpolated, waves"] = interpolated_fit(el, w)
    return out


def nested_selection(errs: dict[str, np.ndarray], fold: np.ndarray) -> tuple[str, np.ndarray, list[str]]:
    """(candidate kept on all data, held-out errors of the selection itself, candidate chosen per fold).

    Kept: the lowest family-held-out median + p90 over every fold.  The selection is judged out of sample as
    well: each fold's points take the errors of the candidate that scores best on the *other* folds' held-out
    errors, so choosing among candidates never looks at the family being predicted."""
    names = list(errs)
    kept = min(names, key=lambda c: _score(errs[c]))
    out = np.full(fold.shape, np.nan)
    chosen = []
    for f in np.unique(fold):
        test = fold == f
        c = min(names, key=lambda c: _score(errs[c][~test]))
        chosen.append(c)
        out[test] = errs[c][test]
    return kept, out, chosen


def _fit_with_shape_model(dtype: str, arr: np.ndarray, wave_units: int | None) -> ComputeEntry:
    el = gemm_element_bytes(dtype)
    w = int(wave_units) if wave_units else None
    folds = None if len(families(arr)) <= FAMILY_LOO_MAX else 10
    cands = gemm_candidates(dtype, w)
    errs = {c: family_heldout_errors(dtype, arr.tolist(), wave_units, fit=f, folds=folds) for c, f in cands.items()}
    kept, held, _ = nested_selection(errs, family_folds(arr, folds))
    held = held[np.isfinite(held)]
    flop = [gemm_flop(a, b, c) for a, b, c in arr[:, :3]]
    rng = (float(min(flop)), float(max(flop)))
    if kept == "shape model":
        # The query uses the shape model; the roofline fields that readers show and export (peak, operand
        # bandwidth, overhead) are the shape model's own, so the profile states one fitted roof per dtype
        # rather than a second fit of a model the selection did not keep.
        model, ok, flags = fit_gemm_model(dtype, arr.tolist(), wave_units)
        e = ComputeEntry(peak_flop_per_s=model.peak_flop_per_s,
                         memory_bandwidth_bytes_per_s=model.memory_bandwidth_bytes_per_s, overhead_s=model.overhead_s,
                         points=[[float(v) for v in row] for row in arr], wave_units=None, gemm_model=model)
        errs_in = rel_errors(model.times_s(arr[:, 0], arr[:, 1], arr[:, 2]), arr[:, 3])
        e.quality = build_quality(f"gemm {dtype}", errs_in, held, rng, ok, flags, "gemm")
        return e
    # Kept by family-held-out error (median + p90): on this data the efficiency-interpolated roofline predicts
    # unseen (N, K) families better than the shape model.  The stored held-out error is the nested one above.
    e, ok, flags = _entry(arr, el, w if kept == "interpolated, waves" else None)
    errs_in = rel_errors([e.model_time_s(a, b, c, *el) for a, b, c in arr[:, :3]], arr[:, 3])
    e.quality = build_quality(f"gemm {dtype}", errs_in, held, rng, ok, flags, "gemm")
    return e
