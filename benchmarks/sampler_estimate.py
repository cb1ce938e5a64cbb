"""The serving engines' samplers measured on this device, against the estimate a profile without them gets.

    $ python benchmarks/sampler_estimate.py --device cpu       # the CPU: quick sweeps
    $ python benchmarks/sampler_estimate.py --device cuda:0    # a GPU (vocabulary of Qwen3, batches 1..256)

Runs the kernel suite's ``gemm``, ``memory`` and ``sampler`` ops (the quick preset for the device class), fits them as
``accelcal calibrate`` does, and prints for every measured (kind, batch): the measured time, the profile's
fitted answer, and the estimate the serving model uses when a profile has no ``sampler`` section (the kind's
bytes per logit, accelcal.vocab.SAMPLER_BYTES_PER_LOGIT, at the fitted copy bandwidth), as ratios estimate /
measured.  The published serving rows are costed from a profile measured before the suite timed samplers, i.e.
from that estimate; this says how far it is from a measurement on the device at hand.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from accelcal.calibrate.fit import fit_profile
from accelcal.kernels.suite import run_suite
from accelcal.vocab import SAMPLER_BYTES_PER_LOGIT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None, help="device spec (default: the accelerator if present, else cpu)")
    args = ap.parse_args(argv)
    # GEMMs too: a profile needs them (fit_profile), though only memory.copy and the samplers are read here.
    rs = run_suite(args.device, "quick", ops="gemm,memory,sampler", progress=None)
    kern = rs.frame()
    prof = fit_profile(kern, None, rs.env, "benchmarks/sampler_estimate.py")
    dev = kern[(kern["op"] == "sampler") & (kern["figure"] == "device") & (kern["status"] == "ok")]
    if dev.empty:
        print("no sampler measurements (every case skipped?)", file=sys.stderr)
        return 1
    print(f"device {rs.env.get('device_name')} ({args.device}); copy bandwidth "
          f"{prof.memory['copy'].bandwidth_bytes_per_s / 1e9:.2f} GB/s (fitted, largest piece)")
    print(f"{'kind':<17} {'batch':>5} {'vocab':>7} {'measured':>11} {'fit':>11} {'estimate':>11} {'est/meas':>9}")
    ratios: dict[str, list[float]] = {}
    for _, r in dev.sort_values(["kind", "batch"]).iterrows():
        kind, logits = str(r["kind"]), float(r["elements"])
        fit = prof.sampler_time_s(kind, logits).time_s if kind in prof.sampler else float("nan")
        est = prof.memory_time_s(logits * SAMPLER_BYTES_PER_LOGIT[kind], "copy").time_s
        ratios.setdefault(kind, []).append(est / r["median_s"])
        print(f"{kind:<17} {int(r['batch']):>5} {int(r['vocab']):>7} {r['median_s'] * 1e3:>9.3f}ms "
              f"{fit * 1e3:>9.3f}ms {est * 1e3:>9.3f}ms {est / r['median_s']:>8.2f}x")
    for kind, rr in ratios.items():
        e = prof.sampler.get(kind)
        q = f"held-out median {e.quality.heldout_median_rel_err:.1%}" if e is not None and e.quality else "not fitted"
        print(f"{kind:<17} estimate / measured: median x{np.median(rr):.2f} (min x{min(rr):.2f}, max x{max(rr):.2f}); "
              f"fit {q}; {SAMPLER_BYTES_PER_LOGIT[kind]:g} bytes per logit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
