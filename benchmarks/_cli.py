"""One line and exit 2 for a benchmark script's bad input (a missing file, a bad value), as accelcal's CLI does.

    from _cli import run_main     # a benchmark script, run as python benchmarks/<name>.py
    if __name__ == "__main__":
        run_main(main)
"""

from __future__ import annotations

import os
import statistics
import sys
from typing import Callable


def run_main(main: Callable[..., int | None], *args: object) -> None:
    """``sys.exit(main(*args))``; bad input (ValueError, a missing or unreadable file, an empty statistic) is one
    line on stderr naming the script, exit 2, where it had been a traceback."""
    name = os.path.basename(sys.argv[0]) or "benchmark"
    try:
        rc = main(*args)
    except (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            ZeroDivisionError, statistics.StatisticsError) as exc:
        # StatisticsError is a ValueError; ZeroDivisionError: a count of 0 given where a positive one goes
        print(f"{name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rc)
