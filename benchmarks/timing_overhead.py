"""Harness overhead: the timing core's device time vs a plain hand-written torch loop, same op, same run.

    $ python benchmarks/timing_overhead.py               # default accelerator, else cpu
    $ python benchmarks/timing_overhead.py --device cpu --rounds 3

For a GEMM (bf16 8192^3 on accelerators, fp32 1024^3 on the CPU) and a copy of
1 GiB (256 MiB when less than 8 GiB is free), it measures the op through
``kernels.timing.time_op`` (device figure) and through a plain loop (synchronise,
start a clock or event, N back-to-back calls on the same rotated buffers,
synchronise, stop), alternating the two ``--rounds`` times, and prints both
medians and their ratio against the 3% target.
"""

from __future__ import annotations

import argparse
import statistics
import time

from accelcal.kernels.cases import SweepContext
from accelcal.kernels.device import Device, resolve_device
from accelcal.kernels.gemm import gemm_bytes, gemm_flop, make_gemm_run, matmul_mode
from accelcal.kernels.memory import make_memory_run, memory_bytes_moved
from accelcal.kernels.timing import TimingConfig, time_op
from accelcal.results import ResultSet

TARGET_REL = 0.03


def plain_loop_s(run, device: Device, calls: int, reps: int) -> float:
    """Median per-call seconds of ``reps`` samples of ``calls`` back-to-back calls (the textbook way)."""
    run(0)
    device.synchronize()
    out = []
    i = 0
    for _ in range(reps):
        device.synchronize()
        if device.has_events:
            e0, e1 = device.event(), device.event()
            e0.record()
            for _ in range(calls):
                run(i)
                i += 1
            e1.record()
            e1.synchronize()
            out.append(e0.elapsed_time(e1) / 1e3 / calls)
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                run(i)
                i += 1
            device.synchronize()
            out.append((time.perf_counter() - t0) / calls)
    return statistics.median(out)


def compare(name: str, run, device: Device, cfg: TimingConfig, rounds: int) -> tuple[float, float]:
    harness, plain = [], []
    for _ in range(rounds):
        t = time_op(run, device, cfg)
        harness.append(t.device.median_s)
        plain.append(plain_loop_s(run, device, cfg.queue_len, t.device.n))
    h, p = statistics.median(harness), statistics.median(plain)
    ratio = h / p
    verdict = "within" if abs(ratio - 1) <= TARGET_REL else "OUTSIDE"
    print(f"{name:<34} harness {h * 1e3:10.4f} ms ({t.device_method})   plain loop {p * 1e3:10.4f} ms   "
          f"ratio {ratio:.4f}  ({verdict} the {TARGET_REL:.0%} target)")
    return h, p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="cpu, cuda:0, ... (default: the accelerator if any)")
    ap.add_argument("--rounds", type=int, default=3, help="harness/plain alternations per op (default 3)")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    cfg = TimingConfig()
    ctx = SweepContext.create(dev, ResultSet("kernels"), timing=cfg, progress=None)
    print(f"device {dev.spec} ({dev.name()}), cache {ctx.cache_bytes / 2**20:.0f} MiB, "
          f"free {ctx.free_bytes / 2**30:.1f} GiB, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    dtype, s = ("fp32", 1024) if dev.is_cpu else ("bf16", 8192)
    sets, why = ctx.fit_sets(gemm_bytes(s, s, s, dtype))
    if not sets:
        print(f"GEMM skipped: {why}")
    else:
        with matmul_mode(dtype):
            run = make_gemm_run(dev, dtype, s, s, s, sets)
            h, _ = compare(f"gemm {dtype} {s}^3 ({sets} sets)", run, dev, cfg, args.rounds)
        print(f"{'':<34} harness: {gemm_flop(s, s, s) / h / 1e12:.3f} TFLOP/s")
        del run

    size = (1 << 30) if ctx.free_bytes >= (8 << 30) else (256 << 20)
    sets, why = ctx.fit_sets(2 * size)
    if not sets:
        print(f"copy skipped: {why}")
    else:
        run = make_memory_run(dev, "copy", size, sets)
        h, _ = compare(f"copy {size >> 20} MiB ({sets} sets)", run, dev, cfg, args.rounds)
        print(f"{'':<34} harness: {memory_bytes_moved('copy', size) / h / 1e9:.2f} GB/s (bytes = 2 x size)")
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
