"""Attention cost per dtype and phase: latency + max(FLOP / flop rate, bytes / byte rate) x length and wave terms.

    from accelcal.calibrate.fit_attention import fit_attention
    entry = fit_attention("bf16", "decode", cases, times_s)   # cases: dicts with batch, heads, kv_heads, ...
    entry.flop_per_s, entry.bytes_per_s, entry.quality

FLOP and bytes come from :func:`accelcal.vocab.attention_flop_bytes`
(the same function the query API uses), not from the raw rows, so a fitted rate
and a query always count work the same way.  Prefill is mostly FLOP-bound,
decode mostly KV-byte-bound; a rate the data never binds stays at the best rate
observed (it then does not limit any measured case) rather than running off to a bound.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import least_squares

from accelcal.vocab import DTYPE_BYTES, PREFILL_KINDS, attention_flop_bytes

from .attention_model import prefill_work_s
from .profile import MAX_BANDWIDTH_BYTES_PER_S, MAX_FLOP_PER_S, MAX_TIME_S, AttentionEntry
from .quality import bound_flags, build_quality, kfold_splits, rel_errors

__all__ = ["attention_groups", "fit_attention", "fit_attention_table", "case_work", "MIN_ATTENTION_POINTS"]

MIN_ATTENTION_POINTS = 3
"""Fewest measured cases per (dtype, phase): three parameters."""

_ONE_INTENSITY = 1.25
"""Decode cases whose FLOP/byte spread by less than this factor count as one arithmetic intensity."""

CASE_KEYS = ("batch", "heads", "kv_heads", "head_dim", "q_len", "kv_len", "causal")


def _as_bool(v: Any, where: str) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    raise ValueError(f"{where}: causal must be true/false, got {v!r}")


def case_work(case: Mapping[str, Any], dtype: str, where: str = "attention") -> tuple[float, float]:
    """(FLOP, bytes) of one measured case row."""
    missing = [k for k in CASE_KEYS if k not in case or case[k] is None or (isinstance(case[k], float) and math.isnan(case[k]))]
    if missing:
        raise ValueError(f"{where}: case is missing parameter(s) {missing}; need {list(CASE_KEYS)}")
    ints = {k: int(case[k]) for k in CASE_KEYS if k != "causal"}
    return attention_flop_bytes(ints["batch"], ints["q_len"], ints["kv_len"], ints["heads"], ints["kv_heads"],
                                ints["head_dim"], DTYPE_BYTES[dtype], _as_bool(case["causal"], where))


_MAX_HALF_LENGTH = 1e5
_PREFILL_BYTES_HEADROOM = 4.0
"""Prefill's byte rate is held at >= this x the best byte rate any prefill case shows."""


_H_GRID = np.concatenate([[0.0], np.geomspace(1.0, _MAX_HALF_LENGTH, 48)])
"""half_length values at which the prefill schedule factor is tabulated for the fit (linear in between)."""


_H_STARTS = (30.0, 300.0, 3000.0)
"""Starting half_length values (tokens) of the prefill fit; the lowest-cost result is kept."""


class _Factors:
    """The length/schedule factor of each case as a function of ``half_length`` (calibrate/attention_model.py).

    The prefill block schedule is simulated, so the fit reads it from a table over :data:`_H_GRID` built once
    per case set (it depends on the case shapes only, never on measured times, so folds may share it)."""

    def __init__(self, shape: np.ndarray, phase: str, wave_units: int | None):
        self.shape, self.phase, self.wave_units = shape, phase, wave_units
        self._table: np.ndarray | None = None

    def exact(self, h: float, rows: Any = slice(None)) -> np.ndarray:
        from .attention_model import DEFAULT_BLOCK_Q, prefill_schedule_factor

        batch, heads, q_len, kv_len, causal = self.shape[rows].T
        if self.phase not in PREFILL_KINDS:
            return 1.0 + h / kv_len
        return np.atleast_1d(prefill_schedule_factor(batch, heads, q_len, kv_len, causal.astype(bool),
                                                     self.wave_units, DEFAULT_BLOCK_Q, h))

    def __call__(self, h: float, rows: Any = slice(None)) -> np.ndarray:
        if self.phase not in PREFILL_KINDS:
            return self.exact(h, rows)
        if self._table is None:
            self._table = np.array([self.exact(float(g)) for g in _H_GRID]).T  # (cases, grid)
        tab = self._table[rows]
        j = int(np.clip(np.searchsorted(_H_GRID, h) - 1, 0, _H_GRID.size - 2))
        w = (h - _H_GRID[j]) / (_H_GRID[j + 1] - _H_GRID[j])
        return tab[:, j] * (1 - w) + tab[:, j + 1] * w


def _model(z: np.ndarray, flop: np.ndarray, nbytes: np.ndarray, factor: np.ndarray, phase: str) -> np.ndarray:
    compute, traffic = flop / math.exp(z[1]), nbytes / math.exp(z[2])
    if phase in PREFILL_KINDS:
        return z[0] + prefill_work_s(compute, traffic, factor)
    return z[0] + np.maximum(compute, traffic) * factor


def _fit(flop: np.ndarray, nbytes: np.ndarray, shape: np.ndarray, t: np.ndarray, phase: str,
         factors: _Factors, rows: Any, flop_floor_per_s: float | None = None) -> tuple[np.ndarray, bool, list[str]]:
    tmin = float(t.min())
    fr0 = float(np.clip((flop / t).max(), 2.0, MAX_FLOP_PER_S / 2))
    if flop_floor_per_s:  # not identified by these cases: pinned there (see fit_attention)
        fr0 = float(flop_floor_per_s) * (1.0 + 5e-10)
    br0 = float(np.clip((nbytes / t).max(), 2.0, MAX_BANDWIDTH_BYTES_PER_S / 2))
    # The length term is a prefill term (a per-query-block prologue amortised over the KV loop) and needs more
    # than one KV length to be seen; decode (one query row, KV-bandwidth-bound) keeps it at 0.
    one_len = phase not in PREFILL_KINDS or np.unique(shape[:, 3]).size < 2
    # Prefill reuses every K/V byte q_len times: its Q+K+V+O traffic runs far below the memory roof, and a
    # byte term left free only imitates the length effect ``half_length`` models.  Keep it from binding.
    br_lo = math.log(_PREFILL_BYTES_HEADROOM * br0) if phase in PREFILL_KINDS else 0.0
    lo = np.array([0.0, math.log(flop_floor_per_s) if flop_floor_per_s else 0.0, br_lo, 0.0])
    hi = np.array([min(MAX_TIME_S, tmin),
                   math.log(flop_floor_per_s) + 1e-9 if flop_floor_per_s else math.log(MAX_FLOP_PER_S),
                   math.log(MAX_BANDWIDTH_BYTES_PER_S),
                   1e-9 if one_len else _MAX_HALF_LENGTH])
    # The prologue and the rate trade off on few cases (several local minima): start the length term at a few
    # scales and keep the lowest training cost.
    starts = (0.0,) if one_len else _H_STARTS
    res = min((least_squares(lambda z: _model(z, flop, nbytes, factors(z[3], rows), phase) / t - 1.0,
                             np.array([0.1 * tmin, math.log(fr0), max(br_lo + 1e-6, math.log(br0)), h0]), bounds=(lo, hi),
                             loss="soft_l1", f_scale=0.05, method="trf", x_scale=np.array([max(tmin, 1e-12), 1.0, 1.0, 100.0]))
               for h0 in starts), key=lambda r: r.cost)
    names = (["latency_s"] + ([] if flop_floor_per_s else ["log flop_per_s"])
             + ([] if phase in PREFILL_KINDS else ["log bytes_per_s"]))
    if flop_floor_per_s:  # the floor is a choice, not a fit that hit a bound: judge latency and bytes only
        keep = [0, 2]
        return res.x, bool(res.success), bound_flags(names, res.x[keep], lo[keep], hi[keep], res.active_mask[keep])
    flags = bound_flags(names, res.x[:len(names)], lo[:len(names)], hi[:len(names)], res.active_mask[:len(names)])
    return res.x, bool(res.success), flags


def fit_attention(dtype: str, phase: str, cases: Sequence[Mapping[str, Any]], times_s: Sequence[float],
                  k: int = 5, wave_units: int | None = None, compute_ceiling_flop_per_s: float | None = None
                  ) -> AttentionEntry:
    """Fit one (dtype, phase) from measured cases and their median times (model: calibrate/attention_model.py).

    ``wave_units`` (SMs/CUs, accelerators only) turns on the prefill wave term; the prefill length term
    ``half_length`` is fitted whenever the cases span more than one KV length (decode: 0).  ``chunk`` (a
    prefill after cached context, torch's other kernels) takes the prefill form without the wave schedule:
    those kernels split the keys of a few query blocks over the units (FlashAttention-2's split-KV), so idle
    units do not follow from the block count.

    Decode cases of one arithmetic intensity (the same query heads per KV head: FLOP/byte constant) cannot
    tell the FLOP rate from the byte rate: any FLOP rate above the one they ran at fits.  Left free, the
    fitted FLOP rate would then bind at a higher GQA ratio (a model with more query heads per KV head, or
    its heads divided by TP, or an fp8 KV cache that halves the bytes) where the kernel is still
    bandwidth-bound.  With ``compute_ceiling_flop_per_s`` (the same device's measured prefill attention rate:
    the fastest the attention kernels were seen to compute) the decode FLOP rate is held at that, and a flag
    says so.  Cases of several intensities that all ran bandwidth-bound leave it as unidentified: the
    free fit then settles at the highest FLOP rate a case happened to reach.  So the decode fit is also
    cross-validated both ways, and the ceiling is kept unless the free FLOP rate predicts the held-out cases
    better (a smaller median or mean error): the rate is taken as identified only when the cases show it.
    """
    op = f"attention {dtype} {phase}"
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"{op}: unknown dtype; known {sorted(DTYPE_BYTES)}")
    t = np.asarray(times_s, dtype=float)
    if len(cases) != t.size:
        raise ValueError(f"{op}: {len(cases)} cases but {t.size} times")
    if t.size < MIN_ATTENTION_POINTS:
        raise ValueError(f"{op}: too few measured cases to fit: got {t.size}, need at least {MIN_ATTENTION_POINTS}")
    if (~np.isfinite(t) | (t <= 0)).any():
        raise ValueError(f"{op}: timings must be finite and > 0 s; got {t[~np.isfinite(t) | (t <= 0)][:5].tolist()}")
    work = np.array([case_work(c, dtype, op) for c in cases])
    flop, nbytes = work[:, 0], work[:, 1]
    shape = np.array([[float(c[key]) for key in ("batch", "heads", "q_len", "kv_len")] + [float(_as_bool(c["causal"], op))]
                      for c in cases])
    if np.unique(flop).size < 2 and np.unique(nbytes).size < 2:
        raise ValueError(f"{op}: all {t.size} cases do the same work ({flop[0]:g} FLOP, {nbytes[0]:g} bytes); "
                         f"need cases of different sizes")
    waves = int(wave_units) if wave_units and phase == "prefill" else None  # not for chunks (see above)
    intensity = flop / nbytes
    ceiling = float(compute_ceiling_flop_per_s) if phase == "decode" and compute_ceiling_flop_per_s else None
    factors = _Factors(shape, phase, waves)

    def held_out(floor: float | None) -> np.ndarray:
        errs = []
        for train, test in kfold_splits(t.size, k):
            z, _, _ = _fit(flop[train], nbytes[train], shape[train], t[train], phase, factors, train, floor)
            errs.append(rel_errors(_model(z, flop[test], nbytes[test], factors.exact(z[3], test), phase), t[test]))
        return np.concatenate(errs)

    floor, why = None, ""
    if ceiling and intensity.max() <= _ONE_INTENSITY * intensity.min():
        floor, held = ceiling, held_out(ceiling)
        why = f"every case at {intensity.min():.3g} FLOP/byte, so the FLOP rate is not identified"
    else:
        held = held_out(None)
        if ceiling:
            at_ceiling = held_out(ceiling)
            # the median and the mean: a few compute-bound cases (the high-intensity ones the planner extrapolates
            # toward) move the mean when the median does not see them
            if np.median(at_ceiling) <= np.median(held) and at_ceiling.mean() <= held.mean():
                why = (f"held-out error median / mean {np.median(held):.1%} / {held.mean():.1%} with the FLOP rate "
                       f"fitted, {np.median(at_ceiling):.1%} / {at_ceiling.mean():.1%} at the prefill rate: these "
                       f"cases ({intensity.min():.3g}-{intensity.max():.3g} FLOP/byte) fit no better with a FLOP "
                       f"ceiling of their own, so the FLOP rate is not identified")
                floor, held = ceiling, at_ceiling
    z, ok, flags = _fit(flop, nbytes, shape, t, phase, factors, slice(None), floor)
    if floor is not None:
        flags = list(flags) + [f"{why}; held at the prefill attention rate {floor:.4g} FLOP/s"]
    errs = rel_errors(_model(z, flop, nbytes, factors.exact(z[3]), phase), t)
    q = build_quality(op, errs, held, (float(flop.min()), float(flop.max())), ok, flags, "attention")
    return AttentionEntry(latency_s=float(z[0]), flop_per_s=math.exp(z[1]), bytes_per_s=math.exp(z[2]), quality=q,
                          half_length=float(z[3]), wave_units=waves, block_q=None)


def attention_groups(rows: Any) -> list[tuple[str, str, list[dict], np.ndarray]]:
    """The (dtype, phase, cases, median times) groups a kernels DataFrame's device-figure attention rows fit.

    Whole prompts (q_len = kv_len) and decode only: a chunk after cached context (q_len < kv_len) needs the
    causal mask aligned to its last query, which torch routes to other kernels than a whole prompt's (on an
    H200 with torch 2.11: FlashAttention-2 or cuDNN with an explicit mask at ~300 TFLOP/s, against cuDNN's
    causal kernel at ~600 for whole prompts; benchmarks/attention_backends.py prints which).  An engine's
    varlen kernel runs a chunk at its whole-prompt rate, so the planner costs chunks from the whole-prompt
    fit; the chunk rows form a group of their own (kind ``chunk``), fitted for what torch itself runs
    (``Profile.attention_mixed_time_s(..., torch_chunks=True)``, benchmarks/fit_accuracy.py's mixed steps)."""
    if rows is None or not len(rows) or "op" not in rows:
        return []
    ok = (rows["status"] == "ok") & (rows["figure"] == "device") & rows["median_s"].notna()
    sel = rows[ok & rows["op"].isin(["attn_prefill", "attn_decode"])]
    if len(sel):
        chunk = (sel["op"] == "attn_prefill") & (sel["q_len"].astype(float) < sel["kv_len"].astype(float))
        sel = sel.assign(kind=np.where(chunk, "chunk", sel["op"].str.split("_", n=1).str[1]))
    return [(dtype, kind, g[list(CASE_KEYS)].to_dict("records"), g["median_s"].astype(float).values)
            for (kind, dtype), g in (sel.groupby(["kind", "dtype"]) if len(sel) else [])]


def fit_attention_table(groups: Sequence[tuple[str, str, Sequence[Mapping[str, Any]], Sequence[float]]],
                        wave_units: int | None = None, note=None) -> dict[str, dict[str, AttentionEntry]]:
    """Fit every (dtype, phase) group ``(dtype, phase, cases, times_s)``: prefill first, so each dtype's decode
    fit can take its prefill rate as the compute ceiling (see :func:`fit_attention`).  A group that cannot be
    fitted is skipped with ``note(message)`` (raised when ``note`` is None)."""
    out: dict[str, dict[str, AttentionEntry]] = {}
    for dtype, phase, cases, times in sorted(groups, key=lambda g: (g[0], g[1] != "prefill")):
        if phase == "chunk" and len(cases) < MIN_ATTENTION_POINTS:
            continue  # optional (torch-run mixed steps only): a sweep with a chunk or two has nothing to fit
        pre = out.get(dtype, {}).get("prefill")
        try:
            e = fit_attention(dtype, phase, cases, times, wave_units=wave_units,
                              compute_ceiling_flop_per_s=pre.flop_per_s if pre is not None else None)
        except (ValueError, KeyError) as exc:
            if note is None:
                raise
            note(f"attention {dtype} {phase}: not fitted: {exc}")
            continue
        out.setdefault(dtype, {})[phase] = e
    return out
