"""``accelcal bench kernels``: run the single-device kernel suite and write its results.

    $ accelcal bench kernels --quick --out results/
    $ accelcal bench kernels --device cuda:0 --full --ops gemm,attention --dtypes bf16,fp8_e4m3
    $ accelcal bench kernels --device cpu --ops memory,overhead --out /tmp/k

Writes ``<out>/kernels.csv`` (long format, one row per case and figure),
``kernels.parquet`` (when pyarrow is present), ``kernels.json`` (readable by
``pytest-benchmark compare``) and ``kernels.env.json`` (provenance), atomically.
torch is imported only inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .model_shapes import QUICK_FOR_TP
from .shapes import ALL_DTYPES as DTYPE_CHOICES  # torch-free modules: --help stays fast
from .suite import OPS as OPS_CHOICES


def _list_type(choices: tuple[str, ...], what: str):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if not items or bad:
            shown = ", ".join(map(repr, bad)) if bad else "an empty list"
            raise argparse.ArgumentTypeError(f"got {shown}; choose a comma-separated subset of {','.join(choices)}")
        return items

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "kernels",
        help="single-device microbenchmarks: GEMM, memory bandwidth, launch/sync overheads, attention",
        description="Measure GEMM (per dtype, model projection shapes x an M sweep), memory copy/read/write "
                    "bandwidth, launch and synchronise overheads, scaled_dot_product_attention and a decoder layer's "
                    "eager elementwise ops (RMSNorm, RoPE, SiLU-mul, residual add) on one device; "
                    "write kernels.csv/.parquet/.json/.env.json to --out.",
    )
    p.add_argument("--device", default=None,
                   help="device to measure: cpu, cuda:0, ... (default: the accelerator if any, else cpu)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="preset", action="store_const", const="quick",
                      help="quick preset (default): sized for <= 60 s on an idle 2-core CPU and <= 90 s on one H100/H200 "
                           "(benchmarks/results/*/kernel_suite_time.txt); a loaded machine takes longer")
    size.add_argument("--full", dest="preset", action="store_const", const="full",
                      help="full preset: the dense M sweep over every model projection (long)")
    p.set_defaults(preset="quick")
    p.add_argument("--ops", type=_list_type(OPS_CHOICES, "--ops"), default=None,
                   help=f"comma-separated op groups to run (default: all): {','.join(OPS_CHOICES)}")
    p.add_argument("--dtypes", type=_list_type(DTYPE_CHOICES, "--dtypes"), default=None,
                   help=f"comma-separated dtypes for GEMM and attention (default: the preset's): {','.join(DTYPE_CHOICES)}")
    p.add_argument("--out", default="results", metavar="DIR",
                   help="output folder for kernels.csv/.parquet/.json/.env.json (default: %(default)s)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar or stage lines (the summary is still printed)")
    p.add_argument("--verbose", action="store_true",
                   help="also print one line per case (default: a bar per op group with elapsed time and ETA on a "
                        "terminal, one line per op group in a log)")
    p.add_argument("--for-model", default=None, metavar="NAME[,NAME...]",
                   help="sweep only these models' projection shapes divided by each --tp degree (GEMM), in "
                        "--model-dtypes at --model-ms: a targeted sweep to add to a profile "
                        "(scripts/refit_models.py --add-raw)")
    p.add_argument("--tp", default=None, metavar="T[,T...]",
                   help=f"TP degrees for --for-model (default: {','.join(map(str, QUICK_FOR_TP))})")
    p.add_argument("--model-dtypes", type=_list_type(DTYPE_CHOICES, "--model-dtypes"), default=None,
                   help="dtypes for --for-model shapes (default: bf16)")
    p.add_argument("--model-ms", default=None, metavar="M[,M...]",
                   help="M values for --for-model shapes (default: 1,16,128,1024,4096)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch intra-op threads for the run (default: torch's own default); `accelcal calibrate` "
                        "uses cores // ranks on a CPU so one device is one rank's share")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from accelcal.exitcodes import EXIT_FAILED
    from accelcal.preflight import check_dir
    from accelcal.results import STATUS_OK

    from .suite import run_suite, summary_table

    if not args.for_model and (args.model_dtypes or args.model_ms or args.tp):
        raise ValueError("--tp / --model-dtypes / --model-ms go with --for-model (they choose its shapes)")
    check_dir(args.out, what="--out", need_bytes=16 * 2**20)  # before minutes of measuring
    stem = "kernels"  # the files this run writes: <stem>.csv, .json, .env.json, .parquet
    earlier = sorted(p.name for p in Path(args.out).glob(f"{stem}.*")) if Path(args.out).is_dir() else []
    if earlier:
        # said before the run, not after: an earlier measurement is about to be replaced (the new files are written
        # whole when the run ends; an interrupted run leaves them as they are)
        print(f"[kernels] note: {args.out} holds an earlier run ({', '.join(earlier)}); this run replaces those "
              f"files when it ends (another --out keeps both)", file=sys.stderr)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        # Before the suite captures the environment, so torch_num_threads records the setting.
        torch.set_num_threads(args.threads)
    from accelcal.progress import LOG_EVERY_S, StageProgress

    preset = args.preset
    if args.for_model:
        preset = model_sweep(args.for_model, args.tp, args.model_dtypes, args.model_ms)
    rs = run_suite(device=args.device, preset=preset, ops=args.ops or (["gemm"] if args.for_model else None),
                   dtypes=args.dtypes or (list(preset.model_dtypes) if args.for_model else None),
                   progress=print if args.verbose and not args.quiet else None,
                   bar=StageProgress("kernels", quiet=args.quiet, log_every_s=LOG_EVERY_S))
    print(summary_table(rs))
    frame = rs.frame()
    if frame.empty or not (frame["status"] == STATUS_OK).any():
        # a run that measured nothing does not replace an earlier run's files with an empty set
        print(f"accelcal bench kernels: nothing measured ({len(frame)} case(s), none ok); {args.out} is left as it was",
              file=sys.stderr)
        return EXIT_FAILED
    paths = rs.write(args.out, stem=stem)
    for kind, path in paths.items():
        print(f"wrote {kind:<7} {path}")
    return 0


def model_sweep(for_model: str, tp: str, dtypes, ms: str | None):
    """A suite preset of only the models' TP-divided projection shapes (kernels/model_shapes.py)."""
    from .model_shapes import MODEL_SHAPE_DTYPES, MODEL_SHAPE_MS, model_gemm_shapes, parse_for_model, with_model_shapes
    from .shapes import SuitePreset

    models, tps = parse_for_model(for_model, tp)
    try:
        m_list = [int(m) for m in ms.split(",") if m.strip()] if ms else list(MODEL_SHAPE_MS)
    except ValueError:
        raise ValueError(f"--model-ms: expected comma-separated integers, got {ms!r}") from None
    if not m_list or min(m_list) < 1:
        raise ValueError(f"--model-ms: need M values >= 1, got {ms!r}")
    shapes, notes = model_gemm_shapes(models, tps)
    for note in notes:
        print(f"[kernels] note: {note}")
    if not shapes:
        raise ValueError(f"--for-model {for_model} --tp {tp}: no GEMM shape left to measure ({'; '.join(notes)}); "
                         f"give a TP degree the model splits evenly")
    dts = tuple(dtypes or MODEL_SHAPE_DTYPES)
    base = SuitePreset(name="for-model", timing="quick", dtypes=dts, case_budget_s=3.0)
    return with_model_shapes(base, models, tps, m_list, dts)
