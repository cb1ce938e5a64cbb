"""Engines' published MoE op times against what a measured profile costs the same op (the routed experts).

    $ python benchmarks/engine_moe_tables.py          # profiles/nvidia-h100.yaml vs the shipped H100 tables
    $ python benchmarks/engine_moe_tables.py --profile profiles/nvidia-h200.yaml \\
          --table profiles/engine-kernels/h200-vllm-0.14.0-moe.yaml

For every entry of each table (``accelcal import moe-table``: one engine's MoE op on one device, published) whose
expert shape is a preset model's and whose experts are all TP-split (moe_ep 1, the entries predict reads), the profile answers the same op as the planner's layer DAG splits it (routing
top-k, the grouped gate/up and down GEMMs, the activation, the gather/scatter and, for fp8, the input quantize
kernels; ``planner/serving/moe_op.py`` MOE_OP_NODES) at the table's token counts, eager, no table in the way.
Printed: published / profile by engine, weights and token range (median, 10th and 90th percentile over the
shapes and layouts), and per model at one layout.  A ratio above 1: the engine's op takes longer than the
profile's GEMMs say.  Nothing is fitted; ``predict --moe-table`` uses the tables instead of the estimate.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from accelcal.calibrate.compose import compose
from accelcal.calibrate.moe_table import MoeOpTable, moe_weight_kind
from accelcal.calibrate.priors import same_device_model
from accelcal.calibrate.profile import Profile
from accelcal.models import ModelConfig, preset_names
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.moe_op import MOE_OP_NODES
from accelcal.planner.serving.step_cost import StepCoster, replica_parallelism

ROOT = Path(__file__).resolve().parents[1]
TOKENS = (1, 16, 64, 256, 1024, 4096, 8192)
"""Token counts compared (decode sizes to long prefills), where the table has them."""
RANGES = ((1, 64, "1-64 tokens (decode)"), (65, 1024, "65-1024"), (1025, 1 << 30, "> 1024 (prefill)"))
WEIGHTS = {"bf16": ("bf16", "per_tensor", ""), "fp8_e4m3": ("fp8_e4m3", "per_tensor", ""),
           "fp8_e4m3_block": ("fp8_e4m3", "block", ""), "mxfp4": ("bf16", "per_tensor", "mxfp4"),
           "int4": ("bf16", "per_tensor", "int4_g32")}
"""Table weights -> (the serving weight dtype, fp8 scaling, routed experts' weight-only format) the profile costs."""


def shape_models() -> dict[tuple, ModelConfig]:
    """MoE presets by (hidden, expert ffn, top-k, experts), the first preset of each shape."""
    out: dict[tuple, ModelConfig] = {}
    for name in preset_names():
        m = ModelConfig.from_name(name)
        if m.is_moe:
            out.setdefault((m.hidden_size, m.expert_ffn_size, m.top_k, m.num_experts), m)
    return out


def profile_op_s(prof, model: ModelConfig, entry, tokens: int, cache: dict) -> float | None:
    """The profile's time for the MoE op of ``entry``'s layout over ``tokens`` tokens (None: the layout does not
    build, e.g. an expert split the dtype cannot take)."""
    wd, scaling, own = WEIGHTS[entry.weights]
    key = (model.name, entry.weights, entry.moe_tp, entry.moe_ep)
    if key not in cache:
        m = dataclasses.replace(model, expert_weight_dtype=own, shared_experts=0, dense_layers=0)
        if wd not in prof.dtypes():
            cache[key] = None
        else:
            tp = entry.moe_tp * entry.moe_ep
            eng = EnginePreset.from_name("vllm")  # ep_comm all_reduce: every rank keeps every token, as the op's input
            try:
                par = replica_parallelism(tp, 1, 1, max(tp, 1), entry.moe_ep, m.num_experts, 0)
                cache[key] = StepCoster(prof, m, par, eng, wd, "bf16", fp8_scaling=scaling)
            except ValueError:
                cache[key] = None
    sc = cache[key]
    if sc is None:
        return None
    return sum(n.device_s for n in sc.costed_layer(tokens).nodes if n.name in MOE_OP_NODES)


def compare(prof, tables: list[MoeOpTable]) -> pd.DataFrame:
    shapes = shape_models()
    rows, cache = [], {}
    for t in tables:
        for e in t.entries:
            if e.moe_ep != 1:  # predict reads TP-split entries only (planner/serving/moe_op.py)
                continue
            model = shapes.get((e.hidden_size, e.expert_ffn_size, e.top_k, e.experts))
            if model is None:
                continue
            for n in TOKENS:
                if n not in e.tokens:
                    continue
                ours = profile_op_s(prof, model, e, n, cache)
                if ours is None:
                    continue
                rows.append((t.engine, e.weights, model.name, e.moe_tp, e.moe_ep, n,
                             e.time_s[e.tokens.index(n)], ours))
    return pd.DataFrame(rows, columns=["engine", "weights", "model", "moe_tp", "moe_ep", "tokens", "published_s",
                                       "profile_s"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(ROOT / "profiles/nvidia-h100.yaml"))
    ap.add_argument("--interconnect", default=str(ROOT / "profiles/interconnect/h100-nvswitch-4of8.yaml"),
                    help="intra-node profile the layouts need to build (the op itself has no collective)")
    ap.add_argument("--table", action="append", default=[],
                    help="MoE op table(s) (default: every shipped table of the profile's device, "
                         "profiles/engine-kernels/*.yaml)")
    args = ap.parse_args()
    prof = compose(Profile.load(args.profile, what="--profile"),
                   Profile.load(args.interconnect, what="--interconnect"))
    dev = str(prof.identity.device_name)
    paths = args.table or sorted(str(p) for p in (ROOT / "profiles/engine-kernels").glob("*.yaml"))
    tables = [MoeOpTable.load(p) for p in paths]
    other = [t for t in tables if not same_device_model(t.device, dev)]
    tables = [t for t in tables if same_device_model(t.device, dev)]
    if args.table and other:
        raise SystemExit(f"--table {', '.join(t.origin for t in other)}: collected on another device than "
                         f"{args.profile}'s {dev}")
    if not tables:
        raise SystemExit(f"no table of {dev} in {paths}")
    out = compare(prof, tables)
    if out.empty:
        raise SystemExit("no table entry has a preset model's expert shape")
    out["ratio"] = out.published_s / out.profile_s
    rel = lambda p: os.path.relpath(p, ROOT) if Path(p).resolve().is_relative_to(ROOT) else p  # noqa: E731
    print(f"profile {prof.identity.name} ({rel(args.profile)}) vs {len(tables)} published MoE op table(s): "
          + ", ".join(f"{t.engine} {t.engine_version} ({rel(t.origin)})" for t in tables))
    print(f"{len(out)} points: routed-expert op, published / profile (the profile: the layer DAG's "
          f"{', '.join(MOE_OP_NODES)} nodes, eager)")
    for (eng, w), sub in out.groupby(["engine", "weights"]):
        for lo, hi, label in RANGES:
            s = sub[(sub.tokens >= lo) & (sub.tokens <= hi)].ratio
            if len(s):
                print(f"  {eng:<7} {w:<15} {label:<22} n={len(s):<4} median x{s.median():.2f}  "
                      f"p10 x{s.quantile(0.1):.2f}  p90 x{s.quantile(0.9):.2f}")
    print("per model, every expert split over 8 devices (moe_tp 8), by tokens: published ms / profile ms")
    for (eng, w, model), sub in out.groupby(["engine", "weights", "model"]):
        pick = sub[(sub.moe_tp == 8) & (sub.moe_ep == 1)]
        if pick.empty:
            continue
        lay = f"moe_tp {pick.moe_tp.iloc[0]} moe_ep {pick.moe_ep.iloc[0]}"
        cells = "  ".join(f"{int(r.tokens)}: {r.published_s * 1e3:.3g}/{r.profile_s * 1e3:.3g} (x{r.ratio:.2f})"
                          for r in pick.sort_values("tokens").itertuples())
        print(f"  {eng:<7} {w:<15} {model:<18} {lay}  {cells}")
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
