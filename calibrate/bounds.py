"""Plausibility bounds for every profile quantity, both sides, as data.

    from accelcal.calibrate.bounds import BOUNDS, check
    problem = check("bandwidth", 1e-30)     # "1e-30 is below the plausible floor 1000 for bytes/s; ..."
    BOUNDS["flop_per_s"].hi                 # 1e17

A value outside its range is almost surely a unit slip (GB/s written as B/s:
1e9 too small; B/s written where GB/s was meant: 1e9 too big) or a corrupted
file, and a planner fed with it prints TTFT 4.7e37 s or ``inf``.  The loader
(calibrate/profile.py) refuses such a value naming the key; ``compare`` uses
the same table to flag a change that lands outside it.  The ranges are wide
on purpose: they must hold for a 2-core CPU under gloo as well as for the
largest accelerator node, and a real measurement never trips them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Bound", "BOUNDS", "check"]


@dataclass(frozen=True)
class Bound:
    """The plausible range of one kind of quantity."""

    lo: float
    """Smallest plausible value (inclusive)."""
    hi: float
    """Largest plausible value (inclusive)."""
    unit: str
    """Unit printed in messages."""
    zero_ok: bool = False
    """True when exactly 0 is valid too (a fitted latency or overhead on its lower bound)."""
    why: str = ""
    """What the ends stand for."""


BOUNDS: dict[str, Bound] = {
    "bandwidth": Bound(1e3, 1e14, "bytes/s", why="1 kB/s: far below gloo on a busy 2-core CPU at 512 B (~3e5 B/s "
                                                 "measured here); 100 TB/s: above any HBM or fabric"),
    "memory_bandwidth": Bound(1e6, 1e14, "bytes/s", why="1 MB/s: below any device's memory (a 2-core CPU VM copies "
                                                         "at about 2.7e10 B/s here); a value under it is a GB/s figure "
                                                         "written as B/s; 100 TB/s: above any HBM"),
    "flop_per_s": Bound(1e6, 1e17, "FLOP/s", why="1 MFLOP/s: below one CPU core; 1e17: above any one device "
                                                 "(dense fp8 on the largest accelerators is ~1e16)"),
    "seconds": Bound(0.0, 10.0, "s",
                     why="0: a fitted latency may sit on its lower bound (a tiny time cannot blow up a plan); "
                         "10 s: no kernel or collective of a sweep takes longer"),
    "memory_bytes": Bound(2.0**24, 1e14, "bytes", why="16 MiB: smaller than any device memory that runs a model; "
                                                      "100 TB: above any device"),
    "message_bytes": Bound(1.0, 1e13, "bytes", why="one byte up to 10 TB"),
}
"""Kind of quantity -> its plausible range."""


def check(kind: str, value: float) -> str | None:
    """None when ``value`` is plausible for ``kind``, else the problem in words (with the bound and a hint)."""
    b = BOUNDS[kind]
    if not math.isfinite(value):
        return f"expected a finite number of {b.unit}, got {value}"
    if value == 0 and b.zero_ok:
        return None
    if value < 0 <= b.lo:
        return f"expected >= 0, got {value:g} (a negative {b.unit} is impossible)"
    if value < b.lo:
        return (f"{value:g} is below the plausible floor {b.lo:g} for {b.unit}"
                + (" (or exactly 0)" if b.zero_ok else "") + "; a unit slip (1e9 too small) or a corrupted file?")
    if value > b.hi:
        return f"{value:g} is above the plausible ceiling {b.hi:g} for {b.unit}; a unit slip (1e9 too big)?"
    return None
