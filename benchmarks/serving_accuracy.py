"""Serving accuracy: accelcal's engine model against published end-to-end measurements (Qwen3-32B on H100 SXM).

    $ python benchmarks/serving_accuracy.py          # every row: profiles/nvidia-h100.yaml + the shipped NVSwitch profile
    $ python benchmarks/serving_accuracy.py --interconnect none          # TP=1 rows only (the device profile alone)
    $ python benchmarks/serving_accuracy.py --deployment default --rows  # engines at their own defaults instead
    $ python benchmarks/serving_accuracy.py --turnaround-ms 1,5,20       # sensitivity to the client turnaround
    $ python benchmarks/serving_accuracy.py --engine-arg overlap_scheduling=false   # an ablation of one engine key

Every row of the CSV (``--data``, default ../shared/data/serving-dev/qwen3-32b-h100.csv relative to the repo)
the profiles can cost is predicted with ``predict_serving`` (step-level simulation): backend -> engine preset,
precision fp8 -> fp8_e4m3 weights, batch_size -> closed-loop concurrency, isl/osl fixed.

The rows are NVIDIA aiconfigurator's silicon sample, and aiconfigurator's generator writes the engine
configurations and the benchmark its published silicon measurements are run with.  So by default
(``--deployment aiconfigurator``) each engine gets that recipe's settings (token budget, batch size, KV
fraction, CUDA graph sizes, fp8 KV cache for fp8 weights; accelcal.planner.serving.deployment cites every
rule) and the load is the generator's aiperf benchmark: 20 x concurrency requests after 2 x concurrency of
warm-up (src/aiconfigurator/generator/config/backend_templates/benchmark/bench_run.sh.j2), the warm-up drained
before the measured requests start together (aiperf docs/tutorials/warmup.md: it "waits indefinitely for all
warmup responses before starting profiling").  ``--deployment
default`` runs the engines at their own defaults (the KV cache then stays bf16 unless ``--fp8-kv-dtype``).

Prints mean and median |relative error| of TTFT and TPOT overall, by engine and by TP, the rows not
predicted and why, and the rows called infeasible; with several ``--turnaround-ms`` values, one summary per
value.  Nothing here is fitted to these rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

from accelcal.calibrate.profile import Profile
from accelcal.models import ModelConfig
from accelcal.planner.serving.deployment import DEPLOYMENTS, apply_deployment
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.predict import combine_profiles, predict_serving
from accelcal.planner.serving.step_cost import StepCoster, StepCostError, replica_parallelism
from accelcal.planner.serving.workload import ServingWorkload

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {"vllm": "vllm", "sglang": "sglang", "trtllm": "trtllm"}


def resolve_model(spec: str | None) -> ModelConfig:
    if spec:
        return ModelConfig.resolve(spec)
    try:
        return ModelConfig.from_name("qwen3-32b")
    except ValueError as exc:
        raise SystemExit(f"no qwen3-32b preset in this checkout ({exc}); pass --model PATH to a model config") from None


def summary(label: str, err_ttft: list[float], err_tpot: list[float]) -> str:
    if not err_ttft:
        return f"{label:<22} n=0"
    a, b = np.abs(err_ttft), np.abs(err_tpot)
    return (f"{label:<22} n={len(a):<4} TTFT |rel err| mean {a.mean():7.1%} median {np.median(a):7.1%}   "
            f"TPOT |rel err| mean {b.mean():7.1%} median {np.median(b):7.1%}")


def run_rows(df: pd.DataFrame, args, model: ModelConfig, prof, ic, inter, turnaround_s: float, notes: list[str],
             rows: bool) -> tuple[dict, Counter, list, dict]:
    errs = defaultdict(lambda: ([], []))
    skipped: Counter = Counter()
    infeasible = []
    in_prefills = defaultdict(lambda: ([], []))  # (engine, concurrency) -> (measured, predicted) TTFT / one prefill
    costers: dict = {}
    for _, row in df.iterrows():
        eng = ENGINES.get(row["backend"])
        if eng is None:
            skipped[f"backend {row['backend']!r} has no engine preset"] += 1
            continue
        tp, pp = int(row["tp_size"]), int(row["pp_size"])
        if tp * pp > 1 and ic is None:
            skipped[f"TP{tp} PP{pp}: needs --interconnect (the device profile has no collectives)"] += 1
            continue
        fp8 = str(row["precision"]) == "fp8"
        c, isl, osl = int(row["batch_size"]), int(row["isl"]), int(row["osl"])
        wd = "fp8_e4m3" if fp8 else "bf16"
        engine, kvd, _ = apply_deployment(args.deployment, EnginePreset.from_name(eng), str(row["backend_version"]),
                                          isl, osl, c, wd, args.fp8_kv_dtype if fp8 else "bf16")
        engine = engine.with_overrides(args.overrides, "--engine-arg (this benchmark run)")
        if args.deployment == "aiconfigurator":
            n, warm = args.requests_per_client * c, args.warmup_per_client * c
        else:
            n, warm = (args.requests_per_client * c if args.requests_per_client else args.num_requests), 0
        try:
            res = predict_serving(prof, model, engine, tp=tp, pp=pp, concurrency=c, isl=isl, osl=osl, num_requests=n,
                                  weight_dtype=wd, kv_dtype=kvd, inter_node_profile=inter, method=args.method,
                                  turnaround_s=turnaround_s, warmup_requests=warm,
                                  warmup_drains=args.deployment == "aiconfigurator" and not args.no_warmup_drain)
        except StepCostError as exc:
            why = (f"TP{tp}: --interconnect given, but accelcal.calibrate.compose is not available to combine it"
                   if notes else f"TP{tp}: {str(exc)[:160]}")
            skipped[why] += 1
            continue
        if not res.feasible:
            infeasible.append((row["id"], res.reason))
            continue
        mt, mp = row["silicon_ttft_ms"] / 1e3, row["silicon_tpot_ms"] / 1e3
        key = (eng, tp, wd)
        if key not in costers:
            costers[key] = StepCoster(prof, model, replica_parallelism(tp, pp, 1, int(prof.identity.devices_per_node)),
                                      engine, wd, kvd, inter)
        one = costers[key].step_s(0, 0.0, ((isl, isl),))
        in_prefills[(eng, c)][0].append(mt / one)
        in_prefills[(eng, c)][1].append(res.metrics.ttft_mean_s / one)
        et = res.metrics.ttft_mean_s / mt - 1
        ep = res.metrics.tpot_mean_s / mp - 1
        for key in ("all", f"engine {eng} {row['backend_version']}", f"TP{tp}"):
            errs[key][0].append(et)
            errs[key][1].append(ep)
        if rows:
            print(f"  {row['id'][-48:]:<48} {eng:<7} c{c:<4} {isl}x{osl} "
                  f"TTFT {res.metrics.ttft_mean_s * 1e3:9.1f} vs {mt * 1e3:9.1f} ms ({et:+.0%})  TPOT "
                  f"{res.metrics.tpot_mean_s * 1e3:7.2f} vs {mp * 1e3:7.2f} ms ({ep:+.0%})")
    return errs, skipped, infeasible, in_prefills


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/serving-dev/qwen3-32b-h100.csv"))
    ap.add_argument("--profile", default=str(ROOT / "profiles/nvidia-h100.yaml"))
    ap.add_argument("--interconnect", default=str(ROOT / "profiles/interconnect/h100-nvswitch-4of8.yaml"),
                    help="intra-node interconnect profile for the TP>1 rows (default: the shipped H100 NVSwitch "
                         "profile, published nccl-tests; 'none': TP=1 rows only)")
    ap.add_argument("--inter-node-profile", default=None)
    ap.add_argument("--model", default=None, help="model config (default: the qwen3-32b preset)")
    ap.add_argument("--deployment", choices=DEPLOYMENTS, default="aiconfigurator",
                    help="engine settings: the recipe the rows were run with (default) or the engines' own defaults")
    ap.add_argument("--fp8-kv-dtype", choices=("bf16", "fp8_e4m3"), default="bf16",
                    help="KV dtype for the fp8 rows when the deployment recipe does not set one (--deployment default)")
    ap.add_argument("--num-requests", type=int, default=None,
                    help="--deployment default: requests per point (default: the predictor's)")
    ap.add_argument("--requests-per-client", type=int, default=None,
                    help="requests per point = this x concurrency (default 20 with --deployment aiconfigurator: "
                         "aiconfigurator's generated aiperf benchmark, bench_run.sh.j2 BENCH_MULTI_ROUND=20)")
    ap.add_argument("--warmup-per-client", type=int, default=2,
                    help="--deployment aiconfigurator: warm-up requests = this x concurrency (bench_run.sh.j2: 2)")
    ap.add_argument("--turnaround-ms", default=None,
                    help="client turnaround bound(s) in ms, comma-separated for a sensitivity table "
                         f"(default: the workload's {ServingWorkload.turnaround_s * 1e3:g} ms)")
    ap.add_argument("--method", choices=("simulate", "steady"), default="simulate",
                    help="step-level simulation (default) or the analytic steady state")
    ap.add_argument("--engine-arg", action="append", default=[], metavar="KEY=VALUE",
                    help="override one engine preset key on every row after the deployment recipe (an ablation, "
                         "e.g. overlap_scheduling=false or tp_all_reduce_kernel=); repeatable")
    ap.add_argument("--no-warmup-drain", action="store_true",
                    help="--deployment aiconfigurator: run the measured requests straight after the warm-up in one "
                         "loop instead of aiperf's drained warm-up and fresh burst (an ablation)")
    ap.add_argument("--rows", action="store_true", help="print every row's prediction")
    args = ap.parse_args()
    from accelcal.planner.serving.cli import parse_engine_args

    try:
        args.overrides = parse_engine_args(args.engine_arg)
        EnginePreset.from_name("vllm").with_overrides(args.overrides, "--engine-arg")
    except ValueError as exc:
        ap.error(f"--engine-arg: {exc}")
    if args.requests_per_client is None and args.deployment == "aiconfigurator":
        args.requests_per_client = 20
    turnarounds = ([float(x) / 1e3 for x in args.turnaround_ms.split(",")] if args.turnaround_ms
                   else [ServingWorkload.turnaround_s])
    df = pd.read_csv(args.data)
    model = resolve_model(args.model)
    prof = Profile.load(args.profile)
    ic = Profile.load(args.interconnect) if args.interconnect and args.interconnect != "none" else None
    inter = Profile.load(args.inter_node_profile) if args.inter_node_profile else None
    prof, inter, notes = combine_profiles(prof, ic, inter)
    for n in notes:
        print(f"note: {n}")
    print(f"data {args.data}: {len(df)} rows; model {model.name}; profile {prof.identity.name}; deployment "
          f"{args.deployment}; fp8 rows: weights fp8_e4m3"
          + (f", KV {args.fp8_kv_dtype}" if args.deployment == "default" else ", KV as the recipe sets it")
          + (f"; {args.requests_per_client} x concurrency requests after {args.warmup_per_client} x concurrency "
             f"warm-up{'' if args.no_warmup_drain else ' (drained first)'}" if args.deployment == "aiconfigurator"
             else "") + (f"; engine overrides {args.overrides}" if args.overrides else ""))
    for ta in turnarounds:
        t0 = time.perf_counter()
        if len(turnarounds) > 1:
            print(f"--- client turnaround up to {ta * 1e3:g} ms")
        errs, skipped, infeasible, in_prefills = run_rows(df, args, model, prof, ic, inter, ta, notes, args.rows)
        wall = time.perf_counter() - t0
        print(summary("overall", *errs["all"]))
        for key in sorted(k for k in errs if k != "all"):
            print(summary(key, *errs[key]))
        print(f"not predicted: {sum(skipped.values())} rows")
        for why, n in skipped.most_common():
            print(f"  {n:4d} x {why}")
        print(f"called infeasible: {len(infeasible)} rows")
        for rid, why in infeasible:
            print(f"  {rid}: {why}")
        print("TTFT in prefills (median over the rows of TTFT / one prompt's predicted prefill step), measured / predicted:")
        for eng in sorted({e for e, _ in in_prefills}):
            cells = [f"c{c} {np.median(m):.1f}/{np.median(p):.1f}" for (e, c), (m, p) in sorted(in_prefills.items())
                     if e == eng]
            print(f"  {eng:<7} " + "  ".join(cells))
        print(f"targets: TPOT mean <= 10%, TTFT mean <= 20%, no row infeasible; {wall:.1f} s for "
              f"{len(errs['all'][0])} predictions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
