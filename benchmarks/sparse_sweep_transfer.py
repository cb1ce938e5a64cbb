"""How well a profile measured on few weight shapes answers the shapes a planner asks (issue 13).

    python benchmarks/sparse_sweep_transfer.py profiles/nvidia-h200.yaml --train-like profiles/nvidia-h100.yaml

A profile measured with an older or smaller sweep (the shipped H100 profile: four (N, K) families, the
Llama-3-8B projections and a square) is asked by the planner for TP-divided projections it never measured.
This benchmark puts that question to a profile that measured both: every GEMM query candidate
(calibrate/fit_gemm.gemm_candidates) and the selection calibrate makes among them (fit_gemm) are fitted on
the ``--train-like`` profile's families only, then predict every other measured family of ``PROFILE``.
Prints, per dtype and candidate, median and p90 |rel err| over the unseen families, all M and M <= 64 (the
decode regime), which candidate the selection kept, and the selection's signed median error by M and N.  Every figure is computed in this run from the
profiles' measured points; nothing is fitted to the unseen families.
"""

from __future__ import annotations

import argparse

import numpy as np

from accelcal.calibrate.fit_gemm import families, fit_gemm, gemm_candidates
from accelcal.calibrate.profile import Profile
from accelcal.calibrate.quality import rel_errors
from accelcal.vocab import gemm_element_bytes

SMALL_M = 64


def _row(name: str, pred: np.ndarray, test: np.ndarray) -> str:
    e = np.abs(rel_errors(pred, test[:, 3]))
    s = e[test[:, 0] <= SMALL_M]
    return (f"  {name:<30} all M: median {np.median(e):6.1%} p90 {np.percentile(e, 90):6.1%}   "
            f"M <= {SMALL_M}: median {np.median(s):6.1%} p90 {np.percentile(s, 90):6.1%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", help="a measured profile with many (N, K) families")
    ap.add_argument("--train-like", required=True, metavar="PROFILE",
                    help="fit on the (N, K) families this profile measured (per dtype)")
    ap.add_argument("--dtypes", default=None, help="comma-separated (default: every dtype both profiles have)")
    args = ap.parse_args(argv)
    p, like = Profile.load(args.profile), Profile.load(args.train_like)
    dtypes = args.dtypes.split(",") if args.dtypes else sorted(set(p.compute) & set(like.compute))
    print(f"profile {args.profile} ({p.identity.device_name}); training families: those of {args.train_like} "
          f"({like.identity.device_name})")
    for dt in dtypes:
        if dt not in p.compute or dt not in like.compute:
            raise SystemExit(f"--dtypes {dt}: {args.profile} has {sorted(p.compute)}, {args.train_like} has "
                             f"{sorted(like.compute)}")
        arr = np.asarray(p.compute[dt].points, dtype=float)
        keep = set(families(like.compute[dt].points))
        seen = np.array([(r[1], r[2]) in keep for r in arr])
        train, test = arr[seen], arr[~seen]
        if len(families(train)) < 2 or not len(test):
            print(f"{dt}: {len(families(train))} training families, {len(families(test))} unseen: skipped")
            continue
        wave = p.compute[dt].gemm_model.wave_units if p.compute[dt].gemm_model else None
        wave = wave or p.compute[dt].wave_units or next((e.gemm_model.wave_units for e in p.compute.values()
                                                         if e.gemm_model), None)
        print(f"{dt}: fit on {len(train)} points in {len(families(train))} families, predict {len(test)} points in "
              f"{len(families(test))} unseen families (wave units {wave})")
        for name, fit in gemm_candidates(dt, wave).items():
            model = fit(dt, train.tolist(), wave)
            print(_row(name, model.times_s(test[:, 0], test[:, 1], test[:, 2]), test))
        entry = fit_gemm(dt, train.tolist(), wave_units=wave)
        el = gemm_element_bytes(dt)
        pred = np.array([entry.estimate_s(m, n, k, *el)[0] for m, n, k in test[:, :3]])
        kept = ("shape model" if entry.gemm_model is not None else
                "interpolated, waves" if entry.wave_units else "interpolated")
        print(_row(f"selection (kept {kept})", pred, test))
        # Where the selection errs, signed: narrow N (a projection divided 8 ways) at small M is the decode of a
        # TP-8 layout, the shapes a sparse sweep sees least.
        err = pred / test[:, 3] - 1
        cells = []
        for lo, hi in ((1, 64), (65, 512), (513, 1 << 30)):
            for nlo, nhi in ((0, 2048), (2048, 8192), (8192, 1 << 30)):
                sel = (test[:, 0] >= lo) & (test[:, 0] <= hi) & (test[:, 1] >= nlo) & (test[:, 1] < nhi)
                if sel.any():
                    m_txt = f"M {lo}-{hi}" if hi < 1 << 30 else f"M >= {lo}"
                    n_txt = f"N < {nhi}" if nlo == 0 else (f"N {nlo}-{nhi - 1}" if nhi < 1 << 30 else f"N >= {nlo}")
                    cells.append(f"{m_txt}, {n_txt}: {np.median(err[sel]):+.1%} (n={int(sel.sum())})")
        print("    selection, signed median error by shape: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
