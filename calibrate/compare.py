"""What moved between two profiles of the same machine, beyond measurement noise.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.compare import compare_profiles, format_changes
    changes = compare_profiles(Profile.load("old.yaml"), Profile.load("new.yaml"))
    print(format_changes(changes))

Quantities are compared as predicted times at the same operating points (the old
profile's measured GEMM shapes, its measured size range for memory and
collectives), so a profile whose fit chose a different number of pieces still
compares.  The noise band of a quantity is twice the larger held-out median
error stored in the two profiles' quality, never less than ``MIN_NOISE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .profile import MissingMeasurement, Profile, Quality

__all__ = ["Change", "compare_profiles", "format_changes", "MIN_NOISE", "OVERHEAD_NOISE"]

MIN_NOISE = 0.03
"""Smallest relative change ever called significant."""
OVERHEAD_NOISE = 0.20
"""Noise band for launch/sync constants (no fit quality; host jitter dominates)."""


@dataclass(frozen=True)
class Change:
    """One compared quantity."""

    quantity: str
    """What was compared, e.g. ``gemm bf16 time (median over 40 shapes)``."""
    old: float
    """Old value (seconds unless the name says otherwise)."""
    new: float
    """New value."""
    rel_change: float
    """new / old - 1."""
    noise: float
    """Relative change below which the difference is measurement noise."""

    @property
    def significant(self) -> bool:
        return abs(self.rel_change) > self.noise


def _noise(*qs: Quality | None) -> float:
    vals = [q.heldout_median_rel_err for q in qs if q is not None]
    return max(MIN_NOISE, 2 * max(vals)) if vals else max(MIN_NOISE, 0.10)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def compare_profiles(old: Profile, new: Profile) -> list[Change]:
    """Changes for every quantity both profiles have."""
    out: list[Change] = []

    def add(name: str, a: float, b: float, noise: float) -> None:
        if a > 0 and math.isfinite(a) and math.isfinite(b):
            out.append(Change(name, a, b, b / a - 1.0, noise))

    for dt, e in old.compute.items():
        if dt not in new.compute:
            continue
        shapes = [p[:3] for p in e.points] or [[4096.0, 4096.0, 4096.0], [1.0, 4096.0, 4096.0]]
        ratios = [new.gemm_time_s(*s, dt).time_s / old.gemm_time_s(*s, dt).time_s for s in shapes]
        noise = _noise(e.quality, new.compute[dt].quality)
        add(f"gemm {dt} time (median ratio over {len(shapes)} shapes)", 1.0, _median(ratios), noise)
        add(f"gemm {dt} peak_flop_per_s", e.peak_flop_per_s, new.compute[dt].peak_flop_per_s, noise)
        add(f"gemm {dt} memory_bandwidth_bytes_per_s", e.memory_bandwidth_bytes_per_s,
            new.compute[dt].memory_bandwidth_bytes_per_s, noise)
    for pat, e in old.memory.items():
        if pat not in new.memory:
            continue
        noise = _noise(e.quality, new.memory[pat].quality)
        add(f"memory {pat} bandwidth_bytes_per_s", e.bandwidth_bytes_per_s, new.memory[pat].bandwidth_bytes_per_s, noise)
        if e.quality is not None:
            for size in (e.quality.range_min, e.quality.range_max):
                add(f"memory {pat} time at {size:.4g} bytes", old.memory_time_s(size, pat).time_s,
                    new.memory_time_s(size, pat).time_s, noise)
    for fld in ("eager_launch_s", "launch_sync_s", "sync_s", "graph_kernel_s"):
        a, b = getattr(old.overheads, fld), getattr(new.overheads, fld)
        if a is not None and b is not None:
            add(f"overheads {fld}", a, b, OVERHEAD_NOISE)
    for dt, phases in old.attention.items():
        for ph, e in phases.items():
            n = new.attention.get(dt, {}).get(ph)
            if n is not None:
                noise = _noise(e.quality, n.quality)
                add(f"attention {dt} {ph} flop_per_s", e.flop_per_s, n.flop_per_s, noise)
                add(f"attention {dt} {ph} bytes_per_s", e.bytes_per_s, n.bytes_per_s, noise)
    for c in old.collectives:
        match = [x for x in new.collectives if x.key == c.key]
        if not match:
            continue
        noise = _noise(c.quality, match[0].quality)
        sizes = [c.quality.range_min, math.sqrt(max(c.quality.range_min, 1.0) * c.quality.range_max),
                 c.quality.range_max] if c.quality else [1 << 20]
        for s in sizes:
            try:
                a = old.collective_time_s(c.op, s, c.group_size, c.scope).time_s
                b = new.collective_time_s(c.op, s, c.group_size, c.scope).time_s
            except MissingMeasurement:
                continue
            add(f"{c.label} time at {s:.4g} bytes", a, b, noise)
    return out


def format_changes(changes: list[Change], only_significant: bool = False) -> str:
    """A table: quantity, old, new, change, noise band, verdict."""
    rows = [c for c in changes if c.significant or not only_significant]
    if not rows:
        return "nothing to compare" if not changes else "no change beyond measurement noise"
    w = max(len(c.quantity) for c in rows)
    lines = [f"{'quantity':<{w}}  {'old':>11}  {'new':>11}  {'change':>8}  {'noise':>7}  verdict"]
    for c in rows:
        verdict = ("FASTER" if _faster(c) else "SLOWER") if c.significant else "within noise"
        lines.append(f"{c.quantity:<{w}}  {c.old:>11.4g}  {c.new:>11.4g}  {c.rel_change:>+8.1%}  {c.noise:>7.1%}  {verdict}")
    n_sig = sum(c.significant for c in changes)
    lines.append(f"{n_sig} of {len(changes)} quantities moved beyond measurement noise")
    return "\n".join(lines)


def _faster(c: Change) -> bool:
    # Rates (per_s) up = faster; times down = faster.
    return (c.rel_change > 0) == c.quantity.endswith("_per_s")
