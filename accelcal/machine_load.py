"""How busy the rest of the machine was while this process measured: other processes' CPU use inflates every
host-side timing (CPU devices, launch and dispatch overheads), so a measuring command says when it happened.

    start = cpu_seconds()
    ...                                            # measure
    note = busy_note(start, wall_s, "validation")  # "" on a quiet machine
"""

from __future__ import annotations

import os

__all__ = ["BUSY_SHARE", "busy_note", "cpu_seconds"]

BUSY_SHARE = 0.25
"""Other processes using more than this share of the cores on average make a run "busy"."""


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine from /proc/stat, CPU seconds of this process and its waited-for
    children), or None where /proc/stat cannot be read."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)) / hz  # all but idle and iowait
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def busy_note(start: tuple[float, float] | None, wall_s: float, during: str) -> str:
    """A warning when other processes used the CPU during ``during`` (since ``start``, ``wall_s`` seconds ago);
    this run's own processes (its ranks, once waited for) do not count.  "" on a quiet machine."""
    end = cpu_seconds()
    if start is None or end is None or wall_s <= 0:
        return ""
    others = max(0.0, (end[0] - start[0]) - (end[1] - start[1])) / wall_s  # cores' worth used by other processes
    cores = os.cpu_count() or 1
    if others > BUSY_SHARE * cores:
        return (f"the machine was busy: other processes used {others:.2f} of {cores} cores on average during "
                f"{during}; CPU timings are inflated by that work, rerun on a quiet machine before trusting them")
    return ""
