"""Wall time of the quick kernel suite against its target (60 s on a 2-core CPU, 90 s on one H100/H200).

    $ python benchmarks/kernel_suite_time.py                 # default accelerator, else cpu
    $ python benchmarks/kernel_suite_time.py --device cpu --out /tmp/kernels

Runs ``accelcal.kernels.suite.run_suite(preset="quick")`` with all four op
groups, prints the summary table, the wall time, the target and their ratio,
and (with --out) writes the results as ``accelcal bench kernels`` would.
"""

from __future__ import annotations

import argparse
import time

from accelcal.kernels.device import resolve_device
from accelcal.kernels.suite import run_suite, summary_table

TARGET_S = {"cpu": 60.0, "accelerator": 90.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="cpu, cuda:0, ... (default: the accelerator if any)")
    ap.add_argument("--out", default=None, help="also write kernels.csv/.json/... here")
    ap.add_argument("--progress", action="store_true", help="print per-case progress lines")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    t0 = time.perf_counter()
    rs = run_suite(dev, preset="quick", progress=print if args.progress else None)
    wall = time.perf_counter() - t0
    print(summary_table(rs))
    target = TARGET_S["cpu" if dev.is_cpu else "accelerator"]
    df = rs.frame()
    print(f"quick kernel suite on {dev.spec} ({rs.env.get('device_name')}, {rs.env.get('cpu_count')} CPUs): "
          f"{wall:.1f} s wall (incl. environment capture) vs target {target:.0f} s: ratio {wall / target:.2f} "
          f"({'met' if wall <= target else 'MISSED'}); {df['case'].nunique()} cases, "
          f"{int((df['status'] == 'skipped').sum())} recorded skips")
    if args.out:
        for kind, path in rs.write(args.out, stem="kernels").items():
            print(f"wrote {kind:<7} {path}")
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
