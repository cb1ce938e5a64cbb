"""The serving engines' samplers measured on a device, against the estimate a profile without them gets.

    $ python benchmarks/sampler_estimate.py --device cpu       # measure here: quick GEMM, memory, sampler sweeps
    $ python benchmarks/sampler_estimate.py --device cuda:0    # a GPU (vocabulary of Qwen3, batches 1..256)
    $ python benchmarks/sampler_estimate.py --profile gpu-profile.yaml   # no device: a calibrated profile's raw data

With ``--device`` it runs the kernel suite's ``gemm``, ``memory`` and ``sampler`` ops (the quick preset for the
device class) and fits them as ``accelcal calibrate`` does; with ``--profile`` it reads a profile calibrated
with the sampler sweep and the sampler rows of its raw data (no device time).  Printed for every measured
(kind, batch): the measured time, the profile's fitted answer, and the estimate the serving model uses when a
profile has no ``sampler`` section (the kind's bytes per logit, accelcal.vocab.SAMPLER_BYTES_PER_LOGIT, at the
copy bandwidth), as ratios estimate / measured.  The published serving rows are costed from a profile measured
before the suite timed samplers, i.e. from that estimate; this says how far it is from a measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from accelcal.calibrate.profile import Profile
from accelcal.vocab import SAMPLER_BYTES_PER_LOGIT


def measured_here(device: str | None) -> tuple[pd.DataFrame, Profile, str]:
    """(kernel rows, fitted profile, device name) from the quick sweeps on ``device``."""
    from accelcal.calibrate.fit import fit_profile
    from accelcal.kernels.suite import run_suite

    # GEMMs too: a profile needs them (fit_profile), though only memory.copy and the samplers are read here.
    rs = run_suite(device, "quick", ops="gemm,memory,sampler", progress=None)
    return rs.frame(), fit_profile(rs.frame(), None, rs.env, "benchmarks/sampler_estimate.py"), \
        f"{rs.env.get('device_name')} ({device or 'default device'})"


def from_profile(path: Path) -> tuple[pd.DataFrame, Profile, str]:
    """(kernel rows of its raw data, the profile, its device name) for a calibrated profile."""
    from accelcal.results import read_results

    prof = Profile.load(path)
    csvs = prof.identity.raw_csv_paths(path)
    if not csvs:
        raise ValueError(f"{path}: identity.raw_data lists no CSV beside the profile; expected the kernels.csv "
                         f"that accelcal calibrate writes into its raw folder")
    return read_results(csvs), prof, f"{prof.identity.device_name} (profile {path})"


def report(kern: pd.DataFrame, prof: Profile, where: str) -> int:
    dev = kern[(kern["op"] == "sampler") & (kern["figure"] == "device") & (kern["status"] == "ok")] \
        if "op" in kern.columns else kern.iloc[:0]
    if dev.empty:
        print(f"{where}: no sampler measurements (calibrated before the kernel suite timed samplers, or every case "
              f"skipped)", file=sys.stderr)
        return 1
    print(f"device {where}; copy bandwidth {prof.memory['copy'].bandwidth_bytes_per_s / 1e9:.2f} GB/s (fitted, largest piece)")
    print(f"{'kind':<17} {'batch':>5} {'vocab':>7} {'measured':>11} {'fit':>11} {'estimate':>11} {'est/meas':>9}")
    ratios: dict[str, list[float]] = {}
    for _, r in dev.sort_values(["kind", "batch"]).iterrows():
        kind, logits = str(r["kind"]), float(r["elements"])
        fit = f"{prof.sampler_time_s(kind, logits).time_s * 1e3:>9.3f}ms" if kind in prof.sampler else f"{'-':>11}"
        est = prof.memory_time_s(logits * SAMPLER_BYTES_PER_LOGIT[kind], "copy").time_s
        ratios.setdefault(kind, []).append(est / r["median_s"])
        print(f"{kind:<17} {int(r['batch']):>5} {int(r['vocab']):>7} {r['median_s'] * 1e3:>9.3f}ms "
              f"{fit} {est * 1e3:>9.3f}ms {est / r['median_s']:>8.2f}x")
    for kind, rr in ratios.items():
        e = prof.sampler.get(kind)
        q = f"held-out median {e.quality.heldout_median_rel_err:.1%}" if e is not None and e.quality else "not fitted"
        print(f"{kind:<17} estimate / measured: median x{np.median(rr):.2f} (min x{min(rr):.2f}, max x{max(rr):.2f}); "
              f"fit {q}; {SAMPLER_BYTES_PER_LOGIT[kind]:g} bytes per logit")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--device", default=None, help="measure on this device (default: the accelerator if present, else cpu)")
    src.add_argument("--profile", type=Path, default=None, help="read a calibrated profile and its raw data instead")
    args = ap.parse_args(argv)
    try:
        kern, prof, where = from_profile(args.profile) if args.profile else measured_here(args.device)
    except (OSError, ValueError) as exc:
        print(f"sampler_estimate: {exc}", file=sys.stderr)
        return 2
    return report(kern, prof, where)


if __name__ == "__main__":
    raise SystemExit(main())
