"""The ``accelcal`` command: one console script, one subcommand per job.

    $ accelcal --help
    $ accelcal env
    $ accelcal bench kernels --quick
    $ accelcal calibrate --quick --out profiles/my-node.yaml
    $ accelcal plan --profile profiles/my-node.yaml --model llama3-8b

Each area registers its own subcommands from its ``cli`` module
(``register(subparsers)``).  Those modules import torch only inside their
handlers, so ``accelcal plan`` and ``accelcal show`` run without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from accelcal.calibrate.profile.errors import ProfileQueryError

from . import __version__

# (module, what it adds) in help order.
_AREAS: tuple[str, ...] = (
    "accelcal.envcli",
    "accelcal.kernels.cli",
    "accelcal.collectives.cli",
    "accelcal.calibrate.cli",
    "accelcal.planner.cli",
    "accelcal.planner.serving.cli",
    "accelcal.validate.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accelcal",
        description="Measure an accelerator node, fit a profile, and plan Transformer inference on it.",
    )
    parser.add_argument("--version", action="version", version=f"accelcal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = sub.add_parser("bench", help="run a microbenchmark suite (kernels, collectives)")
    bench_sub = bench.add_subparsers(dest="suite", metavar="SUITE")
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])
    for name in _AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue  # an area without a CLI yet
        module.register(sub, bench_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("accelcal: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ProfileQueryError) as exc:
        # Input errors and a profile that lacks a measurement the command needs: one clear line, no traceback.
        # Any other exception (a KeyError included) is a bug and keeps its traceback.
        print(f"accelcal {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
