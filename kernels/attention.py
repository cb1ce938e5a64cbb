"""Attention microbenchmarks: scaled_dot_product_attention with GQA, causal prefill and decode.

    from accelcal.kernels.attention import run_attention
    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.shapes import AttentionCase
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_attention(ctx, [AttentionCase("prefill", 1, 8, 2, 64, 256, 256)], dtypes=("fp32",))
    print(ctx.results.frame()[["op", "case", "figure", "flop_per_s"]])

Rows: ops ``attn_prefill`` (causal; q_len = kv_len, or a chunk of q_len new
tokens after kv_len - q_len cached ones with the mask aligned to the last query,
``torch.nn.attention.bias.causal_lower_right``), ``attn_decode`` (q_len = 1 over
kv_len, not causal) and ``attn_mixed`` (a decode batch and a prefill chunk
issued back to back: one continuous-batching step's attention; params of both
parts, ``chunk_``-prefixed for the chunk); params ``batch, heads, kv_heads,
head_dim, q_len, kv_len, causal`` plus ``gqa`` (``native`` when SDPA takes
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

from .cases import TORCH_DTYPES, SweepContext, element_bytes, replicas
from .device import Device
from .shapes import AttentionCase, MixedAttentionCase

__all__ = ["CHUNK_MASKS", "SDPA_DTYPES", "attention_bytes", "attention_flop", "chunk_mask_for", "gqa_mode", "make_attention_run", "run_attention",
           "run_mixed_attention", "set_bytes"]


def attention_flop(c: AttentionCase) -> int:
    """4·B·H·d per attended (query, key) pair: q·kv pairs, less the masked triangle when causal."""
    flop, _ = attention_flop_bytes(c.batch, c.q_len, c.kv_len, c.heads, c.kv_heads, c.head_dim, 1, c.causal)
    return int(flop)


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


CHUNK_MASKS = ("lower_right_bias", "bool_mask")
"""How a chunk's lower-right causal mask reaches SDPA: ``torch.nn.attention.bias.causal_lower_right`` (which
calls one fused kernel directly) or an explicit boolean (q_len, kv_len) mask through SDPA's own dispatch.
The same arithmetic; torch picks different kernels for them (benchmarks/attention_backends.py shows which)."""

_CHUNK_MASK_CACHE: dict[tuple, str] = {}


def chunk_mask_for(device: Device, c: AttentionCase, dtype: str, gqa: str) -> str:
    """The faster of :data:`CHUNK_MASKS` for this chunk on ``device`` (a few timed calls each): an engine runs
    the fastest exact kernel it has, so the sweep times that one and records which it was."""
    key = (device.spec, c.heads, c.kv_heads, c.head_dim, c.batch, c.q_len, c.kv_len, dtype, gqa)
    if key not in _CHUNK_MASK_CACHE:
        from .timing import TimingConfig, time_op

        brief = TimingConfig(warmup_s=0.005, budget_s=0.02, min_reps=3, max_reps=10, queue_len=2)
        best = None
        for mask in CHUNK_MASKS:
            try:
                t = time_op(make_attention_run(device, c, dtype, 1, gqa, mask), device, brief).device.median_s
            except RuntimeError:
                continue
            if best is None or t < best[0]:
                best = (t, mask)
        _CHUNK_MASK_CACHE[key] = best[1] if best else CHUNK_MASKS[0]
    return _CHUNK_MASK_CACHE[key]


def make_attention_run(device: Device, c: AttentionCase, dtype: str, sets: int, gqa: str,
                       chunk_mask: str = "lower_right_bias") -> Callable[[int], object]:
    """Allocate ``sets`` random (Q, K, V) sets; ``run(i)`` is one SDPA call on set ``i % sets`` (a chunk's mask
    passed as ``chunk_mask``, one of :data:`CHUNK_MASKS`)."""
    if c.heads % c.kv_heads:
        raise ValueError(f"{c.name}: heads ({c.heads}) must be a multiple of kv_heads ({c.kv_heads})")
    tdt = TORCH_DTYPES[dtype]
    qkv = replicas((torch.randn(c.batch, c.heads, c.q_len, c.head_dim, dtype=tdt, device=device.torch),
                    torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim, dtype=tdt, device=device.torch),
                    torch.randn(c.batch, c.kv_heads, c.kv_len, c.head_dim, dtype=tdt, device=device.torch)), sets)
    group = c.heads // c.kv_heads
    # is_causal aligns the mask to the first query; a chunk after cached tokens needs it aligned to the last.
    kw: dict = {"is_causal": True} if c.causal and c.q_len == c.kv_len else {}
    if c.causal and c.q_len < c.kv_len:
        if chunk_mask not in CHUNK_MASKS:
            raise ValueError(f"chunk_mask must be one of {CHUNK_MASKS}, got {chunk_mask!r}")
        if chunk_mask == "bool_mask":
            mask = torch.ones(c.q_len, c.kv_len, dtype=torch.bool, device=device.torch).tril(diagonal=c.kv_len - c.q_len)
            kw = {"attn_mask": mask}
        else:
            from torch.nn.attention.bias import causal_lower_right

            kw = {"attn_mask": causal_lower_right(c.q_len, c.kv_len)}

    def native(i: int) -> object:
        q, k, v = qkv[i % sets]
        return F.scaled_dot_product_attention(q, k, v, enable_gqa=group > 1, **kw)

    def expanded(i: int) -> object:
        q, k, v = qkv[i % sets]
        return F.scaled_dot_product_attention(q, k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1), **kw)

    if group == 1 or gqa != "native":
        return expanded if group > 1 else native
    if "attn_mask" in kw:
        # A chunk's mask can route to a kernel that rejects GQA heads; expanding K/V is what a kernel
        # without GQA support pays.
        try:
            native(0)
        except RuntimeError:
            return expanded
    return native


def _params(c: AttentionCase, gqa: str, chunk_mask: str | None = None) -> dict[str, object]:
    out = {"batch": c.batch, "heads": c.heads, "kv_heads": c.kv_heads, "head_dim": c.head_dim,
           "q_len": c.q_len, "kv_len": c.kv_len, "causal": c.causal, "gqa": gqa}
    if chunk_mask is not None:
        out["chunk_mask"] = chunk_mask
    return out


def _is_chunk(c: AttentionCase) -> bool:
    return c.causal and c.q_len < c.kv_len


def set_bytes(c: AttentionCase, dtype: str) -> int:
    """One (Q, K, V) set plus the (B, H, q, kv) score matrix a non-fused fallback may materialise in fp32."""
    return attention_bytes(c, dtype) + 4 * c.batch * c.heads * c.q_len * c.kv_len


SDPA_DTYPES = ("fp32", "bf16", "fp16")
"""dtypes attention is measured in (what scaled_dot_product_attention runs; other dtypes are skipped)."""


def _chunk_mask(ctx: SweepContext, c: AttentionCase, dtype: str, gqa: str) -> str | None:
    """The :data:`CHUNK_MASKS` variant timed for ``c``; None when ``c`` is not a chunk or ``dtype`` is not measured."""
    return chunk_mask_for(ctx.device, c, dtype, gqa) if _is_chunk(c) and dtype in SDPA_DTYPES else None


def _sets_or_skip(ctx: SweepContext, op: str, case: str, params: dict, dtype: str, nbytes: int) -> int:
    """Buffer sets that fit in memory, or 0 once the skip and its reason are recorded."""
    if dtype not in SDPA_DTYPES:
        ctx.skip(op, case, params, dtype, f"attention is measured in {'/'.join(SDPA_DTYPES)} only, not {dtype}")
        return 0
    sets, why = ctx.fit_sets(nbytes)
    if not sets:
        ctx.skip(op, case, params, dtype, why)
    return sets


def run_attention(ctx: SweepContext, cases: Sequence[AttentionCase], dtypes: Sequence[str],
                  mixed: Sequence[MixedAttentionCase] = ()) -> None:
    """Measure every (dtype, case), then every (dtype, mixed case); rows and skips go to ``ctx.results``."""
    work = [(d, c) for d in dtypes for c in cases]
    ctx.plan("attention", len(work) + len(dtypes) * len(mixed))
    if not work and not mixed:
        return
    gqa = gqa_mode(ctx.device)
    for dtype, c in work:
        op = f"attn_{c.phase}"
        mask = _chunk_mask(ctx, c, dtype, gqa)
        params = _params(c, gqa, mask)
        case = f"{c.name}_{dtype}"
        ctx.step("attention", f"{dtype} {c.phase} b={c.batch} h={c.heads}/{c.kv_heads} d={c.head_dim} q={c.q_len} kv={c.kv_len}")
        sets = _sets_or_skip(ctx, op, case, params, dtype, set_bytes(c, dtype))
        if not sets:
            continue
        ctx.measure(op, case, params, dtype, lambda: make_attention_run(ctx.device, c, dtype, sets, gqa, mask or CHUNK_MASKS[0]),
                    flop=attention_flop(c), bytes_moved=attention_bytes(c, dtype))
    run_mixed_attention(ctx, mixed, dtypes, gqa)


def run_mixed_attention(ctx: SweepContext, cases: Sequence[MixedAttentionCase], dtypes: Sequence[str],
                        gqa: str | None = None) -> None:
    """Time each mixed case's decode part and chunk back to back as one call (op ``attn_mixed``)."""
    if not cases:
        return
    gqa = gqa or gqa_mode(ctx.device)
    for dtype in dtypes:
        for m in cases:
            d, c = m.decode, m.chunk
            mask = _chunk_mask(ctx, c, dtype, gqa)
            params = {**_params(d, gqa), **{f"chunk_{k}": v for k, v in _params(c, gqa).items()
                                            if k in ("batch", "q_len", "kv_len", "causal")}}
            if mask is not None:
                params["chunk_mask"] = mask
            case = f"{m.name}_{dtype}"
            ctx.step("attention", f"{dtype} mixed h={d.heads}/{d.kv_heads} decode b={d.batch} kv={d.kv_len} + "
                                  f"chunk q={c.q_len} kv={c.kv_len}")
            sets = _sets_or_skip(ctx, "attn_mixed", case, params, dtype, set_bytes(d, dtype) + set_bytes(c, dtype))
            if not sets:
                continue

            def make(d=d, c=c, sets=sets, dtype=dtype, mask=mask):
                run_d = make_attention_run(ctx.device, d, dtype, sets, gqa)
                run_c = make_attention_run(ctx.device, c, dtype, sets, gqa, mask or CHUNK_MASKS[0])

                def run(i: int) -> object:
                    run_d(i)
                    return run_c(i)
                return run
            ctx.measure("attn_mixed", case, params, dtype, make, flop=attention_flop(d) + attention_flop(c),
                        bytes_moved=attention_bytes(d, dtype) + attention_bytes(c, dtype))
