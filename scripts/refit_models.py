"""Refit a measured profile's GEMM and attention models from its own raw data; everything else is kept.

    python scripts/refit_models.py profiles/nvidia-h200.yaml [--out other.yaml]

Adds ``compute.<dtype>.gemm_model`` (calibrate/gemm_model.py, quality = family-held-out error) and the
attention length / wave terms to a profile measured before they existed.  The measured GEMM points, memory,
elementwise, overhead, collective and validation sections are left exactly as they are; the kernels CSV
named in ``identity.raw_data`` (and its ``.env.json`` for the SM count) is the only input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from accelcal.calibrate.fit_attention import attention_groups, fit_attention_table
from accelcal.calibrate.fit_gemm import fit_gemm
from accelcal.calibrate.profile import Profile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--out", default=None, help="write here (default: overwrite the profile, atomically)")
    args = ap.parse_args(argv)
    p = Profile.load(args.profile)
    base = Path(args.profile).parent
    csvs = [base / r for r in p.identity.raw_data if r.endswith(".csv") and "kernels" in Path(r).name]
    if not csvs:
        raise SystemExit(f"{args.profile}: identity.raw_data names no kernels CSV; nothing to refit from")
    env_path = csvs[0].with_suffix(".env.json")
    env = json.loads(env_path.read_text()) if env_path.exists() else {}
    wave = env.get("device_sm_count") if p.identity.device_type in ("cuda", "rocm") else None
    df = pd.read_csv(csvs[0])
    for dtype, e in p.compute.items():
        new = fit_gemm(dtype, e.points, wave_units=wave)  # the profile's own measured points, unchanged
        e.gemm_model, e.quality = new.gemm_model, new.quality
        q = e.quality
        print(f"gemm {dtype}: family-held-out median {q.heldout_median_rel_err:.1%}, p90 {q.heldout_p90_rel_err:.1%}")
    for dtype, phases in fit_attention_table(attention_groups(df), wave_units=int(wave) if wave else None).items():
        for phase, e in phases.items():
            p.attention.setdefault(dtype, {})[phase] = e
            print(f"attention {dtype} {phase}: held-out median {e.quality.heldout_median_rel_err:.1%}, "
                  f"half_length {e.half_length or 0:.0f}, flop_per_s {e.flop_per_s:.4g}")
    p.save(args.out or args.profile)
    print(f"wrote {args.out or args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
