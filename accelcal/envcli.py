"""``accelcal env``: print what a measurement on this machine would record as provenance.

    $ accelcal env --device cpu
    $ accelcal env --json
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, bench_sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="show the environment that results and profiles record")
    p.add_argument("--device", default=None, help="device to describe (cpu, cuda:0, ...); default: the accelerator if any")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from accelcal.kernels.device import available_devices
    from accelcal.kernels.environment import capture_environment

    env = capture_environment(args.device)
    env["available_devices"] = available_devices()
    if args.json:
        print(json.dumps(env, indent=1))
        return 0
    width = max(len(k) for k in env)
    for k, v in env.items():
        print(f"{k:<{width}}  {v}")
    return 0
