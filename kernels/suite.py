"""The kernel suite: GEMM, memory, overheads, attention, a layer's eager elementwise ops, the sampler and grouped
expert GEMMs on one device.

    from accelcal.kernels.suite import run_suite, summary_table
    rs = run_suite("cpu", preset="quick", ops=["gemm", "memory"], dtypes=["fp32"])
    print(summary_table(rs))
    rs.write("results/", stem="kernels")   # kernels.csv/.parquet/.json/.env.json

``preset`` is ``quick`` or ``full`` (sized per device class in kernels/shapes.py)
or a :class:`~accelcal.kernels.shapes.SuitePreset` for custom sweeps (tests use
tiny ones).  Progress lines go to ``progress`` (``print`` by default; None for
silence).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from accelcal.results import STATUS_OK, ResultSet
from accelcal.vocab import GROUPED_GEMM_DTYPES
from accelcal.units import fmt_time_s

from .model_shapes import sweep_preset_for
from .shapes import ALL_DTYPES, SuitePreset

__all__ = ["OPS", "parse_list", "run_suite", "summary_table"]

OPS: tuple[str, ...] = ("gemm", "memory", "overhead", "attention", "elementwise", "sampler", "grouped_gemm")
"""Op groups the suite can run, in run order."""


def parse_list(value: str | Sequence[str] | None, choices: Sequence[str], what: str) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` checked against ``choices``; None stays None (meaning all)."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    items = [v for v in items if v]
    if not items:
        raise ValueError(f"{what}: empty list; expected a comma-separated subset of {','.join(choices)}")
    bad = [v for v in items if v not in choices]
    if bad:
        raise ValueError(f"{what}: unknown value(s) {', '.join(map(repr, bad))}; choose from {','.join(choices)}")
    return list(dict.fromkeys(items))


def run_suite(device: Any = None, preset: str | SuitePreset = "quick", ops: str | Sequence[str] | None = None,
              dtypes: str | Sequence[str] | None = None, progress: Callable[[str], Any] | None = print,
              bar: Any = None) -> ResultSet:
    """Run the kernel suite on ``device`` (a spec like ``"cuda:0"``, a Device, or None for the accelerator).

    ``progress`` gets one line per case; ``bar`` (an :class:`accelcal.progress.StageProgress`) shows a bar per op
    group with elapsed time and ETA, or one line per group in a log.
    """
    # Validate the cheap arguments before touching torch or the device.
    op_list = parse_list(ops, OPS, "ops") or list(OPS)
    dtype_list = parse_list(dtypes, ALL_DTYPES, "dtypes")

    from .attention import run_attention
    from .cases import SweepContext
    from .device import Device, resolve_device
    from .dispatch import run_eager_dispatch
    from .elementwise import run_elementwise
    from .environment import capture_environment
    from .gemm import run_gemm
    from .grouped_gemm import run_grouped_gemm
    from .memory import run_memory
    from .overhead import run_overheads
    from .sampler import run_sampler

    dev = device if isinstance(device, Device) else resolve_device(device)
    p = preset if isinstance(preset, SuitePreset) else sweep_preset_for(preset, dev.type)
    env = capture_environment(dev)
    env["suite_preset"] = p.name
    if p.for_models:
        env["for_models"], env["for_tp"] = ",".join(p.for_models), ",".join(str(t) for t in p.for_tp)
    rs = ResultSet(suite="kernels", env=env)
    ctx = SweepContext.create(dev, rs, timing=p.timing, case_budget_s=p.case_budget_s, progress=progress, bar=bar)
    env["cache_bytes"] = ctx.cache_bytes
    gemm_dtypes = [d for d in p.dtypes if dtype_list is None or d in dtype_list]
    if dtype_list is not None:
        # dtypes asked for explicitly but absent from the preset still run (or get a recorded skip).
        gemm_dtypes += [d for d in dtype_list if d not in gemm_dtypes]
    attn_dtypes = [d for d in p.attention_dtypes if dtype_list is None or d in dtype_list]
    ew_dtypes = [d for d in p.elementwise_dtypes if dtype_list is None or d in dtype_list]
    if progress is not None:
        progress(f"kernel suite {p.name} on {dev.spec} ({env.get('device_name')}): ops {','.join(op_list)}; "
                 f"cache {ctx.cache_bytes / 2**20:.0f} MiB, free memory {ctx.free_bytes / 2**30:.1f} GiB")
    t0 = time.perf_counter()
    try:
        for op in OPS:
            if op not in op_list:
                continue
            if op == "gemm":
                run_gemm(ctx, p.gemm_shapes + p.decode_shapes + p.model_shapes, p.ms_for, gemm_dtypes)
            elif op == "memory":
                run_memory(ctx, p.memory_sizes_bytes)
            elif op == "overhead":
                run_overheads(ctx, queue_len=p.overhead_queue_len)
                run_eager_dispatch(ctx)
            elif op == "attention":
                run_attention(ctx, p.attention_cases, attn_dtypes, p.mixed_attention_cases)
            elif op == "elementwise" and p.elementwise_dims is not None:
                run_elementwise(ctx, p.elementwise_dims, p.elementwise_tokens, ew_dtypes)
            elif op == "sampler" and p.sampler_batches:
                run_sampler(ctx, p.sampler_batches, p.sampler_vocab)
            elif op == "grouped_gemm" and p.grouped_cases:
                # the timed dtypes, or those asked for (a dtype without a grouped kernel is a recorded skip)
                run_grouped_gemm(ctx, p.grouped_cases, list(GROUPED_GEMM_DTYPES) if dtype_list is None else dtype_list)
    finally:
        if bar is not None:
            bar.close()
    env["suite_wall_s"] = round(time.perf_counter() - t0, 3)
    return rs


def summary_table(rs: ResultSet) -> str:
    """Per op and dtype: cases run/skipped, fastest device time, best TFLOP/s and GB/s, with units."""
    df = rs.frame()
    if df.empty:
        return "(no results)"
    lines = [f"{'op':<14} {'dtype':<9} {'ok':>4} {'skip':>5} {'min device time':>16} {'best TFLOP/s':>13} {'best GB/s':>10}"]
    for (op, dtype), g in df.groupby(["op", "dtype"], sort=False):
        ok = g[(g["status"] == STATUS_OK) & (g["figure"].isin(["device", "eager"]))]
        dev_rows = ok[ok["figure"] == "device"]
        if dev_rows.empty:
            dev_rows = ok  # overhead ops report eager-only figures
        n_ok = ok["case"].nunique()
        n_skip = int((g["status"] != STATUS_OK).sum())
        tmin = fmt_time_s(float(dev_rows["median_s"].min())) if not dev_rows.empty else "-"
        fl = dev_rows["flop_per_s"].dropna()
        by = dev_rows["bytes_per_s"].dropna()
        tf = f"{fl.max() / 1e12:.3f}" if not fl.empty else "-"
        gb = f"{by.max() / 1e9:.2f}" if not by.empty else "-"
        lines.append(f"{op:<14} {dtype:<9} {n_ok:>4} {n_skip:>5} {tmin:>16} {tf:>13} {gb:>10}")
    wall = rs.env.get("suite_wall_s")
    if wall is not None:
        lines.append(f"suite wall time: {wall:.1f} s")
    return "\n".join(lines)
