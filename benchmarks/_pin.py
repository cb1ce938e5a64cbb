"""Pin the benchmark process to one CPU where the OS allows it (search-speed targets are per core).

    from _pin import pin_to_one_cpu    # a benchmark script, run as python benchmarks/<name>.py
    pin_to_one_cpu()
"""

from __future__ import annotations

import os


def pin_to_one_cpu() -> None:
    """Restrict this process to the lowest-numbered CPU it may use; a no-op where affinity is not settable."""
    if hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        except OSError:
            pass
