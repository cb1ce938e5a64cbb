"""What moved between two profiles of the same machine, beyond measurement noise.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.compare import compare_profiles, format_changes
    changes = compare_profiles(Profile.load("old.yaml"), Profile.load("new.yaml"))
    print(format_changes(changes))

Changes are judged on what the profiles *predict*: both profiles' query API
answers at the same operating points (the old profile's measured GEMM shapes,
its measured size range for memory and collectives, the kernel-suite attention
cases inside its measured FLOP range), so a profile whose fit chose a different
number of pieces still compares.  Raw fitted parameters (peak FLOP/s, byte
rates) are listed only as context and never judged: a rate that no measured
point is bound by (a byte rate when compute dominates every point) can swing by
orders of magnitude between two runs while every prediction stays put.  A size
outside the new profile's own measured range is shown as context, not judged
(the new figure there is an extrapolation).  The
noise band of a quantity is twice the larger held-out median error stored in
the two profiles' quality, never less than ``MIN_NOISE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from accelcal.units import fmt, fmt_bytes
from accelcal.vocab import DTYPE_BYTES, attention_flop_bytes, gemm_element_bytes

from .profile import MissingMeasurement, Profile, Quality, gemm_model_time_s

__all__ = ["Change", "compare_profiles", "format_changes", "changes_to_json", "missing_in_new", "regressions", "attention_cases_in_range",
           "MIN_NOISE", "OVERHEAD_NOISE"]

MIN_NOISE = 0.03
"""Smallest relative change ever called significant."""
OVERHEAD_NOISE = 0.20
"""Noise band for launch/sync constants (no fit quality; host jitter dominates)."""
_UNBOUNDED = 1e30
"""A rate so high its term never wins the roofline max (to test whether a parameter binds at a point)."""


@dataclass(frozen=True)
class Change:
    """One compared quantity."""

    quantity: str
    """What was compared, e.g. ``gemm bf16 time (median ratio over 40 shapes)``."""
    old: float
    """Old value (seconds unless the name says otherwise)."""
    new: float
    """New value."""
    rel_change: float
    """new / old - 1."""
    noise: float
    """Relative change below which the difference is measurement noise."""
    judged: bool = True
    """False for raw fitted parameters: shown as context, never called faster/slower."""
    note: str = ""
    """Why a context row is there, e.g. how many measured points the parameter binds at."""
    group: str = ""
    """Fitted quantity it belongs to (``gemm bf16``): context rows are shown next to a judged change of their group."""
    unit: str = "s"
    """Unit of ``old``/``new`` (an accelcal.units name): ``s``, ``ratio`` (median new/old time), ``flop_per_s``,
    ``bytes_per_s``."""

    @property
    def significant(self) -> bool:
        return self.judged and abs(self.rel_change) > self.noise

    @property
    def verdict(self) -> str:
        """``FASTER`` / ``SLOWER`` / ``within noise`` for judged rows, ``context`` for raw parameters."""
        if not self.judged:
            return "context"
        return ("FASTER" if _faster(self) else "SLOWER") if self.significant else "within noise"


def _noise(*qs: Quality | None) -> float:
    vals = [q.heldout_median_rel_err for q in qs if q is not None]
    return max(MIN_NOISE, 2 * max(vals)) if vals else max(MIN_NOISE, 0.10)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _binding_note(binds_old: int, binds_new: int, n_points: int, what: str) -> str:
    if max(binds_old, binds_new) == 0:
        return f"not pinned down: limits none of the {n_points} {what} in either profile"
    return f"limits {binds_old} (old) / {binds_new} (new) of {n_points} {what}"


def attention_cases_in_range(profile: Profile, dtype: str, phase: str) -> list[dict[str, Any]]:
    """Kernel-suite attention cases (every preset for this device type) inside the profile's measured FLOP range.

    A profile stores the fitted rates and the FLOP range, not the cases; the suite presets are where the
    measured cases came from, so these are the measured cases or their neighbours within the range.
    """
    from accelcal.kernels.shapes import suite_preset  # no torch; only needed here

    e = profile.attention.get(dtype, {}).get(phase)
    if e is None:
        return []
    lo, hi = e.quality.range_min * (1 - 1e-9), e.quality.range_max * (1 + 1e-9)
    seen: dict[str, dict[str, Any]] = {}
    for name in ("smoke", "quick", "full"):
        try:
            preset = suite_preset(name, profile.identity.device_type)
        except ValueError:
            continue
        for c in preset.attention_cases:
            case = dict(batch=c.batch, heads=c.heads, kv_heads=c.kv_heads, head_dim=c.head_dim, q_len=c.q_len,
                        kv_len=c.kv_len, causal=c.causal)
            flop, _ = attention_flop_bytes(c.batch, c.q_len, c.kv_len, c.heads, c.kv_heads, c.head_dim,
                                           DTYPE_BYTES[dtype], c.causal)
            if c.phase == phase and lo <= flop <= hi:
                seen.setdefault(c.name, case)
    return list(seen.values())


def compare_profiles(old: Profile, new: Profile,
                     attention_cases: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]] | None = None) -> list[Change]:
    """Changes for every quantity both profiles have: predicted times (judged) and raw parameters (context).

    ``attention_cases`` maps ``(dtype, phase)`` to case dicts (batch, heads, kv_heads, head_dim, q_len, kv_len,
    causal); default: :func:`attention_cases_in_range` of the old profile.
    """
    out: list[Change] = []

    def add(name: str, a: float, b: float, noise: float, group: str, judged: bool = True, note: str = "",
            unit: str | None = None) -> None:
        if unit is None:  # a ratio of times, a time, or a raw parameter whose field name carries its unit
            unit = "ratio" if "ratio" in name else next((u for u in ("flop_per_s", "bytes_per_s") if name.endswith(u)), "s")
        if a > 0 and math.isfinite(a) and math.isfinite(b):
            out.append(Change(name, a, b, b / a - 1.0, noise, judged, note, group, unit))
        else:  # an inf/NaN/zero is never "within noise": flag it (format_changes says IMPLAUSIBLE)
            out.append(Change(name, a, b, math.inf, noise, judged, note or "not a finite positive number", group, unit))

    for dt, e in old.compute.items():
        if dt not in new.compute:
            continue
        ne, grp, (es, out_es) = new.compute[dt], f"gemm {dt}", gemm_element_bytes(dt)
        shapes = [p[:3] for p in e.points] or [[4096.0, 4096.0, 4096.0], [1.0, 4096.0, 4096.0]]
        ratios = [new.gemm_time_s(*s, dt).time_s / old.gemm_time_s(*s, dt).time_s for s in shapes]
        noise = _noise(e.quality, ne.quality)
        add(f"gemm {dt} time (median ratio over {len(shapes)} shapes)", 1.0, _median(ratios), noise, grp)

        def binds(entry, which: str) -> int:
            # A roof limits a point when removing it (rate -> unbounded) lowers the roofline time there.
            n = 0
            for m, nn, k in shapes:
                full = gemm_model_time_s(m, nn, k, es, entry.peak_flop_per_s, entry.memory_bandwidth_bytes_per_s,
                                         entry.overhead_s or 0.0, entry.wave_units, out_es)
                peak = _UNBOUNDED if which == "peak" else entry.peak_flop_per_s
                bw = _UNBOUNDED if which == "bw" else entry.memory_bandwidth_bytes_per_s
                n += gemm_model_time_s(m, nn, k, es, peak, bw, entry.overhead_s or 0.0, entry.wave_units, out_es) < full
            return n

        for fld, which in (("peak_flop_per_s", "peak"), ("memory_bandwidth_bytes_per_s", "bw")):
            add(f"gemm {dt} {fld}", getattr(e, fld), getattr(ne, fld), noise, grp, False,
                _binding_note(binds(e, which), binds(ne, which), len(shapes), "shapes"))
    for pat, e in old.memory.items():
        if pat not in new.memory:
            continue
        ne, grp = new.memory[pat], f"memory {pat}"
        noise = _noise(e.quality, ne.quality)
        if e.quality is not None:
            lo, hi = e.quality.range_min, e.quality.range_max
            sizes = sorted({lo, math.sqrt(max(lo, 1.0) * hi), hi})
        else:
            sizes = [float(1 << 30)]
        for size in sizes:
            add(f"memory {pat} time at {fmt_bytes(size)}", old.memory_time_s(size, pat).time_s,
                new.memory_time_s(size, pat).time_s, noise, grp, *_judged_at(size, ne.quality))
        big = sizes[-1]
        bw_share = [big / x.bandwidth_bytes_per_s / (big / x.bandwidth_bytes_per_s + (x.latency_s or 0.0)) for x in (e, ne)]
        note = (f"streaming bandwidth; {min(bw_share):.0%} of the time at the largest size {fmt_bytes(big)}"
                if min(bw_share) >= 0.5 else
                f"not pinned down: only {min(bw_share):.0%} of the time even at the largest size {fmt_bytes(big)}")
        add(f"memory {pat} bandwidth_bytes_per_s", e.bandwidth_bytes_per_s, ne.bandwidth_bytes_per_s, noise, grp,
            False, note)
    for dt, groups in old.elementwise.items():
        for g, e in groups.items():
            ne = new.elementwise.get(dt, {}).get(g)
            if ne is None:
                continue
            grp = f"elementwise {dt} {g}"
            noise = _noise(e.quality, ne.quality)
            sizes = sorted({e.quality.range_min, e.quality.range_max}) if e.quality is not None else [float(1 << 30)]
            for size in sizes:
                add(f"elementwise {dt} {g} time at {fmt_bytes(size)}", old.elementwise_time_s(g, size, dt).time_s,
                    new.elementwise_time_s(g, size, dt).time_s, noise, grp, *_judged_at(size, ne.quality))
    for fld in ("eager_launch_s", "launch_sync_s", "sync_s", "graph_kernel_s"):
        a, b = getattr(old.overheads, fld), getattr(new.overheads, fld)
        if a is not None and b is not None:
            # Directly measured constants (a median each), not fitted: the value is the prediction.
            add(f"overheads {fld}", a, b, OVERHEAD_NOISE, "overheads")
    for dt, phases in old.attention.items():
        for ph, e in phases.items():
            n = new.attention.get(dt, {}).get(ph)
            if n is None:
                continue
            noise, grp = _noise(e.quality, n.quality), f"attention {dt} {ph}"
            cases = list(attention_cases[(dt, ph)] if attention_cases and (dt, ph) in attention_cases
                         else attention_cases_in_range(old, dt, ph))
            work = [attention_flop_bytes(c["batch"], c["q_len"], c["kv_len"], c["heads"], c["kv_heads"],
                                         c["head_dim"], DTYPE_BYTES[dt], bool(c["causal"])) for c in cases]
            if cases:
                ratios = [new.attention_time_s(ph, c["batch"], c["q_len"], c["kv_len"], c["heads"], c["kv_heads"],
                                               c["head_dim"], dt, bool(c["causal"])).time_s
                          / old.attention_time_s(ph, c["batch"], c["q_len"], c["kv_len"], c["heads"], c["kv_heads"],
                                                 c["head_dim"], dt, bool(c["causal"])).time_s for c in cases]
                add(f"attention {dt} {ph} time (median ratio over {len(cases)} cases)", 1.0, _median(ratios), noise, grp)
                flop_binds = [sum(f / x.flop_per_s >= b / x.bytes_per_s for f, b in work) for x in (e, n)]
                notes = {"flop_per_s": _binding_note(*flop_binds, len(cases), "cases"),
                         "bytes_per_s": _binding_note(*(len(cases) - k for k in flop_binds), len(cases), "cases")}
            else:
                notes = dict.fromkeys(("flop_per_s", "bytes_per_s"),
                                      f"no suite attention case in the measured range "
                                      f"[{fmt(e.quality.range_min, 'flop')}, {fmt(e.quality.range_max, 'flop')}] to predict at")
            for fld in ("flop_per_s", "bytes_per_s"):
                add(f"attention {dt} {ph} {fld}", getattr(e, fld), getattr(n, fld), noise, grp, False, notes[fld])
    for c in old.collectives:
        match = [x for x in new.collectives if x.key == c.key]
        if not match:
            continue
        noise = _noise(c.quality, match[0].quality)
        sizes = [c.quality.range_min, math.sqrt(max(c.quality.range_min, 1.0) * c.quality.range_max),
                 c.quality.range_max] if c.quality else [1 << 20]
        for s in sizes:
            try:
                a = old.collective_time_s(c.op, s, c.group_size, c.scope, c.kernel).time_s
                b = new.collective_time_s(c.op, s, c.group_size, c.scope, c.kernel).time_s
            except MissingMeasurement:
                continue
            add(f"{c.label} time at {fmt_bytes(s)}", a, b, noise, c.label, *_judged_at(s, match[0].quality))
    return out


def _judged_at(size: float, new_q: Quality | None) -> tuple[bool, str]:
    """(judged, note) for a size the old profile measured: a size outside the new profile's measured range is an
    extrapolation of the new fit, shown as context, never called faster or slower."""
    if new_q is None or new_q.range_min * (1 - 1e-9) <= size <= new_q.range_max * (1 + 1e-9):
        return True, ""
    return False, (f"outside the new profile's measured range {fmt_bytes(new_q.range_min)}..{fmt_bytes(new_q.range_max)}"
                   f": the new figure is extrapolated")


def format_changes(changes: list[Change], only_significant: bool = False) -> str:
    """A table: quantity, old, new, change, noise band, verdict; context rows say what they are, never a verdict.

    With ``only_significant``, judged rows beyond noise plus the context rows of their group.
    """
    rows = _shown(changes, only_significant)
    judged = [c for c in changes if c.judged]
    if not any(c.judged for c in rows):
        return "nothing to compare" if not judged else "no change beyond measurement noise in the predicted times"
    w = max(len(c.quantity) for c in rows)
    lines = [f"{'quantity':<{w}}  {'old':>14}  {'new':>14}  {'change':>8}  {'noise':>7}  verdict"]
    for c in rows:
        if not c.judged:
            verdict = f"context, not judged ({c.note})" if c.note else "context, not judged"
        elif _implausible(c):
            verdict = "IMPLAUSIBLE (not finite, or moved more than 1000x: a unit slip or a corrupted file?)"
        else:
            verdict = c.verdict
        lines.append(f"{c.quantity:<{w}}  {fmt(c.old, c.unit):>14}  {fmt(c.new, c.unit):>14}  {c.rel_change:>+8.1%}  "
                     f"{c.noise:>7.1%}  {verdict}")
    n_sig = sum(c.significant for c in changes)
    lines.append(f"{n_sig} of {len(judged)} predicted times moved beyond measurement noise "
                 f"(raw fitted parameters are context only)")
    return "\n".join(lines)


def _implausible(c: Change) -> bool:
    return not math.isfinite(c.rel_change) or not (1e-3 <= 1.0 + c.rel_change <= 1e3)


def _shown(changes: list[Change], only_significant: bool) -> list[Change]:
    # Judged rows beyond noise plus the context rows of their group; everything without only_significant.
    moved = {c.group for c in changes if c.significant}
    return [c for c in changes if not only_significant or c.significant or (not c.judged and c.group in moved)]


def missing_in_new(old: Profile, new: Profile) -> list[str]:
    """Measurements OLD answers and NEW cannot (a dtype, its grouped GEMMs, memory pattern, attention phase,
    elementwise group, sampler kind or collective it lost): no ratio judges them, yet a plan NEW costs cannot use
    them."""
    out = [f"compute.{dt}" for dt in old.compute if dt not in new.compute]
    out += [f"compute.{dt}.grouped_points" for dt, e in old.compute.items()
            if e.grouped_points and dt in new.compute and not new.compute[dt].grouped_points]
    out += [f"memory.{pat}" for pat in old.memory if pat not in new.memory]
    out += [f"attention.{dt}.{ph}" for dt, phs in old.attention.items() for ph in phs
            if ph not in new.attention.get(dt, {})]
    out += [f"elementwise.{dt}.{g}" for dt, gs in old.elementwise.items() for g in gs
            if g not in new.elementwise.get(dt, {})]
    out += [f"sampler.{k}" for k in old.sampler if k not in new.sampler]
    have = {c.key for c in new.collectives}
    out += [c.label for c in old.collectives if c.key not in have]
    return out


def regressions(changes: list[Change]) -> list[Change]:
    """Judged predicted times that got slower beyond their noise band (what ``--fail-on-regression`` fails on)."""
    return [c for c in changes if c.significant and not _faster(c)]


def changes_to_json(changes: list[Change], only_significant: bool = False) -> list[dict[str, Any]]:
    """One dict per change; the values' keys carry their unit (``old_s``, ``new_flop_per_s``, ``old_ratio``)."""
    rows = _shown(changes, only_significant)
    return [{"quantity": c.quantity, "group": c.group, "unit": c.unit, f"old_{c.unit}": c.old, f"new_{c.unit}": c.new,
             "rel_change": c.rel_change, "noise_rel": c.noise, "judged": c.judged, "significant": c.significant,
             "verdict": c.verdict, "note": c.note} for c in rows]


def _faster(c: Change) -> bool:
    # Judged quantities are all times or time ratios: down = faster.
    return c.rel_change < 0
