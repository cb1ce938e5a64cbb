"""The eager elementwise ops of a decoder layer, and their microbenchmarks.

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.elementwise import run_elementwise
    from accelcal.kernels.shapes import MODELS
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_elementwise(ctx, MODELS["llama3-8b"], tokens=(1, 16, 64), dtypes=("fp32",))
    print(ctx.results.frame()[["case", "figure", "median_s", "bytes_per_s"]])

The ops are written once, here, and used both by the validation layers
(validate/layers.py) and by the suite, so what the planner's ``torch-eager``
implementation costs is what was timed: RMSNorm in fp32 (upcast, normalise,
scale, cast back), rotate-half RoPE on the Q and K views of the fused QKV
output, SiLU(gate) x up on the two halves of the fused gate/up output, and the
residual add.  These run slower per byte than a plain copy: bf16 kernels on
strided views (the QKV and gate/up halves, transposed heads) do not vectorise,
and an H200 moved 1.7-1.9 TB/s through rope and SiLU-mul against 4.2 TB/s for
the copy pattern (accelcal's own breakdown, 2026-11-26).

Rows: op ``elementwise``; params ``group`` (norm, residual_add, rope,
act_mul), ``tokens`` and ``elements`` (the tensor the group works on: tokens
x hidden, tokens x (heads + kv_heads) x head_dim, tokens x ffn); bytes are the
torch-eager implementation's traffic model for that group and dtype
(``models.implementation.ElementwiseGroup.bytes_per_element``), so the fitted
bandwidth is the one the planner's formula needs.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from accelcal.models import ModelDims
from accelcal.models.implementation import Implementation
from accelcal.vocab import ELEMENTWISE_GROUPS

from .cases import TORCH_DTYPES, SweepContext, element_bytes, replicas

__all__ = ["ELEMENTWISE_GROUPS", "apply_rope", "elementwise_elements", "make_elementwise_run", "rms_norm",
           "rope_tables", "run_elementwise", "silu_mul"]


NORM_EPS = 1e-5
ROPE_THETA = 500000.0


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Normalise in fp32 as real inference stacks do, then cast back.
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * weight.float()).to(x.dtype)


def rope_tables(head_dim: int, end: int, theta: float, device: object) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, [end, head_dim], for positions 0..end-1 (rotate-half layout: frequency i at i and i + d/2)."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ang = torch.outer(torch.arange(end, dtype=torch.float32), inv)
    ang = torch.cat([ang, ang], dim=-1).to(device)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [b, heads, s, d]; cos/sin: [s, d] for the tokens' positions."""
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rot * sin).to(x.dtype)


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """SwiGLU's activation on the fused gate/up projection output: silu(gate) x up."""
    g, u = gate_up.chunk(2, dim=-1)
    return F.silu(g) * u


def elementwise_elements(group: str, dims: ModelDims, tokens: int) -> int:
    """Elements of the tensor ``group`` works on for ``tokens`` tokens (the planner DAG's unit)."""
    if group in ("norm", "residual_add"):
        return tokens * dims.hidden
    if group == "rope":
        return tokens * (dims.heads + dims.kv_heads) * dims.head_dim
    if group == "act_mul":
        return tokens * dims.intermediate
    raise ValueError(f"unknown elementwise group {group!r}; expected one of {list(ELEMENTWISE_GROUPS)}")


def make_elementwise_run(device: object, group: str, dims: ModelDims, tokens: int, dtype: str,
                         sets: int) -> Callable[[int], object]:
    """Allocate ``sets`` input sets shaped as a layer has them and return ``run(i)`` for set ``i % sets``."""
    if sets < 1:
        raise ValueError(f"sets must be >= 1, got {sets}")
    dt, dev = TORCH_DTYPES[dtype], getattr(device, "torch", device)
    h, d = dims.hidden, dims.head_dim

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=dev, dtype=dt)

    if group == "norm":
        w = 1.0 + 0.1 * rnd(h)
        xs = replicas(rnd(tokens, h), sets)
        return lambda i: rms_norm(xs[i % sets], w, NORM_EPS)
    if group == "residual_add":
        pairs = replicas((rnd(tokens, h), rnd(tokens, h)), sets)
        return lambda i: pairs[i % sets][0] + pairs[i % sets][1]
    if group == "rope":
        cos, sin = (t.to(dt) for t in rope_tables(d, tokens, ROPE_THETA, dev))
        qkvs = replicas(rnd(1, tokens, (dims.heads + 2 * dims.kv_heads) * d), sets)

        def rope(i: int) -> object:
            # Q and K as the layer has them: head-transposed views of the fused QKV output.
            qkv = qkvs[i % sets]
            q = qkv[..., :dims.heads * d].view(1, tokens, dims.heads, d).transpose(1, 2)
            k = qkv[..., dims.heads * d:(dims.heads + dims.kv_heads) * d].view(1, tokens, dims.kv_heads, d).transpose(1, 2)
            return apply_rope(q, cos, sin), apply_rope(k, cos, sin)

        return rope
    if group == "act_mul":
        gus = replicas(rnd(tokens, 2 * dims.intermediate), sets)
        return lambda i: silu_mul(gus[i % sets])
    raise ValueError(f"unknown elementwise group {group!r}; expected one of {list(ELEMENTWISE_GROUPS)}")


def run_elementwise(ctx: SweepContext, dims: ModelDims, tokens: Sequence[int], dtypes: Sequence[str],
                    groups: Sequence[str] = ELEMENTWISE_GROUPS) -> None:
    """Measure every (dtype, group, tokens); rows and skips go to ``ctx.results``."""
    for g in groups:
        if g not in ELEMENTWISE_GROUPS:
            raise ValueError(f"unknown elementwise group {g!r}; expected one of {list(ELEMENTWISE_GROUPS)}")
    if any(t < 1 for t in tokens):
        raise ValueError(f"tokens must all be >= 1, got {list(tokens)}")
    impl = Implementation.from_name("torch-eager")
    work = [(dt, g, t) for dt in dtypes for g in groups for t in tokens]
    ctx.plan("elementwise", len(work))
    for dtype, group, t in work:
        elems = elementwise_elements(group, dims, t)
        params = {"group": group, "tokens": t, "elements": elems, "model": dims.name}
        case = f"{group}_t{t}_{dtype}"
        ctx.step("elementwise", f"{dtype} {group} tokens={t} ({dims.name})")
        if dtype not in ("fp32", "bf16", "fp16"):
            ctx.skip("elementwise", case, params, dtype, f"elementwise groups run in fp32/bf16/fp16 only, not {dtype}")
            continue
        nbytes = getattr(impl, group).bytes_per_element(element_bytes(dtype)) * elems
        sets, why = ctx.fit_sets(int(nbytes))
        if not sets:
            ctx.skip("elementwise", case, params, dtype, why)
            continue
        ctx.measure("elementwise", case, params, dtype,
                    lambda: make_elementwise_run(ctx.device, group, dims, t, dtype, sets), flop=None, bytes_moved=nbytes)
