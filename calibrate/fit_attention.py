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

from accelcal.vocab import DTYPE_BYTES, attention_flop_bytes

from .profile import MAX_BANDWIDTH_BYTES_PER_S, MAX_FLOP_PER_S, MAX_TIME_S, AttentionEntry
from .quality import bound_flags, build_quality, kfold_splits, rel_errors

__all__ = ["fit_attention", "case_work", "MIN_ATTENTION_POINTS"]

MIN_ATTENTION_POINTS = 3
"""Fewest measured cases per (dtype, phase): three parameters."""

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


def _model(z: np.ndarray, flop: np.ndarray, nbytes: np.ndarray, shape: np.ndarray, phase: str,
           wave_units: int | None) -> np.ndarray:
    from .attention_model import DEFAULT_BLOCK_Q, attention_model_time_s

    batch, heads, q_len, kv_len = shape.T
    return attention_model_time_s(latency_s=z[0], flop_per_s=math.exp(z[1]), bytes_per_s=math.exp(z[2]),
                                  half_length=z[3], wave_units=wave_units, block_q=DEFAULT_BLOCK_Q, phase=phase,
                                  batch=batch, q_len=q_len, kv_len=kv_len, heads=heads, kv_heads=None, head_dim=None,
                                  elsize=0, flop=flop, nbytes=nbytes)


def _fit(flop: np.ndarray, nbytes: np.ndarray, shape: np.ndarray, t: np.ndarray, phase: str,
         wave_units: int | None) -> tuple[np.ndarray, bool, list[str]]:
    tmin = float(t.min())
    fr0 = float(np.clip((flop / t).max(), 2.0, MAX_FLOP_PER_S / 2))
    br0 = float(np.clip((nbytes / t).max(), 2.0, MAX_BANDWIDTH_BYTES_PER_S / 2))
    # The length term is a prefill term (a per-query-block prologue amortised over the KV loop) and needs more
    # than one KV length to be seen; decode (one query row, KV-bandwidth-bound) keeps it at 0.
    one_len = phase != "prefill" or np.unique(shape[:, 3]).size < 2
    # Prefill reuses every K/V byte q_len times: its Q+K+V+O traffic runs far below the memory roof, and a
    # byte term left free only imitates the length effect ``half_length`` models.  Keep it from binding.
    br_lo = math.log(_PREFILL_BYTES_HEADROOM * br0) if phase == "prefill" else 0.0
    lo = np.array([0.0, 0.0, br_lo, 0.0])
    hi = np.array([min(MAX_TIME_S, tmin), math.log(MAX_FLOP_PER_S), math.log(MAX_BANDWIDTH_BYTES_PER_S),
                   1e-9 if one_len else _MAX_HALF_LENGTH])
    x0 = np.array([0.1 * tmin, math.log(fr0), max(br_lo + 1e-6, math.log(br0)), 100.0 if not one_len else 0.0])
    res = least_squares(lambda z: _model(z, flop, nbytes, shape, phase, wave_units) / t - 1.0, x0, bounds=(lo, hi),
                        loss="soft_l1", f_scale=0.05, method="trf",
                        x_scale=np.array([max(tmin, 1e-12), 1.0, 1.0, 100.0]))
    names = ["latency_s", "log flop_per_s"] + ([] if phase == "prefill" else ["log bytes_per_s"])
    flags = bound_flags(names, res.x[:len(names)], lo[:len(names)], hi[:len(names)], res.active_mask[:len(names)])
    return res.x, bool(res.success), flags


def fit_attention(dtype: str, phase: str, cases: Sequence[Mapping[str, Any]], times_s: Sequence[float],
                  k: int = 5, wave_units: int | None = None) -> AttentionEntry:
    """Fit one (dtype, phase) from measured cases and their median times (model: calibrate/attention_model.py).

    ``wave_units`` (SMs/CUs, accelerators only) turns on the prefill wave term; the prefill length term
    ``half_length`` is fitted whenever the cases span more than one KV length (decode: 0)."""
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
    shape = np.array([[float(c[key]) for key in ("batch", "heads", "q_len", "kv_len")] for c in cases])
    if np.unique(flop).size < 2 and np.unique(nbytes).size < 2:
        raise ValueError(f"{op}: all {t.size} cases do the same work ({flop[0]:g} FLOP, {nbytes[0]:g} bytes); "
                         f"need cases of different sizes")
    waves = int(wave_units) if wave_units and phase == "prefill" else None
    held = []
    for train, test in kfold_splits(t.size, k):
        z, _, _ = _fit(flop[train], nbytes[train], shape[train], t[train], phase, waves)
        held.append(rel_errors(_model(z, flop[test], nbytes[test], shape[test], phase, waves), t[test]))
    z, ok, flags = _fit(flop, nbytes, shape, t, phase, waves)
    errs = rel_errors(_model(z, flop, nbytes, shape, phase, waves), t)
    q = build_quality(op, errs, np.concatenate(held), (float(flop.min()), float(flop.max())), ok, flags, "attention")
    return AttentionEntry(latency_s=float(z[0]), flop_per_s=math.exp(z[1]), bytes_per_s=math.exp(z[2]), quality=q,
                          half_length=float(z[3]), wave_units=waves, block_q=None)
