"""Grouped expert GEMMs against the planner's stacked-GEMM estimate of them, measured now on this device.

    python benchmarks/grouped_gemm_ratio.py                     # the accelerator if any, else the CPU
    python benchmarks/grouped_gemm_ratio.py --device cpu

A MoE layer runs its experts as one grouped kernel; the planner costs it as one GEMM with the experts stacked
along N.  This runs the quick preset's bf16 GEMM sweep and its grouped_gemm cases (kernels/grouped_gemm.py),
fits the GEMM as ``accelcal calibrate`` does (its wave term from the device's SM count), and prints every grouped case's measured time beside that
estimate, and the ratio table a profile then carries (ComputeEntry.grouped_ratio: the median per tokens per
expert).  Every figure is measured in this run; no target: the ratio is what the profile corrects by.
"""

from __future__ import annotations

import argparse
import time

from accelcal.calibrate.fit_gemm import fit_gemm
from accelcal.kernels.device import resolve_device
from accelcal.kernels.suite import run_suite
from accelcal.vocab import gemm_element_bytes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="cpu, cuda:0, ... (default: the accelerator if any)")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    t0 = time.perf_counter()
    rs = run_suite(dev, preset="quick", ops=["gemm", "grouped_gemm"], dtypes=["bf16"], progress=None)
    df = rs.frame()
    ok = df[(df["figure"] == "device") & (df["status"] == "ok")]
    gemm, grouped = ok[ok["op"] == "gemm"], ok[ok["op"] == "grouped_gemm"]
    if grouped.empty:
        reasons = sorted(set(df[df["op"] == "grouped_gemm"]["reason"].dropna()))
        print(f"no grouped GEMM ran on {dev.spec}: {reasons or 'no cases in the preset'}")
        return 1
    sms = rs.env.get("device_sm_count") if dev.type in ("cuda", "rocm") else None  # as calibrate's fit takes it
    entry = fit_gemm("bf16", gemm[["m", "n", "k", "median_s"]].astype(float).values.tolist(),
                     wave_units=int(sms) if sms else None)
    entry.grouped_points = grouped[["experts", "m", "n", "k", "median_s"]].astype(float).values.tolist()
    el = gemm_element_bytes("bf16")
    print(f"device {dev.spec} ({rs.env.get('device_name')}); bf16 GEMM fit on {len(gemm)} shapes x M; "
          f"{len(grouped)} grouped cases; {time.perf_counter() - t0:.1f} s")
    print(f"{'shape':<34} {'experts':>7} {'m':>5} {'measured':>11} {'stacked est':>11} {'ratio':>6}")
    for _, r in grouped.iterrows():
        e, m, n, k, t = (float(r[c]) for c in ("experts", "m", "n", "k", "median_s"))
        est = entry.estimate_s(m, e * n, k, *el)[0]
        print(f"{r['shape']:<34} {e:>7.0f} {m:>5.0f} {t * 1e6:>8.1f} us {est * 1e6:>8.1f} us {t / est:>6.2f}")
    print("ratio the profile carries (median over the cases at each m): "
          + ", ".join(f"m={m:g} x{r:.3g}" for m, r in entry.grouped_ratio_table(*el)))
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
