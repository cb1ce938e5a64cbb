"""GEMM microbenchmarks: y = x @ W.T over model projection shapes and an M sweep, per dtype.

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.gemm import run_gemm
    from accelcal.kernels.shapes import GemmShape
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_gemm(ctx, [GemmShape("square256", 256, 256)], ms=(1, 16, 17), dtypes=("fp32", "bf16"))
    print(ctx.results.frame()[["case", "figure", "median_s", "flop_per_s"]])

Rows (docs/ARCHITECTURE.md): op ``gemm``; params ``m, n, k, shape, weight_bytes``;
flop = 2mnk; bytes = (mk + kn)·elsize + mn·out_elsize (the output is bf16 for
fp8, the input size otherwise), both from :mod:`accelcal.vocab`.

dtypes: ``fp32`` (tf32 explicitly off), ``tf32`` (CUDA only: the matmul mode is
switched on for those cases and restored), ``bf16``, ``fp16``, ``fp8_e4m3``
(``torch._scaled_mm``, probed).  A dtype the device cannot run, a case that does
not fit in free memory or runs out of it, and a case whose estimated measuring
time exceeds the preset's per-case budget are each recorded as a skip with the
reason; the sweep goes on.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator, Sequence

import torch

from accelcal.vocab import ALL_DTYPES, gemm_bytes, gemm_flop

from .cases import TORCH_DTYPES, SweepContext, calls_per_case, element_bytes, replicas
from .device import Device
from .shapes import GemmShape

__all__ = ["gemm_bytes", "gemm_flop", "make_gemm_run", "matmul_mode", "probe_gemm_rate", "run_gemm", "unsupported_reason"]

PROBE_SIZES = (128, 512, 2048)
"""Square sizes tried (smallest first) to estimate a dtype's speed before the sweep."""
PROBE_CALLS = 3
"""Timed calls per probe size; the fastest counts."""
PROBE_MAX_CALL_S = 0.05
"""Stop probing before a call expected to take longer than this (slow dtypes on CPUs)."""


def unsupported_reason(device: Device, dtype: str) -> str:
    """Why ``dtype`` cannot run on ``device`` without trying ("" when it may)."""
    if dtype not in ALL_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(ALL_DTYPES)}")
    if dtype == "tf32" and device.type != "cuda":
        return (f"tf32 is a CUDA matmul mode (torch.backends.cuda.matmul.allow_tf32); "
                f"device {device.spec} has no tf32 path")
    if dtype == "fp8_e4m3" and not hasattr(torch, "_scaled_mm"):
        return f"this torch {torch.__version__} has no torch._scaled_mm"
    return ""


@contextlib.contextmanager
def matmul_mode(dtype: str) -> Iterator[None]:
    """tf32 on for ``tf32`` cases, off for ``fp32`` cases (so fp32 really is fp32); restored afterwards."""
    if dtype not in ("fp32", "tf32"):
        yield
        return
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


def _random(shape: tuple[int, int], dtype: str, device: Device) -> torch.Tensor:
    # Random, never zeros or constants (they run faster on some hardware).
    if dtype == "fp8_e4m3":
        return torch.randn(shape, dtype=torch.bfloat16, device=device.torch).to(torch.float8_e4m3fn)
    return torch.randn(shape, dtype=TORCH_DTYPES[dtype], device=device.torch)


def set_bytes(m: int, n: int, k: int, dtype: str) -> int:
    """Memory for one input set (x, W, y); fp8 also needs a bf16 staging copy while it is made."""
    staging = 2 * max(m * k, n * k) if dtype == "fp8_e4m3" else 0
    return gemm_bytes(m, n, k, dtype) + staging


def make_gemm_run(device: Device, dtype: str, m: int, n: int, k: int, sets: int) -> Callable[[int], object]:
    """Allocate ``sets`` random (x, W, y) sets and return ``run(i)`` computing set ``i % sets``."""
    if sets < 1:
        raise ValueError(f"sets must be >= 1, got {sets}")
    if dtype == "fp8_e4m3":
        one = torch.ones((), dtype=torch.float32, device=device.torch)
        pairs = replicas((_random((m, k), dtype, device), _random((n, k), dtype, device)), sets)

        def run_fp8(i: int) -> object:
            x, w = pairs[i % sets]
            # W.T of a row-major (n, k) weight is the column-major operand _scaled_mm wants.
            return torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

        return run_fp8
    triples = replicas((_random((m, k), dtype, device), _random((n, k), dtype, device),
                        torch.empty((m, n), dtype=TORCH_DTYPES[dtype], device=device.torch)), sets)

    def run(i: int) -> object:
        x, w, y = triples[i % sets]
        return torch.mm(x, w.t(), out=y)

    return run


def probe_gemm_rate(device: Device, dtype: str) -> float:
    """Rough FLOP/s of ``dtype`` on ``device`` from a few square GEMMs (raises if it cannot run).

    Small probes underestimate large-GEMM speed, so estimates made from this
    err towards skipping; the point is to avoid minute-long cases on slow paths
    (fp16 on CPUs), not to measure.  The sweep raises the figure to the best
    rate it has measured so far for the dtype.
    """
    best = 0.0
    with matmul_mode(dtype):
        for s in PROBE_SIZES:
            if best > 0 and gemm_flop(s, s, s) / best > PROBE_MAX_CALL_S:
                break
            run = make_gemm_run(device, dtype, s, s, s, 1)
            run(0)
            device.synchronize()
            for _ in range(PROBE_CALLS):
                # Best of a few: one call on a shared machine can stall for a whole time slice.
                t0 = time.perf_counter()
                run(0)
                device.synchronize()
                dt = max(time.perf_counter() - t0, 1e-9)
                best = max(best, gemm_flop(s, s, s) / dt)
            del run
    return best


def _params(shape: GemmShape, m: int, dtype: str) -> dict[str, object]:
    return {"m": m, "n": shape.n, "k": shape.k, "shape": shape.name,
            "weight_bytes": shape.n * shape.k * element_bytes(dtype)}


def run_gemm(ctx: SweepContext, shapes: Sequence[GemmShape],
             ms: Sequence[int] | Callable[[GemmShape, str], Sequence[int]], dtypes: Sequence[str]) -> None:
    """Sweep every (dtype, shape, m); rows and skips go to ``ctx.results``.

    ``ms`` is the M list, or ``ms(shape, dtype)`` returning it (SuitePreset.ms_for).
    """
    ms_for = ms if callable(ms) else (lambda _s, _d: ms)
    cases = [(d, s, m) for d in dtypes for s in shapes for m in ms_for(s, d)]
    ctx.plan("gemm", len(cases))
    rates: dict[str, float | str] = {}
    for dtype, shape, m in cases:
        n, k = shape.n, shape.k
        params = _params(shape, m, dtype)
        case = f"{shape.name}_m{m}_n{n}_k{k}_{dtype}"
        ctx.step("gemm", f"{dtype} m={m} n={n} k={k} {shape.name}")
        if dtype not in rates:
            reason = unsupported_reason(ctx.device, dtype)
            if not reason:
                try:
                    rates[dtype] = probe_gemm_rate(ctx.device, dtype)
                except (RuntimeError, NotImplementedError) as exc:
                    reason = f"{dtype} GEMM does not run on {ctx.device.spec}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            if reason:
                rates[dtype] = reason
        rate = rates[dtype]
        if isinstance(rate, str):
            ctx.skip("gemm", case, params, dtype, rate)
            continue
        flop = gemm_flop(m, n, k)
        calls = calls_per_case(ctx.cfg)
        est_s = calls * flop / rate
        if est_s > ctx.case_budget_s:
            ctx.skip("gemm", case, params, dtype,
                     f"estimated {est_s:.2f} s = {calls} calls x {flop:.3g} flop / {rate:.3g} flop/s (probe) "
                     f"> per-case budget {ctx.case_budget_s:g} s")
            continue
        sets, why = ctx.fit_sets(set_bytes(m, n, k, dtype))
        if not sets:
            ctx.skip("gemm", case, params, dtype, why)
            continue
        with matmul_mode(dtype):
            rows = ctx.measure("gemm", case, params, dtype, lambda: make_gemm_run(ctx.device, dtype, m, n, k, sets),
                               flop=flop, bytes_moved=gemm_bytes(m, n, k, dtype))
        for row in rows:
            # Weight-read bandwidth: what small-M (decode) GEMMs are limited by.
            row["weight_bytes_per_s"] = params["weight_bytes"] / row["median_s"] if row["median_s"] else None
            if row["figure"] == "device" and row["flop_per_s"]:
                rates[dtype] = max(rate, row["flop_per_s"])
