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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_accuracy import SYSTEM_PROFILES  # noqa: E402  (benchmarks/serving_accuracy.py, beside this script)


def cut(sample: pd.DataFrame, dev_ids: set[str]) -> pd.DataFrame:
    """The agg rows of ``sample`` on systems with a shipped profile, without the development set's ids."""
    for col in ("id", "mode", "system"):
        if col not in sample.columns:
            raise ValueError(f"the silicon sample has no {col!r} column (columns: {list(sample.columns)[:12]} ...)")
    keep = (sample["mode"] == "agg") & sample["system"].isin(list(SYSTEM_PROFILES)) & ~sample["id"].isin(dev_ids)
    return sample[keep]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sample", help="aiconfigurator's silicon_sample.csv")
    ap.add_argument("--out", required=True, help="CSV to write (serving_accuracy.py --data reads it)")
    ap.add_argument("--dev", default=str(ROOT.parent / "shared/data/serving-dev/qwen3-32b-h100.csv"),
                    help="the development set whose rows are left out")
    args = ap.parse_args()
    try:
        sample = pd.read_csv(args.sample, dtype={"backend_version": str})
        dev = pd.read_csv(args.dev, usecols=["id"])
    except (OSError, ValueError) as exc:
        print(f"published_rows: {exc}", file=sys.stderr)
        return 2
    try:
        rows = cut(sample, set(dev["id"]))
    except ValueError as exc:
        print(f"published_rows: {args.sample}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    rows.to_csv(tmp, index=False)
    tmp.replace(out)  # a crash leaves no half-written file behind
    print(f"{len(sample)} rows in {args.sample}; {len(rows)} agg rows on {sorted(SYSTEM_PROFILES)} outside the "
          f"{len(dev)} development rows -> {out}")
    print(rows.groupby(["model_path", "system"]).size().to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
