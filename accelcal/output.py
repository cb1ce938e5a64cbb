"""The output convention of every reporting command: ``--format table|json``.

    from accelcal.output import add_format_option, print_json
    add_format_option(parser)                  # --format table|json, table by default
    if args.format == "json":
        print_json({"tpot_s": 0.0054})         # keys carry units: _s, _bytes, _bytes_per_s, _flop_per_s

show, compare, plan, predict, validate and env use it; the exit codes are in accelcal.exitcodes.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

__all__ = ["FORMATS", "add_format_option", "print_json", "json_safe"]

FORMATS: tuple[str, ...] = ("table", "json")
"""``table`` for people, ``json`` for scripts (one document on stdout; notes go to stderr)."""


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default) or json: one JSON document on stdout, units in key names")


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats as None (strict JSON has no NaN) and tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_text(obj: Any) -> str:
    """The one JSON spelling of command output: strict JSON (NaN as null), indented."""
    return json.dumps(json_safe(obj), indent=1, allow_nan=False)


def print_json(obj: Any) -> None:
    print(json_text(obj))
