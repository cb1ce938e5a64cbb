"""``accelcal validate``: real decoder layers vs the planner's predictions (written into the profile with --write).

    $ accelcal validate --profile profiles/my-cpu.yaml --quick
    $ accelcal validate --profile profiles/my-cpu.yaml --nproc 2 --model tiny --format json
    $ accelcal validate --profile profiles/h100.yaml --device cuda:0 --model llama3-8b --write

Prints measured vs predicted per case (and, with ``--nproc 2``, the TP=2 vs
TP=1 x DP=2 ranking both ways); with ``--write`` it also writes the profile's
``validation`` section atomically (run_bench.sh passes it).  A failed run
leaves the profile untouched.  torch is imported only inside the handler.
"""

from __future__ import annotations

import argparse
import sys

from accelcal.exitcodes import EXIT_OK
from accelcal.output import add_format_option, print_json

__all__ = ["register"]


def _models(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more model names or YAML paths, comma-separated")
    return names


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="run real decoder layers and compare them with the planner's predictions",
        description="Build real torch decoder layers (dense and MoE, prefill and decode, eager and graph-replayed "
                    "where the device has graphs, TP=1 and TP=N), time them, compare with the planner's prediction "
                    "for the same layer and layout, and print the errors (with --write, also into the profile's "
                    "validation section).",
    )
    p.add_argument("--profile", required=True, metavar="P", help="profile YAML to validate (and update)")
    p.add_argument("--device", default=None, metavar="D", help="device to run on: cpu, cuda:0, ... (default: the accelerator if any, else cpu)")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="ranks for the TP=N cases and the TP=N vs TP=1 x DP=N ranking (gloo on CPU, nccl on GPUs; default 1)")
    p.add_argument("--model", type=_models, default=None, metavar="M[,M...]",
                   help="planner model presets, YAML configs or Hugging Face config.json files (default: small,small-moe on CPU, whose layers exceed the last-level cache; llama3-8b,mixtral-8x7b on GPUs)")
    p.add_argument("--dtype", default=None, help="dtype to run and predict in (default: fp32 on CPU, bf16 on GPUs)")
    p.add_argument("--quick", action="store_true", help="fewer shapes and short timing budgets (CI, smoke runs)")
    p.add_argument("--shapes", type=int, default=None, metavar="N",
                   help="(batch, length) shapes per phase and model (default: 2 with --quick, else all)")
    p.add_argument("--preset", choices=["quick", "default", "full"], default=None,
                   help="timing preset (default: quick with --quick, else default)")
    p.add_argument("--no-ranking", action="store_true", help="skip the TP vs DP ranking check when --nproc > 1")
    p.add_argument("--results", default=None, metavar="DIR",
                   help="also write the measurements as long-format records (validation.csv/.json/.env.json) to DIR")
    p.add_argument("--implementation", default="torch-eager", metavar="NAME",
                   help="kernel-count preset the planner costs the layers with (models/presets/implementations; "
                        "default torch-eager: the validation layers are plain PyTorch run eagerly, so the planner "
                        "must count their ~40 dispatched ops, not a serving engine's fused kernels)")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--write", action="store_true",
                   help="write the results into the profile's validation section (default: print only)")
    w.add_argument("--no-write", dest="write", action="store_false", help=argparse.SUPPRESS)  # the old default's flag
    add_format_option(p)
    p.set_defaults(func=_handle)


def _handle(args: argparse.Namespace) -> int:
    from .compare import format_table
    from .ranking import format_rankings
    from .runner import run_validation

    run = run_validation(args.profile, device=args.device, nproc=args.nproc, models=args.model, quick=args.quick,
                         write=args.write, dtype=args.dtype, ranking=not args.no_ranking, preset=args.preset,
                         shapes=args.shapes, results_dir=args.results, implementation=args.implementation,
                         # with --format json stdout is the one JSON document: progress goes to stderr
                         progress=(lambda m: print(m, file=sys.stderr, flush=True)) if args.format == "json" else print)
    if args.format == "json":
        print_json(run_to_json(run, args.profile))
        return EXIT_OK
    print()
    print(f"validation on {run.device} ({run.device_name}), dtype {run.dtype}, {run.wall_s:.1f} s")
    print(format_table(run.comparisons))
    if run.rankings:
        print(format_rankings(run.rankings))
    for note in run.notes:
        print(f"note: {note}")
    if run.written:
        print(f"wrote the validation section of {args.profile}")
    else:
        print(f"{args.profile} left unchanged (pass --write to record this validation in it)")
    sys.stdout.flush()
    return EXIT_OK


def run_to_json(run, profile_path: str) -> dict:
    """A validation run as JSON: per case measured/predicted seconds and relative error; rankings; notes."""
    return {
        "profile": profile_path, "device": run.device, "device_name": run.device_name, "dtype": run.dtype,
        "wall_s": run.wall_s, "written": run.written, "median_abs_rel_err": run.median_abs_rel_err,
        "max_abs_rel_err": run.max_abs_rel_err,
        "cases": [{"case": c.case.name, **c.case.to_dict(), "method": c.method, "measured_s": c.measured_s,
                   "predicted_s": c.predicted_s, "rel_err": c.rel_err,
                   "predicted_breakdown_s": dict(c.breakdown), "note": c.note} for c in run.comparisons],
        "rankings": [{"phase": r.phase, "labels": list(r.labels), "measured_s": list(r.measured_s),
                      "predicted_s": list(r.predicted_s)} for r in run.rankings],
        "notes": list(run.notes),
    }
