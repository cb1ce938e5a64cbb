"""Sweep presets for the collective benchmarks, as data (no torch needed).

    from accelcal.collectives.presets import PRESETS, sweep_sizes
    sizes = sweep_sizes("quick", device_type="cpu")        # [8, 64, 512, ...]
    sizes = sweep_sizes("quick", "cuda", min_bytes=1 << 20)  # accelerator sizes from 1 MiB
    fp = FIT_PRESETS["quick"]                 # what `accelcal calibrate --quick` measures: fp.name == "fit-quick"
    sizes = sweep_sizes(fp.name, "cpu"); fit_dtype("cpu")   # factor-2 sizes 8 B .. 4 MiB; "fp32"

A preset picks the timing-core preset (``kernels.timing.TimingConfig``), a few
timing overrides, and the message sizes: powers of two from 8 B up to 256 MiB
on accelerators, a smaller range on the CPU so a quick world-2 gloo sweep ends
within a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DTYPES", "FIT_PRESETS", "OPS", "PRESETS", "SweepPreset", "fit_dtype", "pow2_sizes", "sweep_sizes", "validate_names"]

OPS: tuple[str, ...] = (
    "all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv", "send_recv_pingpong",
)
"""Every collective the harness knows, in sweep order."""

DTYPES: tuple[str, ...] = ("fp32", "bf16", "fp16", "fp8_e4m3")
"""dtype names as ARCHITECTURE.md spells them; unsupported ones are probed and recorded as skipped."""

MiB = 1 << 20


def pow2_sizes(lo_bytes: int, hi_bytes: int, step: int = 2) -> tuple[int, ...]:
    """Sizes from ``lo_bytes`` growing ``step`` times each, with ``hi_bytes`` always the last."""
    if lo_bytes <= 0 or hi_bytes < lo_bytes:
        raise ValueError(f"size range must satisfy 0 < lo <= hi; got lo={lo_bytes} B, hi={hi_bytes} B")
    if step < 2:
        raise ValueError(f"size step must be >= 2, got {step}")
    out, s = [], lo_bytes
    while s <= hi_bytes:
        out.append(s)
        s *= step
    if out[-1] != hi_bytes:
        out.append(hi_bytes)
    return tuple(out)


@dataclass(frozen=True)
class SweepPreset:
    """How long to time each case and which message sizes to sweep."""

    name: str
    """Preset name (``smoke``, ``quick``, ``default``, ``full``)."""
    timing: str
    """Name of the timing-core preset (``TimingConfig.preset``)."""
    timing_overrides: dict = field(default_factory=dict)
    """Fields of that TimingConfig changed for collectives (e.g. shorter budgets for tests)."""
    cpu_sizes_bytes: tuple[int, ...] = ()
    """Message sizes S on the CPU (gloo); smaller than on accelerators."""
    accel_sizes_bytes: tuple[int, ...] = ()
    """Message sizes S on accelerators: powers of two 8 B .. 256 MiB."""
    default_deadline_s: float = 600.0
    """Hard outer deadline for the whole sweep when the caller gives none."""
    cpu_rounds: int = 1
    """CPU (gloo) only: separate launches of the whole sweep that ``accelcal calibrate`` runs and reduces to the
    median of the per-round medians.  gloo on a shared CPU has whole-case slow states (a case's median at
    2-4 ms instead of 0.4 ms, from host scheduling) that persist within one launch; fresh ranks redraw them.
    Accelerator collectives run on the device and are measured in one round."""


PRESETS: dict[str, SweepPreset] = {
    # Tests: a handful of samples per case, sizes given by the test.
    "smoke": SweepPreset("smoke", "quick", {"warmup_s": 0.002, "budget_s": 0.004, "min_reps": 3, "max_reps": 5, "queue_len": 2},
                         pow2_sizes(8, 64 * 1024, 64), pow2_sizes(8, 256 * MiB, 64), 180.0),
    "quick": SweepPreset("quick", "quick", {"warmup_s": 0.01, "budget_s": 0.04}, pow2_sizes(8, 2 * MiB, 8), pow2_sizes(8, 256 * MiB, 4), 600.0),
    "default": SweepPreset("default", "default", {}, pow2_sizes(8, 16 * MiB, 4), pow2_sizes(8, 256 * MiB, 2), 3600.0),
    "full": SweepPreset("full", "full", {}, pow2_sizes(8, 64 * MiB, 2), pow2_sizes(8, 256 * MiB, 2), 4 * 3600.0),
}
"""Presets by name; ``quick`` is the CI/smoke default."""

# What ``accelcal calibrate`` measures: only what the profile fits (one dtype, sizes a factor 2 apart so
# every size range holds enough points for a 2-3 piece fit), with at least 30 samples per case so the
# medians of gloo's heavy-tailed per-call times (p50 ~0.5 ms, p90 3-4 ms on a shared 2-core VM) are
# stable.  The full matrix of ops x dtypes stays with ``accelcal bench collectives`` and PRESETS.
FIT_PRESETS: dict[str, SweepPreset] = {
    "smoke": SweepPreset("fit-smoke", "quick", {"warmup_s": 0.002, "budget_s": 0.004, "min_reps": 3, "max_reps": 5, "queue_len": 2},
                         pow2_sizes(8, 64 * 1024, 8), pow2_sizes(8, 256 * MiB, 8), 180.0),
    "quick": SweepPreset("fit-quick", "quick", {"warmup_s": 0.02, "budget_s": 0.03, "min_reps": 30, "max_reps": 60, "queue_len": 4},
                         pow2_sizes(8, 4 * MiB, 2), pow2_sizes(8, 256 * MiB, 2), 900.0, cpu_rounds=3),
    "full": SweepPreset("fit-full", "full", {"min_reps": 50}, pow2_sizes(8, 64 * MiB, 2), pow2_sizes(8, 1024 * MiB, 2),
                        4 * 3600.0, cpu_rounds=3),
}
"""Calibration sweeps by calibrate preset (``--smoke``/``--quick``/``--full``); also reachable as ``fit-<name>``."""

FIT_DTYPE: dict[str, str] = {"cpu": "fp32"}
"""The dtype calibrate measures and the collective fits use, by device type; default ``bf16`` (accelerators)."""


def fit_dtype(device_type: str) -> str:
    """Activations travel as fp32 on CPUs (bf16 matmuls there are slow emulation) and as bf16 on accelerators."""
    return FIT_DTYPE.get(device_type, "bf16")


PRESETS.update({p.name: p for p in FIT_PRESETS.values()})


def get_preset(name: str) -> SweepPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown collectives preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def sweep_sizes(preset: str, device_type: str = "cpu", min_bytes: int | None = None, max_bytes: int | None = None) -> tuple[int, ...]:
    """The preset's sizes for ``device_type``, filtered to [min_bytes, max_bytes]."""
    p = get_preset(preset)
    sizes = p.cpu_sizes_bytes if device_type == "cpu" else p.accel_sizes_bytes
    lo = min_bytes if min_bytes is not None else 0
    hi = max_bytes if max_bytes is not None else float("inf")
    if lo > hi:
        raise ValueError(f"--min-bytes ({min_bytes}) is larger than --max-bytes ({max_bytes})")
    picked = tuple(s for s in sizes if lo <= s <= hi)
    if not picked:
        raise ValueError(f"no {preset!r} size for {device_type} lies in [{lo}, {hi}] bytes; the preset has {list(sizes)}")
    return picked


def validate_names(kind: str, given: list[str] | tuple[str, ...] | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """Check user-given op or dtype names; None means all of them."""
    if not given:
        return known
    bad = [g for g in given if g not in known]
    if bad:
        raise ValueError(f"unknown {kind} {bad}; expected any of {list(known)}")
    return tuple(dict.fromkeys(given))
