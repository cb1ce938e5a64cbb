"""Refit a measured profile's GEMM and attention models from its own raw data; everything else is kept.

    python scripts/refit_models.py profiles/nvidia-h200.yaml [--out other.yaml]
    python scripts/refit_models.py profiles/nvidia-h200.yaml --add-raw profiles/nvidia-h200-raw/kernels-fp8-models.csv

Refits ``compute.<dtype>`` (calibrate/fit_gemm.py: the query judged by family-held-out error) from each dtype's
measured points (the whole entry: roofline, wave term, shape model and quality), and the attention fits from
the kernels CSVs named in ``identity.raw_data`` (their ``.env.json`` gives the SM count).  The measured GEMM
points, memory, elementwise, overhead, collective and validation sections are left exactly as they are.

``--add-raw CSV``: a further kernels sweep of the same device (e.g. ``accelcal bench kernels --for-model M
--model-dtypes fp8_e4m3``), kept in the profile's folder: it is listed in ``identity.raw_data`` and its GEMM
device medians join the measured points of their dtype ((m, n, k) already measured keep the first
measurement).  Its ``.env.json`` must name the profile's device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from accelcal.calibrate.fit_attention import attention_groups, fit_attention_table
from accelcal.calibrate.fit_gemm import fit_gemm
from accelcal.calibrate.profile import Profile


def _env(csv: Path) -> dict:
    env_path = csv.with_suffix(".env.json")
    d = json.loads(env_path.read_text()) if env_path.exists() else {}
    return d.get("env", d) if isinstance(d, dict) else {}


def _added_points(p: Profile, base: Path, extra: list[str]) -> dict[str, list[list[float]]]:
    """dtype -> new [m, n, k, median_s] rows of the ``--add-raw`` CSVs (recorded in identity.raw_data)."""
    out: dict[str, list[list[float]]] = {}
    for path in extra:
        csv = Path(path).resolve()
        rel = os.path.relpath(csv, base.resolve())
        if rel.startswith(".."):
            raise SystemExit(f"--add-raw {path}: keep it beside the profile's raw data (under {base}) so the profile "
                             f"can name it; copy it there first")
        env = _env(csv)
        if env.get("device_name") != p.identity.device_name:
            raise SystemExit(f"--add-raw {path}: its {csv.with_suffix('.env.json').name} names device "
                             f"{env.get('device_name')!r}, the profile {p.identity.device_name!r}")
        df = pd.read_csv(csv)
        ok = df[(df["op"] == "gemm") & (df["figure"] == "device") & (df["status"] == "ok") & df["median_s"].notna()]
        for dtype, g in ok.groupby("dtype"):
            out.setdefault(str(dtype), []).extend(g[["m", "n", "k", "median_s"]].astype(float).values.tolist())
        if rel not in p.identity.raw_data:
            p.identity.raw_data.append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("--out", default=None, help="write here (default: overwrite the profile, atomically)")
    ap.add_argument("--add-raw", nargs="+", default=[], metavar="CSV",
                    help="kernels CSV(s) of a further sweep of the same device, beside the profile's raw data")
    args = ap.parse_args(argv)
    p = Profile.load(args.profile)
    base = Path(args.profile).parent
    added = _added_points(p, base, args.add_raw)
    csvs = [base / r for r in p.identity.raw_data if r.endswith(".csv") and "kernels" in Path(r).name]
    if not csvs:
        raise SystemExit(f"{args.profile}: identity.raw_data names no kernels CSV; nothing to refit from")
    env = _env(csvs[0])
    wave = env.get("device_sm_count") if p.identity.device_type in ("cuda", "rocm") else None
    df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True, sort=False)
    for dtype in sorted(set(p.compute) | set(added)):
        e = p.compute.get(dtype)
        points = [list(pt) for pt in e.points] if e is not None else []
        have = {tuple(pt[:3]) for pt in points}
        new = [pt for pt in added.get(dtype, []) if tuple(pt[:3]) not in have]
        try:
            fitted = fit_gemm(dtype, points + new, wave_units=wave)  # measured points unchanged, new ones added
        except ValueError as exc:
            if e is not None:
                raise
            print(f"gemm {dtype}: not added: {exc}")
            continue
        # The whole entry is replaced: the selection may keep a different query (shape model, or the roofline
        # with or without the wave term), and a stale wave_units or roofline beside the new quality would
        # answer with a candidate the selection rejected.
        if e is not None:
            fitted.grouped_points = e.grouped_points  # measured; their ratio is taken against the new fit
        p.compute[dtype] = fitted
        q = fitted.quality
        print(f"gemm {dtype}: {len(points)} + {len(new)} added points; family-held-out median "
              f"{q.heldout_median_rel_err:.1%}, p90 {q.heldout_p90_rel_err:.1%}")
    for dtype, phases in fit_attention_table(attention_groups(df), wave_units=int(wave) if wave else None,
                                             note=lambda m: print(m)).items():
        for phase, e in phases.items():
            p.attention.setdefault(dtype, {})[phase] = e
            print(f"attention {dtype} {phase}: held-out median {e.quality.heldout_median_rel_err:.1%}, "
                  f"half_length {e.half_length or 0:.0f}, flop_per_s {e.flop_per_s:.4g}")
    p.save(args.out or args.profile)
    print(f"wrote {args.out or args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
