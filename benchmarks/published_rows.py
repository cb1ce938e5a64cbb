"""Cut, from NVIDIA aiconfigurator's silicon sample, the published serving rows beyond the development set that the
shipped profiles can cost: a check of the serving model on other models and engines, not a data set to fit.

    $ git clone https://github.com/ai-dynamo/aiconfigurator /tmp/aic
    $ git -C /tmp/aic show 095f58a51:aic-core/src/aiconfigurator_core/systems/silicon_sample.csv > /tmp/silicon_sample.csv
    $ python benchmarks/published_rows.py /tmp/silicon_sample.csv --out /tmp/other.csv
    $ python benchmarks/serving_accuracy.py --data /tmp/other.csv

Keeps the aggregated-serving rows (``mode`` agg) of the systems a measured profile ships for
(serving_accuracy.SYSTEM_PROFILES) and drops every row whose ``id`` is in the development set
(``--dev``, default ../shared/data/serving-dev/qwen3-32b-h100.csv), which the development set's README says was
cut from the same file.  The rows keep aiconfigurator's columns (Apache-2.0; cite github.com/ai-dynamo/aiconfigurator
and the commit the file was read at).  Rows whose model no preset cites, or whose layout is not modelled, stay in:
serving_accuracy.py counts them under "not predicted" with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from accelcal.atomic import atomic_write_with

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_accuracy import SYSTEM_PROFILES  # noqa: E402  (benchmarks/serving_accuracy.py, beside this script)


COLUMNS = ("id", "mode", "system", "model_path", "backend", "isl", "osl", "batch_size", "tp_size",
           "silicon_ttft_ms", "silicon_tpot_ms")
"""Columns the cut and serving_accuracy.py read (a file without them is not the silicon sample)."""


def cut(sample: pd.DataFrame, dev_ids: set[str]) -> pd.DataFrame:
    """The agg rows of ``sample`` on systems with a shipped profile, without the development set's ids."""
    missing = [c for c in COLUMNS if c not in sample.columns]
    if missing:
        raise ValueError(f"the silicon sample has no {', '.join(map(repr, missing))} column(s) (expected "
                         f"{list(COLUMNS)}; it has {list(sample.columns)[:12]} ...)")
    keep = (sample["mode"] == "agg") & sample["system"].isin(list(SYSTEM_PROFILES)) & ~sample["id"].isin(dev_ids)
    return sample[keep]


def _read(path: str, what: str, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SystemExit(f"published_rows: {what} {path}: {exc}") from None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sample", help="aiconfigurator's silicon_sample.csv")
    ap.add_argument("--out", required=True, help="CSV to write (serving_accuracy.py --data reads it)")
    ap.add_argument("--dev", default=str(ROOT.parent / "shared/data/serving-dev/qwen3-32b-h100.csv"),
                    help="the development set whose rows are left out (default: ../shared/data/serving-dev/"
                         "qwen3-32b-h100.csv beside the checkout)")
    args = ap.parse_args()
    out = Path(args.out)
    if out.is_dir():
        raise SystemExit(f"published_rows: --out {out}: is a directory; give a file name, e.g. {out / 'other.csv'}")
    if not out.parent.is_dir():
        raise SystemExit(f"published_rows: --out {out}: the folder {out.parent} does not exist")
    sample = _read(args.sample, "silicon sample", dtype={"backend_version": str})
    dev = _read(args.dev, "development set (--dev)")
    if "id" not in dev.columns:
        raise SystemExit(f"published_rows: development set (--dev) {args.dev}: no 'id' column (it has "
                         f"{list(dev.columns)[:12]})")
    try:
        rows = cut(sample, set(dev["id"]))
    except ValueError as exc:
        raise SystemExit(f"published_rows: silicon sample {args.sample}: {exc}") from None
    atomic_write_with(out, lambda tmp: rows.to_csv(tmp, index=False))  # a crash leaves no half-written file
    print(f"{len(sample)} rows in {args.sample}; {len(rows)} agg rows on {sorted(SYSTEM_PROFILES)} outside the "
          f"{len(dev)} development rows -> {out}")
    print(rows.groupby(["model_path", "system"]).size().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
