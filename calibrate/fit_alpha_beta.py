"""Latency + bytes/bandwidth (alpha-beta) fits, piecewise where a protocol switches.

    from accelcal.calibrate.fit_alpha_beta import fit_piecewise
    fit = fit_piecewise("all_reduce", sizes_bytes, times_s, max_pieces=3)
    print(fit.pieces, fit.quality.heldout_median_rel_err)
    fit.predict_s(1 << 20)

time(S) = latency_s + S / bandwidth_bytes_per_s within each size range.  The
number of pieces (1..max_pieces) is chosen by k-fold held-out error, not by
eye: a split must cut the held-out median error to <= 80% of the simpler
model's (and by at least half a percentage point) to be kept.  Breakpoints are
searched with a fast non-negative linear solve on relative residuals; each
final piece is refitted with ``scipy.optimize.least_squares`` (relative
residuals, soft_l1 loss, latency >= 0, 0 < bandwidth <= 1e14 B/s).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares, nnls

from .profile import MAX_BANDWIDTH_BYTES_PER_S, MAX_TIME_S, CollectivePiece, Quality
from .quality import bound_flags, build_quality, check_series, kfold_splits, rel_errors

__all__ = ["AlphaBetaFit", "fit_alpha_beta", "fit_piecewise", "MIN_SIZES_PER_PIECE"]

MIN_SIZES_PER_PIECE = 3
"""Distinct sizes a piece needs; fewer and latency and bandwidth are not separately determined."""

_SPLIT_GAIN = 0.8  # a split must reach <= 80% of the simpler model's held-out median error
_SPLIT_MIN_ABS = 0.005  # ... and improve it by at least 0.5 percentage points
_SOFT_L1_SCALE = 0.03  # residuals beyond ~5% count linearly: outliers do not drag the fit


@dataclass
class AlphaBetaFit:
    """A fitted piecewise alpha-beta model of one series."""

    op: str
    """What was fitted (for messages)."""
    pieces: list[CollectivePiece]
    """Ascending size ranges; the last has max_bytes None."""
    quality: Quality
    """Points, in-sample and held-out errors, measured range, flags."""
    converged: bool = True
    """Every piece's optimiser converged."""
    flags: list[str] = field(default_factory=list)
    """Same flags as quality.flags."""

    def predict_s(self, nbytes: float | np.ndarray) -> np.ndarray:
        return _predict(self.pieces, np.asarray(nbytes, dtype=float))


def _predict(pieces: Sequence[CollectivePiece], x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x, dtype=float)
    for i, xv in np.ndenumerate(x):
        p = next((p for p in pieces if p.max_bytes is None or xv <= p.max_bytes), pieces[-1])
        out[i] = (p.latency_s or 0.0) + xv / p.bandwidth_bytes_per_s
    return out


def _linear(x: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(latency, 1/bandwidth, sum |rel err|): non-negative least squares on relative residuals, reweighted
    twice with soft_l1 weights so an outlier cannot move a breakpoint (fast enough to try every split)."""
    a = np.stack([1.0 / t, x / t], axis=1)
    scale = np.maximum(a.max(axis=0), 1e-300)
    w = np.ones_like(t)
    for _ in range(3):
        sol, _ = nnls(a / scale * w[:, None], w)
        lat, inv = sol / scale
        r = (lat + x * inv) / t - 1.0
        w = (1.0 + (r / _SOFT_L1_SCALE) ** 2) ** -0.25  # sqrt of the soft_l1 IRLS weight
    if inv <= 0:
        inv = 1.0 / MAX_BANDWIDTH_BYTES_PER_S
    return float(lat), float(inv), float(np.abs((lat + x * inv) / t - 1).sum())


def fit_alpha_beta(op: str, x: np.ndarray, t: np.ndarray) -> tuple[float, float, bool, list[str]]:
    """One piece: (latency_s, bandwidth_bytes_per_s, converged, bound flags) by robust least squares."""
    lat0, inv0, _ = _linear(x, t)
    tmin = float(t.min())
    lo = np.array([0.0, 1.0 / MAX_BANDWIDTH_BYTES_PER_S])
    hi = np.array([MAX_TIME_S, 1.0])  # 1/bandwidth <= 1 s/B: bandwidth >= 1 B/s
    # Scale both parameters to order one around the data so the optimiser's steps are balanced.
    s = np.array([max(tmin, 1e-12), max(float(np.median(t / np.maximum(x, 1.0))), 1e-18)])
    x0 = np.clip(np.array([lat0, inv0]), lo + 1e-30, hi) / s

    def resid(z: np.ndarray) -> np.ndarray:
        lat, inv = z * s
        return (lat + x * inv) / t - 1.0

    res = least_squares(resid, x0, bounds=(lo / s, hi / s), loss="soft_l1", f_scale=_SOFT_L1_SCALE, method="trf")
    lat, inv = res.x * s
    # Bounds are on 1/bandwidth; report them in the profile's terms.
    names = ["latency_s", "bandwidth_bytes_per_s"]
    raw = bound_flags(["latency_s", "inv_bw"], [lat, inv], lo, hi, res.active_mask)
    flags = [f for f in raw if f.startswith("latency_s")]
    if any(f.startswith("inv_bw at lower") for f in raw):
        flags.append(f"{names[1]} at upper bound {MAX_BANDWIDTH_BYTES_PER_S:g}")
    if any(f.startswith("inv_bw at upper") for f in raw):
        flags.append(f"{names[1]} at lower bound 1")
    return float(lat), float(1.0 / inv), bool(res.success), flags


def _segments(u: np.ndarray, npieces: int) -> list[list[float]]:
    """All ways to cut the sorted distinct sizes ``u`` into ``npieces`` runs of >= MIN_SIZES_PER_PIECE."""
    cuts_range = range(MIN_SIZES_PER_PIECE, len(u) - MIN_SIZES_PER_PIECE + 1)
    out = []
    for cuts in itertools.combinations(cuts_range, npieces - 1):
        if all(b - a >= MIN_SIZES_PER_PIECE for a, b in zip((0,) + cuts, cuts + (len(u),))):
            # Boundary between the last size of one run and the first of the next (geometric middle).
            out.append([math.sqrt(u[c - 1] * u[c]) if u[c - 1] > 0 else (u[c - 1] + u[c]) / 2 for c in cuts])
    return out


def _best_bounds(x: np.ndarray, t: np.ndarray, npieces: int) -> list[float] | None:
    u = np.unique(x)
    best, best_err = None, math.inf
    seg_err: dict[tuple[float, float], float] = {}  # a size range recurs in many cut combinations: solve it once
    for bounds in _segments(u, npieces):
        edges = [-math.inf] + bounds + [math.inf]
        err = 0.0
        for lo, hi in zip(edges[:-1], edges[1:]):
            if (lo, hi) not in seg_err:
                sel = (x > lo) & (x <= hi)
                seg_err[(lo, hi)] = _linear(x[sel], t[sel])[2]
            err += seg_err[(lo, hi)]
        if err < best_err:
            best, best_err = bounds, err
    return best


def _fit_with_bounds(op: str, x: np.ndarray, t: np.ndarray, bounds: list[float]) -> tuple[list[CollectivePiece], bool, list[str]]:
    edges = [-math.inf] + bounds + [math.inf]
    pieces, ok, flags = [], True, []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (x > lo) & (x <= hi)
        lat, bw, conv, fl = fit_alpha_beta(op, x[sel], t[sel])
        ok &= conv
        tag = f"piece {i} " if len(edges) > 2 else ""
        flags += [tag + f for f in fl]
        pieces.append(CollectivePiece(max_bytes=None if math.isinf(hi) else float(hi), latency_s=lat, bandwidth_bytes_per_s=bw))
    return pieces, ok, flags


def _heldout(op: str, x: np.ndarray, t: np.ndarray, npieces: int, k: int) -> np.ndarray:
    errs = []
    for train, test in kfold_splits(x.size, k):
        xt, tt = x[train], t[train]
        if np.unique(xt).size < npieces * MIN_SIZES_PER_PIECE:
            return np.array([])
        bounds = _best_bounds(xt, tt, npieces) if npieces > 1 else []
        if bounds is None:
            return np.array([])
        pieces, _, _ = _fit_with_bounds(op, xt, tt, bounds)
        errs.append(rel_errors(_predict(pieces, x[test]), t[test]))
    return np.concatenate(errs) if errs else np.array([])


def fit_piecewise(op: str, sizes_bytes: Sequence[float], times_s: Sequence[float], max_pieces: int = 3,
                  target: str = "collective", k: int = 5) -> AlphaBetaFit:
    """Fit 1..max_pieces alpha-beta pieces; keep the count with the best held-out error."""
    x, t = check_series(op, sizes_bytes, times_s, min_points=MIN_SIZES_PER_PIECE)
    order = np.argsort(x, kind="stable")
    x, t = x[order], t[order]
    distinct = np.unique(x).size
    if distinct < MIN_SIZES_PER_PIECE:
        raise ValueError(f"{op}: need at least {MIN_SIZES_PER_PIECE} distinct sizes to fit latency and bandwidth, "
                         f"got {distinct} ({sorted(set(x.tolist()))})")
    chosen, chosen_err, chosen_held = 1, math.inf, np.array([])
    for npieces in range(1, max_pieces + 1):
        if distinct < npieces * MIN_SIZES_PER_PIECE + 1:  # +1: a held-out fold must still leave enough sizes
            break
        held = _heldout(op, x, t, npieces, k)
        if held.size == 0:
            break
        med = float(np.median(held))
        if npieces == 1 or (med <= _SPLIT_GAIN * chosen_err and chosen_err - med >= _SPLIT_MIN_ABS):
            chosen, chosen_err, chosen_held = npieces, med, held
    bounds = _best_bounds(x, t, chosen) if chosen > 1 else []
    pieces, ok, flags = _fit_with_bounds(op, x, t, bounds)
    errs = rel_errors(_predict(pieces, x), t)
    q = build_quality(op, errs, chosen_held, (float(x.min()), float(x.max())), ok, flags, target)
    return AlphaBetaFit(op=op, pieces=pieces, quality=q, converged=ok, flags=list(q.flags))
