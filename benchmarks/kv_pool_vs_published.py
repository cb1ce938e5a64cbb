"""The serving engines' KV pools as accelcal sizes them, against the pools the engines printed in published logs.

    $ python benchmarks/kv_pool_vs_published.py                      # benchmarks/data/published-kv-pools.csv
    $ python benchmarks/kv_pool_vs_published.py --data my_logs.csv   # your own engines' start-up lines

Each row of the table (comment lines start with '#'; columns source, engine, engine_version, model, profile, tp,
weight_dtype, kv_dtype, engine_args as KEY=VALUE;KEY=VALUE, published_kv_gib and optionally the published parts:
published_weights_gib, published_activation_gib, published_non_torch_gib) is sized with
``accelcal.planner.serving.kv.kv_budget``: the engine preset at that release with the row's settings, the model
preset, and the device capacity and measured in-use memory of the profile.  Printed per row: the KV memory per
GPU published and predicted (GiB) with the ratio, and where the log gives them, its parts beside ours (weights,
activation peak, memory outside torch).  Nothing is fitted to these logs: they check the memory rules the
presets cite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from accelcal.calibrate.profile import Profile
from accelcal.models import ModelConfig
from accelcal.planner.serving.cli import parse_engine_args
from accelcal.planner.serving.deployment import device_of
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.kv import kv_budget, memory_in_use_bytes

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "benchmarks" / "data" / "published-kv-pools.csv"
GIB = float(1 << 30)
NEED = ("source", "engine", "engine_version", "model", "profile", "tp", "weight_dtype", "kv_dtype", "engine_args",
        "published_kv_gib")


def predict_row(row) -> dict:
    """Our KV budget for one published row (GiB by part)."""
    prof = Profile.load(ROOT / str(row["profile"]) if not Path(str(row["profile"])).is_absolute() else row["profile"])
    version = str(row["engine_version"] or "")
    engine = EnginePreset.from_name(str(row["engine"])).for_release_on(version, *device_of(prof))[0]
    args = [a for a in str(row["engine_args"] or "").split(";") if a.strip()]
    engine = engine.with_overrides(parse_engine_args(args), f"{row['source']} (published launch flags)")
    model = ModelConfig.resolve(str(row["model"]))
    kv = kv_budget(model, engine, int(row["tp"]), 1, float(prof.identity.memory_capacity_bytes),
                   str(row["weight_dtype"]), str(row["kv_dtype"]), in_use_bytes=memory_in_use_bytes(prof))
    return {"kv": kv.kv_pool_bytes / GIB, "weights": kv.weights_bytes / GIB, "activation": kv.activation_bytes / GIB,
            "non_torch": (kv.comm_buffer_bytes + kv.in_use_bytes) / GIB, "rule": kv.rule}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT, help="published logs table (see the module docstring)")
    args = ap.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: no such table")
    df = pd.read_csv(args.data, comment="#", dtype={"engine_version": str, "engine_args": str}, keep_default_na=False)
    missing = [c for c in NEED if c not in df.columns]
    if missing:
        raise SystemExit(f"{args.data}: columns {missing} missing; expected {list(NEED)}")
    print(f"published KV pools: {args.data} ({len(df)} rows); GiB per GPU, published vs predicted")
    ratios = []
    for i, row in df.iterrows():
        try:
            got = predict_row(row)
        except (ValueError, FileNotFoundError) as exc:
            print(f"  row {i + 1}: not predicted: {exc}")
            continue
        pub = float(row["published_kv_gib"])
        ratios.append(got["kv"] / pub)
        print(f"  {row['engine']} {row['engine_version']} {row['model']} TP{row['tp']} {row['weight_dtype']} "
              f"[{row['engine_args'] or 'defaults'}] on {Path(str(row['profile'])).stem}: KV {pub:.2f} vs "
              f"{got['kv']:.2f} GiB (x{got['kv'] / pub:.2f})  {row['source']}")
        parts = [(name, row.get(f"published_{name}_gib", ""), got[name]) for name in ("weights", "activation", "non_torch")]
        shown = [f"{name} {float(p):.2f} vs {ours:.2f}" for name, p, ours in parts if str(p).strip()]
        if shown:
            print("    parts (published vs predicted): " + ", ".join(shown))
        print(f"    rule: {got['rule']}")
    if ratios:
        print(f"predicted / published KV memory: {', '.join(f'x{r:.2f}' for r in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
