"""Attention time over batch x length x heads, and the mixed step of a continuous-batching engine.

    from accelcal.calibrate.attention_model import attention_model_time_s
    t = attention_model_time_s(latency_s=6e-6, flop_per_s=7e14, bytes_per_s=4.5e12, half_length=900.0,
                               wave_units=132, block_q=128, phase="prefill", batch=1, q_len=4096, kv_len=4096,
                               heads=8, kv_heads=1, head_dim=128, elsize=2)

time = latency + max(FLOP / flop_per_s, bytes / bytes_per_s) x (1 + half_length / kv_len) x waves_factor

* ``half_length`` (tokens): a fused attention kernel pays a fixed prologue per query block (loading Q,
  filling the pipeline) before its loop over the KV length, so the sustained rate at KV length L is
  ``rate x L / (L + half_length)``; half the peak rate is reached at L = half_length.  0 = no such term.
* ``waves_factor`` (prefill only, with ``wave_units``): the kernel runs one thread block per (batch, head,
  block of ``block_q`` queries); with fewer blocks than units, or a last partial wave, the idle units still
  cost time: ``ceil(blocks / units) x units / blocks`` (>= 1).  TP-divided head counts land here.

FLOP and bytes come from :func:`accelcal.calibrate.profile.attention_flop_bytes`, the one definition
the fit and the query share.  No torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["attention_model_time_s", "prefill_waves_factor", "DEFAULT_BLOCK_Q"]

DEFAULT_BLOCK_Q = 128
"""Query rows per thread block of a flash-attention prefill kernel (FlashAttention-2's forward tile)."""


def prefill_waves_factor(batch: Any, heads: Any, q_len: Any, wave_units: int | None, block_q: int) -> Any:
    """ceil(blocks / units) x units / blocks with blocks = batch x heads x ceil(q_len / block_q); 1 without units."""
    if not wave_units:
        return np.ones_like(np.asarray(q_len, dtype=float))
    blocks = np.asarray(batch, dtype=float) * np.asarray(heads, dtype=float) * np.ceil(np.asarray(q_len, dtype=float) / block_q)
    return np.ceil(blocks / wave_units) * wave_units / blocks


def attention_model_time_s(*, latency_s: float, flop_per_s: float, bytes_per_s: float, half_length: float,
                           wave_units: int | None, block_q: int, phase: str, batch: Any, q_len: Any, kv_len: Any,
                           heads: Any, kv_heads: Any, head_dim: Any, elsize: int, causal: bool = True,
                           flop: Any = None, nbytes: Any = None) -> Any:
    """Model time in seconds (arrays broadcast); ``flop``/``nbytes`` may be passed when already computed."""
    if flop is None or nbytes is None:
        from accelcal.vocab import attention_flop_bytes  # one definition of the work formulas

        flop, nbytes = attention_flop_bytes(batch, q_len, kv_len, heads, kv_heads, head_dim, elsize, causal)
    work = np.maximum(np.asarray(flop, dtype=float) / flop_per_s, np.asarray(nbytes, dtype=float) / bytes_per_s)
    eff = 1.0 + half_length / np.asarray(kv_len, dtype=float)
    waves = prefill_waves_factor(batch, heads, q_len, wave_units, block_q) if phase == "prefill" else 1.0
    out = latency_s + work * eff * waves
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
