"""Attention microbenchmarks: scaled_dot_product_attention with GQA, causal prefill and decode.

    from accelcal.kernels.attention import run_attention
    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.shapes import AttentionCase
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_attention(ctx, [AttentionCase("prefill", 1, 8, 2, 64, 256, 256)], dtypes=("fp32",))
    print(ctx.results.frame()[["op", "case", "figure", "flop_per_s"]])

Rows: ops ``attn_prefill`` (causal, q_len = kv_len) and ``attn_decode``
(q_len = 1 over kv_len, not causal); params ``batch, heads, kv_heads, head_dim,
q_len, kv_len, causal`` plus ``gqa`` (``native`` when SDPA takes
``enable_gqa=True``, else ``repeat_interleave``: K/V expanded inside the timed
call, which a real kernel without GQA support would also pay).

FLOP: QK^T and PV are each 2·B·H·q_len·kv_len·head_dim; causal masking halves
both (the FlashAttention benchmark convention), so
``flop = 4·B·H·q·kv·d`` (÷2 when causal).  Bytes: Q and O (B·H·q·d each) plus K
and V (B·kv_heads·kv·d each), times the element size.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from accelcal.vocab import attention_flop_bytes

from .cases import TORCH_DTYPES, SweepContext, element_bytes
from .device import Device
from .shapes import AttentionCase

__all__ = ["attention_bytes", "attention_flop", "gqa_mode", "make_attention_run", "run_attention"]


def attention_flop(c: AttentionCase) -> int:
    """4·B·H·q·kv·d (two matmuls of 2·q·kv·d per head); halved when causal."""
    full = 4 * c.batch * c.heads * c.q_len * c.kv_len * c.head_dim
    return full // 2 if c.causal else full


def attention_bytes(c: AttentionCase, dtype: str) -> int:
    """Q + K + V + O read/written once, in ``dtype``."""
    _, nbytes = attention_flop_bytes(c.batch, c.q_len, c.kv_len, c.heads, c.kv_heads, c.head_dim,
                                     element_bytes(dtype), c.causal)
    return int(nbytes)


_GQA_CACHE: dict[str, str] = {}


def gqa_mode(device: Device) -> str:
    """``native`` when this torch's SDPA accepts ``enable_gqa=True`` on ``device``, else ``repeat_interleave``."""
    if device.spec not in _GQA_CACHE:
        q = torch.randn(1, 4, 2, 8, device=device.torch)
        kv = torch.randn(1, 2, 2, 8, device=device.torch)
        try:
            F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)
            _GQA_CACHE[device.spec] = "native"
        except (TypeError, RuntimeError):
            _GQA_CACHE[device.spec] = "repeat_interleave"
    return _GQA_CACHE[device.spec]


def make_attention_run(device: Device, c: AttentionCase, dtype: str, sets: int, gqa: str) -> Callable[[int], object]:
    """Allocate ``sets`` random (Q, K, V) sets; ``run(i)`` is one SDPA call on set ``i % sets``."""
    if c.heads % c.kv_heads:
        raise ValueError(f"{c.name}: heads ({c.heads}) must be a multiple of kv_heads ({c.kv_heads})")
    tdt = TORCH_DTYPES[dtype]
    qkv = [(torch.randn(c.batch, c.heads, c.q_len, c.head_dim, dtype=tdt, device=device.torch),
            torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim, dtype=tdt, device=device.torch),
            torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim, dtype=tdt, device=device.torch))
           for _ in range(sets)]
    group = c.heads // c.kv_heads
    causal = c.causal

    if gqa == "native" or group == 1:
        def run(i: int) -> object:
            q, k, v = qkv[i % sets]
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=group > 1)
    else:
        def run(i: int) -> object:
            q, k, v = qkv[i % sets]
            return F.scaled_dot_product_attention(q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1),
                                                  is_causal=causal)
    return run


def _params(c: AttentionCase, gqa: str) -> dict[str, object]:
    return {"batch": c.batch, "heads": c.heads, "kv_heads": c.kv_heads, "head_dim": c.head_dim,
            "q_len": c.q_len, "kv_len": c.kv_len, "causal": c.causal, "gqa": gqa}


def run_attention(ctx: SweepContext, cases: Sequence[AttentionCase], dtypes: Sequence[str]) -> None:
    """Measure every (dtype, case); rows and skips go to ``ctx.results``."""
    for c in cases:
        if c.phase not in ("prefill", "decode"):
            raise ValueError(f"attention case phase must be 'prefill' or 'decode', got {c.phase!r}")
    work = [(d, c) for d in dtypes for c in cases]
    ctx.plan("attention", len(work))
    if not work:
        return
    gqa = gqa_mode(ctx.device)
    for dtype, c in work:
        op = f"attn_{c.phase}"
        params = _params(c, gqa)
        case = f"{c.name}_{dtype}"
        ctx.step("attention", f"{dtype} {c.phase} b={c.batch} h={c.heads}/{c.kv_heads} d={c.head_dim} q={c.q_len} kv={c.kv_len}")
        if dtype not in ("fp32", "bf16", "fp16"):
            ctx.skip(op, case, params, dtype, f"attention is measured in fp32/bf16/fp16 only, not {dtype}")
            continue
        # One set plus the (B, H, q, kv) score matrix a non-fused fallback may materialise in fp32.
        set_b = attention_bytes(c, dtype) + 4 * c.batch * c.heads * c.q_len * c.kv_len
        sets, why = ctx.fit_sets(set_b)
        if not sets:
            ctx.skip(op, case, params, dtype, why)
            continue
        ctx.measure(op, case, params, dtype, lambda: make_attention_run(ctx.device, c, dtype, sets, gqa),
                    flop=attention_flop(c), bytes_moved=attention_bytes(c, dtype))
