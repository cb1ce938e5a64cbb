"""Performance models shared by the fits and the queries: the GEMM roofline and its measured-efficiency correction.

    from accelcal.calibrate.profile.perf import gemm_model_time_s
    gemm_model_time_s(4096, 4096, 4096, 2, peak_flop_per_s=9.9e14, bandwidth_bytes_per_s=3.35e12)

FLOP and byte counts come from :mod:`accelcal.vocab`; attention's model is
latency + max(FLOP / rate, bytes / rate) in :meth:`Profile.attention_time_s`.
No torch.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Sequence

import numpy as np

from accelcal.vocab import gemm_flop, gemm_traffic_bytes

__all__ = ["WAVE_TILE", "gemm_estimate_s", "gemm_model_time_s", "interp_log", "ratio_table"]

WAVE_TILE = 128
"""Output tile edge assumed by the wave-quantisation term of the GEMM model (rows and columns)."""


def gemm_model_time_s(m: float, n: float, k: float, elsize: int, peak_flop_per_s: float,
                      bandwidth_bytes_per_s: float, overhead_s: float = 0.0, wave_units: int | None = None,
                      out_elsize: int | None = None, weight_elsize: float | None = None) -> float:
    """Roofline: overhead + max(compute time, operand-traffic time).

    Traffic is :func:`accelcal.vocab.gemm_traffic_bytes` with ``elsize`` per input element and
    ``out_elsize`` (default ``elsize``) per output element: fp8 GEMMs write bf16 (vocab.gemm_element_bytes);
    ``weight_elsize``: the weights (B) stored at that many bytes per element (a weight-only format).

    With ``wave_units`` the compute term counts whole waves of 128x128 output
    tiles (the last, partly filled wave costs as much as a full one), which is
    where GPU GEMM time steps up as M or N crosses a wave boundary.
    """
    flop = float(gemm_flop(m, n, k))
    if wave_units:
        tiles = math.ceil(m / WAVE_TILE) * math.ceil(n / WAVE_TILE)
        waves = math.ceil(tiles / wave_units)
        # Every unit computes whole 128x128 tiles for every wave, filled or not.
        flop = max(flop, 2.0 * k * WAVE_TILE * WAVE_TILE * waves * wave_units)
    traffic = gemm_traffic_bytes(m, n, k, elsize, out_elsize, weight_elsize)
    return overhead_s + max(flop / peak_flop_per_s, traffic / bandwidth_bytes_per_s)


def _log3(p: Sequence[float]) -> tuple[float, float, float]:
    return (math.log(p[0]), math.log(p[1]), math.log(p[2]))


def ratio_table(model: Callable[[float, float, float], float], points: Sequence[Sequence[float]]) -> dict:
    ratios = [(p, math.log(p[3] / model(p[0], p[1], p[2]))) for p in points]
    lines: dict[tuple[float, float], list[tuple[float, float]]] = {}
    for p, lr in ratios:
        lines.setdefault((p[1], p[2]), []).append((p[0], lr))
    return {"ratios": ratios, "lines": {key: sorted(v) for key, v in lines.items()},
            # the measured shapes in log(m, n, k) and their log ratios, for the nearest-shape search
            "log_arr": np.array([_log3(p) for p, _ in ratios], dtype=float).reshape(-1, 3),
            "lr_arr": np.array([lr for _, lr in ratios], dtype=float),
            "lo": [min(math.log(p[i]) for p in points) for i in range(3)] if points else [],
            "hi": [max(math.log(p[i]) for p in points) for i in range(3)] if points else []}


def _line_lr(line: Sequence[tuple[float, float]], m: float) -> float | None:
    """The value at ``m`` of ``line`` ([(M, value)] sorted by M; a measured line's log(ratio)), linear in log(M)
    between its points; None outside its range (interp_log holds the ends instead)."""
    ms = [x for x, _ in line]
    if not ms or m < ms[0] or m > ms[-1]:
        return None
    j = bisect.bisect_left(ms, m)
    if ms[j] == m:
        return line[j][1]
    x0, x1 = math.log(ms[j - 1]), math.log(ms[j])
    w = (math.log(m) - x0) / (x1 - x0)
    return line[j - 1][1] * (1 - w) + line[j][1] * w


def _m_trend(lines: dict, own: tuple[float, float], m_from: float, m_to: float) -> tuple[float, int]:
    """(median change of log(ratio) from ``m_from`` to ``m_to`` over the other lines that measured both, count)."""
    deltas = []
    for key, line in lines.items():
        if key == own:
            continue
        a, b = _line_lr(line, m_from), _line_lr(line, m_to)
        if a is not None and b is not None:
            deltas.append(b - a)
    if not deltas:
        return 0.0, 0
    deltas.sort()
    mid = len(deltas) // 2
    return (deltas[mid] if len(deltas) % 2 else 0.5 * (deltas[mid - 1] + deltas[mid])), len(deltas)


def gemm_estimate_s(model: Callable[[float, float, float], float], points: Sequence[Sequence[float]],
                    m: float, n: float, k: float, table: dict | None = None) -> tuple[float, bool, str]:
    """Correct the parametric model by the measured efficiency ratio, interpolated in log-shape space.

    ratio_i = measured_i / model_i at every measured shape.  A query on a
    measured (n, k) line interpolates log(ratio) linearly in log(m) between the
    neighbouring measured M values; below or above the line's measured M, the
    line's boundary efficiency moved by the change in efficiency the other
    measured lines show between those M (the kernel path, GEMV at M=1 or a
    blocked GEMM above, is picked by M on every shape); elsewhere, inverse-distance weighting over
    the nearest shapes in log(m, n, k).  Outside the measured box the query is
    clamped to the box first, so extrapolation holds the boundary efficiency
    rather than following a trend off the data.  Returns (time_s, extrapolated, detail).
    """
    base = model(m, n, k)
    if not points:
        return base, True, "parametric roofline (no measured shapes)"
    table = table if table is not None else ratio_table(model, points)
    line = table["lines"].get((float(n), float(k)), [])
    if len(line) >= 1:
        ms = [x for x, _ in line]
        lrs = [y for _, y in line]
        extrap = m < ms[0] or m > ms[-1]
        if m < ms[0] or m > ms[-1]:
            mb, lb = (ms[0], lrs[0]) if m < ms[0] else (ms[-1], lrs[-1])
            delta, nlines = _m_trend(table["lines"], (float(n), float(k)), mb, m)
            if nlines:
                # The kernel path follows M (a GEMV for M=1, blocked GEMMs above), the same on every (N, K):
                # take this line's efficiency at its nearest measured M and the change from there to M that
                # the other measured lines show, instead of holding the boundary efficiency across a regime change.
                return (base * math.exp(lb + delta), False,
                        f"efficiency of measured M={mb:g} on the (N={n:g}, K={k:g}) line, moved to M={m:g} by the "
                        f"M trend of {nlines} other measured line(s)")
        if len(line) == 1 or m <= ms[0]:
            lr, how = lrs[0] if m <= ms[0] else lrs[-1], f"held the efficiency of measured M={ms[0]:g}"
        elif m >= ms[-1]:
            lr, how = lrs[-1], f"held the efficiency of measured M={ms[-1]:g}"
        else:
            j = bisect.bisect_left(ms, m)
            if ms[j] == m:
                lr, how = lrs[j], f"measured shape M={m:g}"
            else:
                x0, x1 = math.log(ms[j - 1]), math.log(ms[j])
                w = (math.log(m) - x0) / (x1 - x0)
                lr = lrs[j - 1] * (1 - w) + lrs[j] * w
                how = f"interpolated efficiency between M={ms[j - 1]:g} and M={ms[j]:g}"
        if len(line) == 1 and m != ms[0]:
            how = f"held the efficiency of the only measured M={ms[0]:g}"
            extrap = True
        return base * math.exp(lr), extrap, f"{how} on the measured (N={n:g}, K={k:g}) line"
    lo, hi = table["lo"], table["hi"]
    q = _log3((m, n, k))
    extrap = any(q[i] < lo[i] - 1e-12 or q[i] > hi[i] + 1e-12 for i in range(3))
    qc = [min(max(q[i], lo[i]), hi[i]) for i in range(3)]
    dists = _nearest(table, qc, 4)
    if dists[0][0] < 1e-18:
        lr = dists[0][1]
    else:
        ws = [1.0 / d for d, _ in dists]
        lr = sum(w * v for w, (_, v) in zip(ws, dists)) / sum(ws)
    how = ("held the boundary efficiency of the nearest measured shapes (outside the measured range)" if extrap
           else "efficiency interpolated (inverse-distance, log shape space) from the 4 nearest measured shapes")
    return base * math.exp(lr), extrap, how


def _nearest(table: dict, q: Sequence[float], count: int) -> list[tuple[float, float]]:
    """[(squared log-shape distance, log ratio)] of the ``count`` measured shapes nearest ``q``, sorted as
    (distance, log ratio) pairs sort, ties included (the same answer as sorting every point, without doing it)."""
    arr = table["log_arr"]
    d = (q[0] - arr[:, 0]) ** 2 + (q[1] - arr[:, 1]) ** 2 + (q[2] - arr[:, 2]) ** 2
    if len(d) > count:
        # every point as near as the count-th nearest, so ties at the edge sort as a full sort would
        edge = np.partition(d, count - 1)[count - 1]
        idx = np.nonzero(d <= edge)[0]
    else:
        idx = np.arange(len(d))
    lrs = table["lr_arr"]
    return sorted((float(d[i]), float(lrs[i])) for i in idx)[:count]


def interp_log(table: Sequence[tuple[float, float]], x: float) -> float:
    """The value at ``x`` of ``table`` ([(x, value)] sorted by x, x > 0), linear in log x between its points and
    held at the first and last value beyond them."""
    if not table:
        raise ValueError("interp_log: empty table")
    return _line_lr(table, min(max(x, table[0][0]), table[-1][0]))
