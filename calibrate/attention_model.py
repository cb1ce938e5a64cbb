"""Attention time over batch x length x heads, and the mixed step of a continuous-batching engine.

    from accelcal.calibrate.attention_model import attention_model_time_s
    t = attention_model_time_s(latency_s=6e-6, flop_per_s=7e14, bytes_per_s=4.5e12, half_length=250.0,
                               wave_units=132, block_q=128, phase="prefill", batch=1, q_len=4096, kv_len=4096,
                               heads=8, kv_heads=1, head_dim=128, elsize=2)

prefill: time = latency + max(FLOP / flop_per_s x schedule factor, bytes / bytes_per_s) (:func:`prefill_work_s`)
decode:  time = latency + max(FLOP / flop_per_s, bytes / bytes_per_s) x (1 + half_length / kv_len)

* **prefill**: a fused attention kernel runs one thread block per (batch, head, block of ``block_q`` queries);
  block i loops over the keys it may see (all ``kv_len`` without a mask; ``min(kv_len, (i + 1) x block_q +
  kv_len - q_len)`` under a causal mask aligned to the last query), after a fixed prologue (loading Q,
  filling the pipeline) worth ``half_length`` keys of work.  With ``wave_units`` (SMs/CUs) the blocks are
  handed out in grid order (the query blocks of one head consecutive) to whichever unit frees first, and
  the call lasts until the last unit finishes (:func:`prefill_makespan_keys`): few blocks, or the long last
  query blocks of a causal prompt landing in the final wave, leave units idle.  TP-divided head counts land
  here.  The factor is that makespan over the attended keys spread evenly over the units (FLOP / rate
  counts the attended pairs), so it is >= 1.  Without units: 1 + blocks x half_length / attended keys.
* **decode**: ``1 + half_length / kv_len`` (the decode fits keep half_length at 0).

Without a mask the sustained rate at KV length L is ``rate x L / (L + half_length)``: half the rate at
L = half_length.  FLOP and bytes come from :func:`accelcal.vocab.attention_flop_bytes`, the one definition
the fit and the query share.  No torch.
"""

from __future__ import annotations

import heapq
import math
from functools import lru_cache
from typing import Any

import numpy as np

from accelcal.vocab import PREFILL_KINDS, attended_pairs, attention_flop_bytes

__all__ = ["attention_model_time_s", "prefill_work_s", "prefill_waves_factor", "prefill_makespan_keys", "prefill_schedule_factor",
           "DEFAULT_BLOCK_Q", "SIM_MAX_BLOCKS"]

DEFAULT_BLOCK_Q = 128
"""Query rows per thread block of a flash-attention prefill kernel (FlashAttention-2's forward tile)."""


def prefill_waves_factor(batch: Any, heads: Any, q_len: Any, wave_units: int | None, block_q: int) -> Any:
    """ceil(blocks / units) x units / blocks with blocks = batch x heads x ceil(q_len / block_q); 1 without units."""
    if not wave_units:
        return np.ones_like(np.asarray(q_len, dtype=float))
    blocks = np.asarray(batch, dtype=float) * np.asarray(heads, dtype=float) * np.ceil(np.asarray(q_len, dtype=float) / block_q)
    return np.ceil(blocks / wave_units) * wave_units / blocks


SIM_MAX_BLOCKS = 4096
"""Up to this many thread blocks the grid-order schedule is simulated block by block; above, the simulated
tail of a shorter run of the same per-head block pattern is added to the evenly spread work (the tail is
bounded by one block, a small part of a call of that many blocks)."""


def _block_keys(q_len: int, kv_len: int, causal: bool, block_q: int) -> np.ndarray:
    """Keys each query block of one (batch, head) attends, in grid order."""
    nq = max(1, math.ceil(q_len / block_q))
    if not causal or q_len <= 1:
        return np.full(nq, float(kv_len))
    i = np.arange(nq, dtype=float)
    return np.minimum(float(kv_len), np.maximum(1.0, (i + 1) * block_q + (kv_len - q_len)))


def _list_schedule(costs: np.ndarray, units: int) -> float:
    """Makespan of ``costs`` handed out in order, each to the unit that frees first."""
    if costs.size <= units:
        return float(costs.max())
    free = [0.0] * units
    for c in costs.tolist():
        heapq.heapreplace(free, free[0] + c)
    return max(free)


@lru_cache(maxsize=8192)
def prefill_makespan_keys(q_len: int, kv_len: int, causal: bool, block_q: int, groups: int, units: int,
                          prologue: float) -> float:
    """Makespan, in keys of work per block, of ``groups`` (batch x heads) copies of one head's query blocks,
    each block costing its attended keys + ``prologue``, list-scheduled in grid order over ``units``."""
    pattern = _block_keys(q_len, kv_len, causal, block_q) + prologue
    per_group = float(pattern.sum())
    if pattern.size * groups <= max(SIM_MAX_BLOCKS, 16 * units):
        return _list_schedule(np.tile(pattern, groups), units)
    reps = max(1, math.ceil(max(SIM_MAX_BLOCKS, 16 * units) / pattern.size))
    tail = _list_schedule(np.tile(pattern, reps), units) - reps * per_group / units
    return groups * per_group / units + max(0.0, tail)


def prefill_schedule_factor(batch: Any, heads: Any, q_len: Any, kv_len: Any, causal: Any, wave_units: int | None,
                            block_q: int, half_length: float) -> Any:
    """Prefill time over the work spread evenly (module docstring): block-schedule makespan (with units) or
    prologue share (without) over the attended (query, key) pairs; arrays broadcast."""
    def one(b: float, h: float, q: float, kv: float, c: bool) -> float:
        q, kv = int(q), int(kv)
        c = bool(c) and q > 1
        pairs = attended_pairs(q, kv, c)
        groups = int(b) * int(h)
        # a block holds block_q query rows, or all of a shorter query (a chunk's few leftover tokens): its
        # keys and its prologue cost per row it holds, not per row a full block would hold
        rows = min(int(block_q), q)
        if not wave_units:
            keys = _block_keys(q, kv, c, block_q)
            return (pairs + rows * keys.size * float(half_length)) / pairs
        span = prefill_makespan_keys(q, kv, c, int(block_q), groups, int(wave_units), round(float(half_length), 6))
        return span * rows * int(wave_units) / (groups * pairs)

    out = np.vectorize(one, otypes=[float])(batch, heads, q_len, kv_len, causal)
    return float(out) if np.ndim(out) == 0 else out


def _infer_causal(flop: Any, batch: Any, heads: Any, q_len: Any, kv_len: Any, head_dim: Any) -> Any:
    """A caller that counted FLOP with :func:`accelcal.vocab.attention_flop_bytes` but did not pass the mask:
    causal is what dropped pairs below q_len x kv_len."""
    full = np.vectorize(lambda b, h, q, kv, d: attention_flop_bytes(b, q, kv, h, h, d, 0, False)[0],
                        otypes=[float])(batch, heads, q_len, kv_len, head_dim)
    return np.asarray(flop, dtype=float) < full * (1 - 1e-9)


def prefill_work_s(compute_s: Any, traffic_s: Any, factor: Any) -> Any:
    """A prefill's time beyond its latency: the FLOP time stretched by the schedule factor (which counts attended
    query-key pairs, the FLOP), with the byte time a floor beside it.  Stretching the bytes too made a short
    prompt slower than a longer one (its few blocks give a large factor, and at a few hundred tokens the Q/K/V/O
    bytes outweigh the FLOP at the floor rate)."""
    return np.maximum(np.asarray(compute_s, dtype=float) * factor, traffic_s)


def attention_model_time_s(*, latency_s: float, flop_per_s: float, bytes_per_s: float, half_length: float,
                           wave_units: int | None, block_q: int, phase: str, batch: Any, q_len: Any, kv_len: Any,
                           heads: Any, kv_heads: Any, head_dim: Any, elsize: int, causal: Any = None,
                           flop: Any = None, nbytes: Any = None) -> Any:
    """Model time in seconds (arrays broadcast); ``flop``/``nbytes`` may be passed when already computed.

    ``causal`` None: True, unless ``flop`` and ``head_dim`` are given, in which case it is read off the FLOP
    count (a causal mask drops pairs; callers that count FLOP with the vocab formula need not pass it)."""
    if causal is None:
        causal = (_infer_causal(flop, batch, heads, q_len, kv_len, head_dim)
                  if flop is not None and head_dim is not None else True)
    if flop is None or nbytes is None:
        flop, nbytes = attention_flop_bytes(batch, q_len, kv_len, heads, kv_heads, head_dim, elsize, causal)
    compute = np.asarray(flop, dtype=float) / flop_per_s
    traffic = np.asarray(nbytes, dtype=float) / bytes_per_s
    if phase in PREFILL_KINDS:
        factor = prefill_schedule_factor(batch, heads, q_len, kv_len, causal, wave_units, block_q, half_length)
        out = latency_s + prefill_work_s(compute, traffic, factor)
    else:
        factor = 1.0 + half_length / np.asarray(kv_len, dtype=float)
        out = latency_s + np.maximum(compute, traffic) * factor
    return float(out) if np.ndim(out) == 0 else out


def mixed_parts(decode_kv_lens: list[int], chunks: list[tuple[int, int]]) -> list[tuple[str, int, int, int]]:
    """(phase, batch, q_len, kv_len) parts of one mixed step: the decode batch as one part at its mean KV length
    (decode work is linear in the summed KV length), each prefill chunk of ``q_len`` new tokens after
    ``context_len`` cached ones as a causal prefill with kv_len = context_len + q_len."""
    parts = []
    if decode_kv_lens:
        if any(int(v) < 1 for v in decode_kv_lens):
            raise ValueError(f"attention_mixed_time_s: decode_kv_lens must be >= 1, got {list(decode_kv_lens)}")
        parts.append(("decode", len(decode_kv_lens), 1, max(1, int(math.ceil(sum(decode_kv_lens) / len(decode_kv_lens))))))
    for i, ch in enumerate(chunks):
        try:
            q_len, context_len = (int(v) for v in ch)
        except (TypeError, ValueError):
            raise ValueError(f"attention_mixed_time_s: chunks[{i}] must be (q_len, context_len), got {ch!r}") from None
        if q_len < 1 or context_len < 0:
            raise ValueError(f"attention_mixed_time_s: chunks[{i}] needs q_len >= 1 and context_len >= 0, got {ch!r}")
        parts.append(("prefill", 1, q_len, context_len + q_len))
    if not parts:
        raise ValueError("attention_mixed_time_s: nothing to run (no decode_kv_lens and no chunks)")
    return parts
