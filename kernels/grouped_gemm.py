"""Grouped expert GEMMs: one kernel over ``experts`` GEMMs of ``m`` tokens each, as a MoE layer runs them.

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.grouped_gemm import run_grouped_gemm
    from accelcal.kernels.shapes import grouped_cases
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_grouped_gemm(ctx, grouped_cases(("qwen3-30b-a3b",), (8,), (1, 16), divisor=4))
    print(ctx.results.frame()[["case", "figure", "median_s", "flop_per_s"]])

A serving engine runs a MoE layer's experts as one grouped kernel (vLLM's and SGLang's fused_moe, TensorRT-LLM's
MoE GEMM); the planner costs it as one GEMM with the experts' weights stacked along N (planner/cost.py), which
is as efficient as a dense GEMM of that size.  This times the real thing, ``torch._grouped_mm`` (CUTLASS grouped
GEMM on Hopper and Blackwell; on a CPU a per-expert loop, which is what torch has there; other GPUs loop as well
and record a skip), on a model's expert shapes, so the profile can say how far a grouped kernel falls short of
that (calibrate/profile ComputeEntry.grouped_points).

Rows: op ``grouped_gemm``; dtype ``bf16`` (accelcal.vocab.GROUPED_GEMM_DTYPES; other dtypes are recorded skips);
params ``experts``, ``m`` (tokens per expert), ``n``, ``k``, ``shape``; flop = experts x 2mnk; bytes = experts x
((mk + kn) + mn) x 2, each expert's activations, weight and output once (accelcal.vocab.gemm_bytes).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from accelcal.vocab import GROUPED_GEMM_DTYPES, gemm_bytes, gemm_flop

from .cases import TORCH_DTYPES, SweepContext, calls_per_case, replicas
from .shapes import GroupedGemmCase

__all__ = ["GROUPED_GEMM_DTYPES", "loop_fallback_reason", "make_grouped_run", "run_grouped_gemm"]

GROUPED_KERNEL_CAPABILITIES: tuple[int, ...] = (9, 10)
"""CUDA compute capability majors on which torch._grouped_mm runs one grouped kernel (CUTLASS, Hopper and
Blackwell); elsewhere it loops over per-expert matmuls (pytorch PRs 161407, 161717), which is not the kernel a
serving engine runs."""


def loop_fallback_reason(device: object) -> str:
    """Why a grouped GEMM measured on ``device`` would not be a grouped kernel: "" on Hopper/Blackwell GPUs (one
    CUTLASS kernel) and on a CPU (torch's per-expert loop is all a CPU has, so that is what is measured)."""
    dev = getattr(device, "torch", device)
    kind = getattr(dev, "type", str(dev))
    if kind != "cuda":
        return ""
    if getattr(torch.version, "hip", None):
        return "on ROCm torch._grouped_mm loops over per-expert matmuls: not a grouped kernel"
    major = torch.cuda.get_device_capability(dev)[0]
    if major not in GROUPED_KERNEL_CAPABILITIES:
        return (f"on compute capability {major}.x torch._grouped_mm loops over per-expert matmuls (a grouped kernel "
                f"only on {list(GROUPED_KERNEL_CAPABILITIES)}.x): not what a serving engine's MoE kernel does")
    return ""


def make_grouped_run(device: object, case: GroupedGemmCase, sets: int) -> Callable[[int], object]:
    """Allocate ``sets`` (tokens, weights) pairs and return ``run(i)`` computing set ``i % sets``: the tokens
    [experts x m, K] in expert order, the weights stored as ``nn.Linear`` stores them ([experts, N, K]) and passed
    transposed, as the engines' grouped kernels read them."""
    if sets < 1:
        raise ValueError(f"sets must be >= 1, got {sets}")
    dev = getattr(device, "torch", device)
    e, m, n, k = case.experts, case.m, case.shape.n, case.shape.k
    dt = TORCH_DTYPES["bf16"]
    pairs = replicas((torch.randn(e * m, k, dtype=dt, device=dev), torch.randn(e, n, k, dtype=dt, device=dev)), sets)
    offs = torch.arange(1, e + 1, dtype=torch.int32, device=dev) * m  # each expert's end row

    def run(i: int) -> object:
        x, w = pairs[i % sets]
        return torch._grouped_mm(x, w.transpose(-2, -1), offs=offs)

    return run


def _bytes(case: GroupedGemmCase, dtype: str) -> float:
    return case.experts * gemm_bytes(case.m, case.shape.n, case.shape.k, dtype)


def run_grouped_gemm(ctx: SweepContext, cases: Sequence[GroupedGemmCase],
                     dtypes: Sequence[str] = GROUPED_GEMM_DTYPES) -> None:
    """Measure every (dtype, case); rows and skips go to ``ctx.results`` (a dtype torch has no grouped kernel for,
    a GPU where it loops, or a case over the per-case time budget at the device's probed bf16 GEMM rate: skips)."""
    from .gemm import probe_gemm_rate

    work = [(d, c) for d in dtypes for c in cases]
    ctx.plan("grouped_gemm", len(work))
    loop = loop_fallback_reason(ctx.device)
    rate: float | None = None
    for dtype, c in work:
        n, k = c.shape.n, c.shape.k
        params = {"experts": c.experts, "m": c.m, "n": n, "k": k, "shape": c.shape.name}
        case = f"{c.shape.name}_e{c.experts}_m{c.m}_{dtype}"
        ctx.step("grouped_gemm", f"{dtype} {c.experts} experts x m={c.m} n={n} k={k} {c.shape.name}")
        if dtype not in GROUPED_GEMM_DTYPES:
            ctx.skip("grouped_gemm", case, params, dtype,
                     f"{dtype}: grouped GEMMs are timed in {list(GROUPED_GEMM_DTYPES)} only (torch._grouped_mm)")
            continue
        if not hasattr(torch, "_grouped_mm"):
            ctx.skip("grouped_gemm", case, params, dtype, f"this torch {torch.__version__} has no torch._grouped_mm")
            continue
        if loop:
            ctx.skip("grouped_gemm", case, params, dtype, loop)
            continue
        flop = c.experts * gemm_flop(c.m, n, k)
        if rate is None:
            rate = probe_gemm_rate(ctx.device, dtype)
        est_s = calls_per_case(ctx.cfg) * flop / rate
        if est_s > ctx.case_budget_s:
            ctx.skip("grouped_gemm", case, params, dtype,
                     f"estimated {est_s:.2f} s = {calls_per_case(ctx.cfg)} calls x {flop:.3g} flop / {rate:.3g} "
                     f"flop/s (probe) > per-case budget {ctx.case_budget_s:g} s")
            continue
        nbytes = _bytes(c, dtype)
        sets, why = ctx.fit_sets(int(nbytes))
        if not sets:
            ctx.skip("grouped_gemm", case, params, dtype, why)
            continue
        ctx.measure("grouped_gemm", case, params, dtype, lambda: make_grouped_run(ctx.device, c, sets),
                    flop=flop, bytes_moved=nbytes)
