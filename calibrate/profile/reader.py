"""Strict reading of profile YAML: schema constants, plausibility ceilings and the typed reader.

    from accelcal.calibrate.profile.reader import Reader
    r = Reader("my.yaml")
    r.bandwidth(3.35e12, "memory.copy.bandwidth_bytes_per_s")   # 3.35e12
    r.bandwidth("1e12", "x")    # ProfileError: YAML reads 1e12 as a string; write 1.0e+12 ...

Every problem is a :class:`ProfileError` naming the file and the key path.
No torch, only the standard library.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from accelcal.safe_io import short as _short

from ..bounds import BOUNDS as _BOUNDS
from ..bounds import check as _plausible
from .errors import ProfileError

__all__ = ["MAX_BANDWIDTH_BYTES_PER_S", "MAX_FLOP_PER_S", "MAX_MEMORY_BYTES", "MAX_MESSAGE_BYTES", "MAX_TIME_S",
           "MEMORY_PATTERNS", "Reader", "SCHEMA_VERSION", "SOURCES", "TOP_LEVEL"]

SCHEMA_VERSION = 1
"""The only schema version this loader reads."""

# Implausibility ceilings: a value above one is almost surely a unit slip (1e9 too big).  Both ends of each
# range live in calibrate/bounds.py (one table, also used by compare).
MAX_BANDWIDTH_BYTES_PER_S = _BOUNDS["bandwidth"].hi
MAX_FLOP_PER_S = _BOUNDS["flop_per_s"].hi
MAX_TIME_S = _BOUNDS["seconds"].hi
MAX_MEMORY_BYTES = _BOUNDS["memory_bytes"].hi
MAX_MESSAGE_BYTES = _BOUNDS["message_bytes"].hi

PROFILE_MAX_BYTES = 16 * 2**20
"""Largest profile file read (a measured full-sweep profile is ~100 KiB)."""

SOURCES = ("measured", "datasheet", "published")
"""measured: by accelcal here; datasheet: vendor figures; published: measured by someone else (nccl-tests logs), cited."""
MEMORY_PATTERNS = ("copy", "read", "write")

TOP_LEVEL = "(top level)"
"""Key path printed for problems with the document as a whole (no key to name)."""


def _yaml_float(text: str) -> bool:
    """Whether PyYAML reads ``text`` as a float."""
    import yaml

    return isinstance(yaml.safe_load(f"x: {text}")["x"], float)


def _yaml_exponent(x: float) -> str:
    """``x`` in the exponent form PyYAML reads as a float: a dot and a signed exponent (8.5e+10, 1.0e-06)."""
    mant, exp = f"{x:.12e}".split("e")
    mant = mant.rstrip("0")
    return f"{mant}0e{exp}" if mant.endswith(".") else f"{mant}e{exp}"


def _short_list(keys: list) -> str:
    """At most 5 keys, only identifier-like ones spelled out: an error about a wrong file must not print the file."""
    import re

    def one(k: Any) -> str:
        if isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,39}", k):
            return repr(k)
        return f"<a {type(k).__name__} key of {len(str(k))} characters>"

    more = f", ... {len(keys) - 5} more (is this an accelcal profile?)" if len(keys) > 5 else ""
    return "[" + ", ".join(one(k) for k in keys[:5]) + more + "]"


class Reader:
    """Typed access to a nested dict that reports errors as ``origin: key.path: problem``."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, path: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.origin}: {path}: {problem}")

    def mapping(self, value: Any, path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {type(value).__name__} {_short(value)}")
        unknown = [k for k in value if k not in required and k not in optional]
        if unknown:
            raise self.fail(path, f"unknown key(s) {_short_list(unknown)}; allowed: {sorted(list(required) + list(optional))}")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(path, f"missing required key(s) {missing}")
        return value

    def string(self, value: Any, path: str, choices: Sequence[str] | None = None, empty_ok: bool = True) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {type(value).__name__} {_short(value)}")
        if choices is not None and value not in choices:
            raise self.fail(path, f"expected one of {list(choices)}, got {_short(value)}")
        if not empty_ok and not value.strip():
            raise self.fail(path, "expected a non-empty string")
        return value

    def integer(self, value: Any, path: str, lo: int = 0, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.fail(path, f"expected an integer, got {type(value).__name__} {_short(value)}")
        if value < lo or (hi is not None and value > hi):
            raise self.fail(path, f"expected an integer in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
        return value

    def number(self, value: Any, path: str, *, lo: float = 0.0, lo_open: bool = False,
               hi: float | None = None, what: str = "", optional: bool = False) -> float | None:
        """A finite float; strings that look like numbers are refused with a hint (PyYAML reads ``1e9`` as a string)."""
        if value is None:
            if optional:
                return None
            raise self.fail(path, "expected a number, got null (only optional fields may be null)")
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                raise self.fail(path, f"expected a number, got the string {_short(value)}") from None
            # only forms PyYAML reads back as a float (repr gives 5e-06 for small values, which it does not)
            forms = [f for f in dict.fromkeys((repr(float(value)), _yaml_exponent(float(value)))) if _yaml_float(f)]
            raise self.fail(path, f"expected a number, got the string {value!r}: YAML (PyYAML) reads an exponent "
                                  f"form as a number only with a dot and a signed exponent; write it as "
                                  f"{' or '.join(forms)} (e.g. 1.0e+9, not 1e9 or 1.0e9)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {type(value).__name__} {_short(value)}")
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise self.fail(path, f"expected a finite number, got {value}")
        if value < lo or (lo_open and value == lo):
            raise self.fail(path, f"expected {'>' if lo_open else '>='} {lo:g}, got {value:g}")
        if hi is not None and value > hi:
            raise self.fail(path, f"{value:g} is above the plausible ceiling {hi:g}{(' for ' + what) if what else ''}; "
                                  f"a unit slip (1e9 too big)?")
        return value

    def plausible(self, kind: str, v: Any, path: str, optional: bool = False) -> float | None:
        """A number inside calibrate/bounds.py's range for ``kind`` (both ends)."""
        value = self.number(v, path, lo=-math.inf, optional=optional)
        if value is not None:
            problem = _plausible(kind, value)
            if problem:
                raise self.fail(path, problem)
        return value

    def bandwidth(self, v: Any, path: str, optional: bool = False) -> float | None:
        return self.plausible("bandwidth", v, path, optional)

    def memory_bandwidth(self, v: Any, path: str, optional: bool = False) -> float | None:
        """A device memory's bandwidth: a tighter floor than a collective piece's (calibrate/bounds.py)."""
        return self.plausible("memory_bandwidth", v, path, optional)

    def flops(self, v: Any, path: str, optional: bool = False) -> float | None:
        return self.plausible("flop_per_s", v, path, optional)

    def seconds(self, v: Any, path: str, optional: bool = False) -> float | None:
        return self.plausible("seconds", v, path, optional)

    def str_list(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of strings, got {type(value).__name__}")
        return [self.string(v, f"{path}[{i}]") for i, v in enumerate(value)]
