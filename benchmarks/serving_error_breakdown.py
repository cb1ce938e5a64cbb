"""Where serving predictions miss: signed errors by model kind and engine, and TTFT at light load, from the
per-row CSV that ``serving_accuracy.py --out`` writes.

    $ python benchmarks/serving_accuracy.py --data other.csv --out /tmp/rows.csv
    $ python benchmarks/serving_error_breakdown.py /tmp/rows.csv                 # light load: concurrency <= 8
    $ python benchmarks/serving_error_breakdown.py /tmp/rows.csv --max-concurrency 4

At light load a request meets little queue, so its TTFT is mostly its own prefill: a measured/predicted TTFT
ratio far from 1 there says the prefill step is costed wrong (kernels, host work), not the queue.  The table
shows that ratio and the measured TTFT in the predicted prefill steps of one prompt (``one_prefill_s``), per
model, engine and layout, and the split between dense and mixture-of-experts models.  Nothing is fitted.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

NEEDED = ("model", "moe", "backend", "tp", "dp", "ep", "concurrency", "ttft_measured_s", "ttft_predicted_s",
          "tpot_measured_s", "tpot_predicted_s", "one_prefill_s")
"""Columns of serving_accuracy.py --out this reads."""


class BadRows(ValueError):
    """A rows file this cannot read; the message names the file and what was expected."""


TIMES = ("ttft_measured_s", "ttft_predicted_s", "tpot_measured_s", "tpot_predicted_s", "one_prefill_s")
"""Of NEEDED, the columns that hold times (seconds > 0)."""
NUMERIC = ("tp", "dp", "ep", "concurrency") + TIMES
"""Of NEEDED, the columns that hold numbers."""

_TRUTH = {"true": True, "false": False, "1": True, "0": False}


def _first(mask: pd.Series) -> int:
    """The position of the first True in ``mask``."""
    return int(mask.to_numpy().nonzero()[0][0])


def read_rows(paths: list[str]) -> pd.DataFrame:
    """The rows of every file, checked: the columns NEEDED, numbers where numbers belong, ``moe`` true or false,
    positive times and prefill steps (BadRows naming the file, row and column otherwise)."""
    frames = []
    expected = "expected the CSV of `python benchmarks/serving_accuracy.py --out FILE`"
    for path in paths:
        try:
            df = pd.read_csv(path)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise BadRows(f"{path}: cannot read it as a CSV ({exc}); {expected}") from None
        missing = [c for c in NEEDED if c not in df.columns]
        if missing:
            raise BadRows(f"{path}: columns {missing} missing; {expected}")
        if df.empty:
            raise BadRows(f"{path}: a header and no rows; {expected}")
        for col in NUMERIC:
            num = pd.to_numeric(df[col], errors="coerce")
            bad = num.isna()
            if bad.any():
                i = _first(bad)
                raise BadRows(f"{path}: row {i + 2}, column {col}: {df[col].iloc[i]!r} is not a number; {expected}")
            df[col] = num
        moe = df["moe"].astype(str).str.strip().str.lower().map(_TRUTH)
        if moe.isna().any():
            i = _first(moe.isna())
            raise BadRows(f"{path}: row {i + 2}, column moe: {df['moe'].iloc[i]!r}; expected True or False")
        df["moe"] = moe.astype(bool)
        for col in TIMES:
            bad = ~(df[col] > 0)
            if bad.any():
                i = _first(bad)
                raise BadRows(f"{path}: row {i + 2}, column {col}: {float(df[col].iloc[i]):g}; expected a time > 0 s")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def by_kind(df: pd.DataFrame) -> pd.DataFrame:
    """Signed median and mean |relative error| of TTFT and TPOT per (model kind, engine)."""
    d = df.assign(kind=np.where(df["moe"], "MoE", "dense"),
                  ttft_err=df["ttft_predicted_s"] / df["ttft_measured_s"] - 1,
                  tpot_err=df["tpot_predicted_s"] / df["tpot_measured_s"] - 1)
    return d.groupby(["kind", "backend"]).agg(
        rows=("ttft_err", "size"), ttft_signed_median=("ttft_err", "median"),
        ttft_abs_mean=("ttft_err", lambda x: x.abs().mean()), tpot_signed_median=("tpot_err", "median"),
        tpot_abs_mean=("tpot_err", lambda x: x.abs().mean()))


def light_load(df: pd.DataFrame, max_concurrency: int) -> pd.DataFrame:
    """Median measured/predicted TTFT, and the measured and predicted TTFT in one prompt's predicted prefill
    steps, per model, engine and layout, over the rows at concurrency <= ``max_concurrency``."""
    d = df[df["concurrency"] <= max_concurrency]
    d = d.assign(ratio=d["ttft_measured_s"] / d["ttft_predicted_s"],
                 measured_in_prefills=d["ttft_measured_s"] / d["one_prefill_s"],
                 predicted_in_prefills=d["ttft_predicted_s"] / d["one_prefill_s"])
    return d.groupby(["moe", "model", "backend", "tp", "dp", "ep"]).agg(
        rows=("ratio", "size"), ttft_measured_over_predicted=("ratio", "median"),
        measured_in_prefills=("measured_in_prefills", "median"),
        predicted_in_prefills=("predicted_in_prefills", "median"),
        one_prefill_ms=("one_prefill_s", lambda x: float(np.median(x)) * 1e3))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("rows", nargs="+", help="CSV(s) written by serving_accuracy.py --out")
    ap.add_argument("--max-concurrency", type=int, default=8,
                    help="light load: rows at this concurrency or below (default 8)")
    args = ap.parse_args(argv)
    if args.max_concurrency < 1:
        ap.error(f"--max-concurrency must be >= 1, got {args.max_concurrency}")
    try:
        df = read_rows(args.rows)
    except BadRows as exc:
        print(f"serving_error_breakdown.py: {exc}", file=sys.stderr)
        return 2
    pd.set_option("display.width", 200)
    print(f"{len(df)} predicted rows from {', '.join(args.rows)}")
    print("signed error = predicted / measured - 1 (negative: under-predicted), by model kind and engine:")
    print(by_kind(df).round(3).to_string())
    light = light_load(df, args.max_concurrency)
    if light.empty:
        print(f"no rows at concurrency <= {args.max_concurrency}")
        return 0
    print(f"\nlight load (concurrency <= {args.max_concurrency}): TTFT measured / predicted (median), and TTFT in one "
          f"prompt's predicted prefill steps, measured and predicted:")
    print(light.round(2).to_string())
    kinds = light.reset_index().groupby("moe")
    print("\nmedian over the layouts above of TTFT measured / predicted: "
          + ", ".join(f"{'MoE' if moe else 'dense'} x{g['ttft_measured_over_predicted'].median():.2f} "
                      f"({len(g)} layouts, {int(g['rows'].sum())} rows)" for moe, g in kinds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
