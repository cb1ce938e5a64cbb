"""``accelcal bench collectives``: the torch.distributed sweep on one node (or inside a torchrun/Slurm job).

    $ accelcal bench collectives --nproc 2 --quick --out results/
    $ accelcal bench collectives --device-type cuda --backend cpu:gloo,cuda:nccl --full
    $ accelcal bench collectives --nproc 4 --ops all_reduce,all_to_all --dtypes bf16 --min-bytes 1024 --max-bytes 1048576

torch is imported only inside the handler (by the ranks, in fact: the local
launcher itself needs none).
"""

from __future__ import annotations

import argparse
import os
import sys

from accelcal.exitcodes import EXIT_FAILED, EXIT_OK

from .presets import DTYPES, OPS, PRESETS  # torch-free: --help stays fast


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "collectives", help="all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send/recv via torch.distributed",
        description="Time every collective on the world and every power-of-two sub-group; one record per case "
                    "(MAX over ranks), algbw and busbw in nccl-tests conventions.")
    p.add_argument("--nproc", type=int, default=None,
                   help="local ranks to start on 127.0.0.1 (default: every device of --device-type; 2 on the CPU); "
                        "ignored inside torchrun/srun, which start the ranks")
    p.add_argument("--device-type", default="cpu", help="cpu, cuda, xpu, ... (default: cpu)")
    p.add_argument("--backend", default=None, help="gloo, nccl, or a map like cpu:gloo,cuda:nccl (default: torch's default for the device)")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--quick", dest="preset", action="store_const", const="quick", help="short timing budget, few sizes (default)")
    speed.add_argument("--full", dest="preset", action="store_const", const="full", help="long budget, every power of two")
    speed.add_argument("--preset", dest="preset", choices=["smoke", "quick", "default", "full"], help="pick a preset by name")
    p.add_argument("--ops", default="", help=f"comma-separated collectives, of: {', '.join(OPS)} (default: all)")
    p.add_argument("--dtypes", default="", help=f"comma-separated dtypes: {','.join(DTYPES)} (default: all)")
    p.add_argument("--sizes", default="", help="comma-separated message sizes S in bytes (overrides the preset)")
    p.add_argument("--min-bytes", type=int, default=None, help="drop preset sizes below this many bytes")
    p.add_argument("--max-bytes", type=int, default=None, help="drop preset sizes above this many bytes")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--stem", default="collectives", help="result file stem (default: collectives)")
    deadlines = ", ".join(f"{k} {v.default_deadline_s:g} s" for k, v in PRESETS.items() if not k.startswith("fit-"))
    p.add_argument("--timeout", type=float, default=None,
                   help=f"hard deadline for the whole sweep in seconds (default: the preset's: {deadlines})")
    p.add_argument("--pg-timeout", type=float, default=60.0, help="per-collective process-group timeout in seconds (default: 60)")
    p.add_argument("--port", type=_port, default=None,
                   help="rendezvous port (default: $MASTER_PORT if set, else a free one); a port another sweep "
                        "holds is an error at once")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the local rendezvous listens on (default: 127.0.0.1, loopback only). Any other "
                        "address exposes an unauthenticated store: use it on a trusted network only")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=run, preset="quick")


def _port(text: str) -> int:
    from .distenv import parse_port

    try:
        return parse_port(text, "--port")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def run(args: argparse.Namespace) -> int:
    from .distenv import in_distributed_env
    from .launch import SweepError, run_sweep
    from .presets import sweep_sizes

    if args.sizes:
        try:
            sizes = [int(x) for x in _csv(args.sizes)]
        except ValueError:
            raise ValueError(f"--sizes {args.sizes!r}: expected comma-separated whole byte counts") from None
        bad = [s for s in sizes if s <= 0]
        if bad:
            raise ValueError(f"--sizes {args.sizes!r}: byte counts must be >= 1, got {', '.join(map(str, bad))}")
        sizes = [s for s in sizes if (args.min_bytes or 0) <= s <= (args.max_bytes or s)]
        if not sizes:
            raise ValueError(f"--sizes {args.sizes!r}: nothing left inside --min-bytes/--max-bytes")
    else:
        sizes = list(sweep_sizes(args.preset, args.device_type, args.min_bytes, args.max_bytes))
    nproc = args.nproc
    if nproc is None and not in_distributed_env():
        if args.device_type == "cpu":
            nproc = 2
        else:
            import torch

            nproc = torch.accelerator.device_count() if torch.accelerator.is_available() else 0
            if nproc < 1:
                raise ValueError(f"--device-type {args.device_type}: no such device visible; pass --device-type cpu")
    if nproc is not None and nproc < 2:
        # one rank's "collective" moves nothing between devices: rows with busbw factor 0 that import would fit
        where = "--nproc" if args.nproc is not None else f"--device-type {args.device_type}: devices visible ="
        raise ValueError(f"{where} {nproc}: a collective needs at least 2 ranks (--nproc 2 or more; on one "
                         f"accelerator, --device-type cpu --nproc 2 measures the host's gloo path instead)")
    from accelcal.progress import StageProgress

    # The sweep's "[i/n]" case lines drive a bar (terminal) or one closing line (log); other lines pass through.
    bar = StageProgress("collectives", quiet=args.quiet)
    try:
        df = run_sweep(nproc or 0, device_type=args.device_type, backend=args.backend, preset=args.preset,
                       out_dir=args.out, sizes=sizes, ops=_csv(args.ops), dtypes=_csv(args.dtypes),
                       timeout_s=args.timeout, pg_timeout_s=args.pg_timeout, master_port=args.port,
                       stem=args.stem, host=args.host, progress=bar.lines("sweep"))
    except SweepError as exc:
        bar.close()
        print(f"accelcal bench collectives: error: {exc}", file=sys.stderr)
        return 1
    bar.close()
    counts = df["status"].value_counts().to_dict()
    # Failed cases are a failed measurement run (accelcal.exitcodes.EXIT_FAILED); 3 means "infeasible plan".
    if os.environ.get("RANK", "0") != "0":
        return EXIT_FAILED if counts.get("failed") else EXIT_OK  # under torchrun/srun only rank 0 reports
    print(f"collectives: {len(df)} records ({', '.join(f'{v} {k}' for k, v in counts.items())}) in "
          f"{os.path.join(args.out, args.stem)}.*")
    return EXIT_FAILED if counts.get("failed") else EXIT_OK
