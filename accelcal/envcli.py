"""``accelcal env``: print what a measurement on this machine would record as provenance.

    $ accelcal env --device cpu
    $ accelcal env --format json
    $ accelcal env --device cpu --json-out out/environment.json   # the table on stdout, the JSON in a file
"""

from __future__ import annotations

import argparse
import os

from .exitcodes import EXIT_OK
from .output import add_format_option, print_json


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="show the environment that results and profiles record",
                       description="Print the environment accelcal records with every result and profile: host, "
                                   "device and its memory, torch / CUDA / HIP / NCCL versions, CPU, Python and "
                                   "platform.")
    p.add_argument("--device", default=None, help="device to describe (cpu, cuda:0, ...); default: the accelerator if any")
    add_format_option(p)
    p.add_argument("--json-out", metavar="FILE", default=None,
                   help="also write the JSON document to FILE (written whole or not at all), so one capture gives "
                        "both the table and the file (capturing imports torch and queries the device: seconds)")
    p.add_argument("--force", action="store_true", help="replace an existing --json-out file")
    # The flag before --format existed; kept so older scripts still get JSON.
    p.add_argument("--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from accelcal.kernels.device import available_devices
    from accelcal.kernels.environment import capture_environment

    if args.json_out and os.path.lexists(args.json_out) and not args.force:
        # checked before the capture: the file may be a run's recorded environment (<stem>.env.json beside its results)
        raise ValueError(f"--json-out {args.json_out}: exists; pass --force to replace it (a results CSV's .env.json "
                         f"is the provenance of its run), or give another file")
    env = capture_environment(args.device)
    env["available_devices"] = available_devices()
    if args.json_out:
        from .atomic import atomic_write_text
        from .output import json_text

        atomic_write_text(args.json_out, json_text(env) + "\n")
    if args.format == "json":
        print_json(env)
        return EXIT_OK
    from .units import fmt_bytes

    width = max(len(k) for k in env)
    for k, v in env.items():
        # the table is for people: byte counts with their unit as well (--format json keeps the raw numbers)
        shown = f"{v} ({fmt_bytes(v)})" if k.endswith("_bytes") and isinstance(v, (int, float)) else v
        print(f"{k:<{width}}  {shown}")
    return EXIT_OK
