"""One formatter for every number a person reads: value + unit, scaled to a readable prefix.

    from accelcal.units import fmt
    fmt(7.755e14, "flop_per_s")   # '775.5 TFLOP/s'
    fmt(4.8e12, "bytes_per_s")    # '4800 GB/s'
    fmt(3.2e-5, "s")              # '32 us'
    fmt(1 << 30, "bytes")         # '1 GiB'
    fmt(0.717, "ratio")           # '0.717x'

Units are the suffixes the project puts in names (``_s``, ``_bytes``,
``_bytes_per_s``, ``_flop_per_s``), so ``fmt(v, key.rsplit(...))`` works on a
field name.  Rates use decimal prefixes (GB/s, TFLOP/s: how datasheets and
nccl-tests quote them); sizes use binary ones (KiB, MiB, GiB: how messages and
buffers are sized).
"""

from __future__ import annotations

import math

__all__ = ["UNITS", "count", "fmt", "fmt_time_s", "fmt_bytes", "fmt_bytes_per_s", "fmt_flop_per_s", "unit_of_key"]

UNITS: tuple[str, ...] = ("s", "bytes", "bytes_per_s", "flop_per_s", "flop", "ratio", "fraction")
"""Units :func:`fmt` knows, longest suffix match first in :func:`unit_of_key`."""


def _num(x: float, digits: int) -> str:
    # 3820 with 3 digits reads "3820", not "3.82e+03": a prefix step is 1000, so the integer part always fits.
    return f"{x:.0f}" if abs(x) >= 10 ** digits else f"{x:.{digits}g}"


def fmt_time_s(v: float, digits: int = 4) -> str:
    """Seconds with ns/us/ms/s; below 1 ps (a fitted constant at its zero bound) reads ``0 s``."""
    if abs(v) < 1e-12 or not math.isfinite(v):
        return f"{0.0 if math.isfinite(v) else v:g} s"
    for mul, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us"), (1e9, "ns")):
        if abs(v) * mul >= 1 or unit == "ns":
            return f"{_num(v * mul, digits)} {unit}"
    return f"{v:g} s"  # unreachable: ns catches the rest


def fmt_bytes(v: float, digits: int = 4) -> str:
    """Bytes with binary prefixes (B, KiB, MiB, GiB, TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(v) < 1024:
            return f"{v:.0f} B" if unit == "B" else f"{_num(v, digits)} {unit}"
        v /= 1024
    return f"{_num(v, digits)} TiB"


def _decimal(v: float, unit: str, digits: int) -> str:
    for div, pre in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{_num(v / div, digits)} {pre}{unit}"
    return f"{_num(v, digits)} {unit}"


def fmt_bytes_per_s(v: float, digits: int = 4) -> str:
    """Bandwidth in GB/s (decimal; MB/s below 1 GB/s), as datasheets and nccl-tests quote it."""
    if abs(v) >= 1e9:
        return f"{_num(v / 1e9, digits)} GB/s"
    return _decimal(v, "B/s", digits)


def fmt_flop_per_s(v: float, digits: int = 4) -> str:
    """FLOP/s with decimal prefixes (TFLOP/s for accelerators, GFLOP/s for CPUs)."""
    return _decimal(v, "FLOP/s", digits)


def fmt(v: float | None, unit: str, digits: int = 4) -> str:
    """``v`` in ``unit`` (one of :data:`UNITS`) as readable text; None reads ``not measured``."""
    if v is None:
        return "not measured"
    if unit == "s":
        return fmt_time_s(v, digits)
    if unit == "bytes":
        return fmt_bytes(v, digits)
    if unit == "bytes_per_s":
        return fmt_bytes_per_s(v, digits)
    if unit == "flop_per_s":
        return fmt_flop_per_s(v, digits)
    if unit == "flop":
        return _decimal(v, "FLOP", digits)
    if unit == "ratio":
        return f"{_num(v, digits)}x"
    if unit == "fraction":
        return f"{v:.1%}"
    raise ValueError(f"unknown unit {unit!r}; expected one of {', '.join(UNITS)}")


def unit_of_key(key: str) -> str | None:
    """The unit a field name ends with (``peak_flop_per_s`` -> ``flop_per_s``), or None."""
    for unit in sorted(UNITS, key=len, reverse=True):
        if key == unit or key.endswith("_" + unit):
            return unit
    return None


def count(n: int, noun: str) -> str:
    """``n`` and the noun, plural unless n is 1: count(1, "device") = "1 device", count(8, "device") = "8 devices"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
