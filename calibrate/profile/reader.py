"""Strict reading of profile YAML: schema constants, plausibility ceilings and the typed reader.

    from accelcal.calibrate.profile.reader import Reader
    r = Reader("my.yaml")
    r.bandwidth(3.35e12, "memory.copy.bandwidth_bytes_per_s")   # 3.35e12
    r.bandwidth("1e12", "x")    # ProfileError: YAML reads exponents without a dot as strings ...

Every problem is a :class:`ProfileError` naming the file and the key path.
No torch, only the standard library.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .errors import ProfileError

__all__ = ["MAX_BANDWIDTH_BYTES_PER_S", "MAX_FLOP_PER_S", "MAX_MEMORY_BYTES", "MAX_MESSAGE_BYTES", "MAX_TIME_S",
           "MEMORY_PATTERNS", "Reader", "SCHEMA_VERSION", "SOURCES", "TOP_LEVEL"]

SCHEMA_VERSION = 1
"""The only schema version this loader reads."""

# Implausibility ceilings: a value above one is almost surely a unit slip (1e9 too big).
MAX_BANDWIDTH_BYTES_PER_S = 1e14
MAX_FLOP_PER_S = 1e17
MAX_TIME_S = 10.0
MAX_MEMORY_BYTES = 1e14
MAX_MESSAGE_BYTES = 1e13

SOURCES = ("measured", "datasheet")
MEMORY_PATTERNS = ("copy", "read", "write")

TOP_LEVEL = "(top level)"
"""Key path printed for problems with the document as a whole (no key to name)."""


class Reader:
    """Typed access to a nested dict that reports errors as ``origin: key.path: problem``."""

    def __init__(self, origin: str):
        self.origin = origin

    def fail(self, path: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.origin}: {path}: {problem}")

    def mapping(self, value: Any, path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {type(value).__name__} {value!r:.60}")
        unknown = [k for k in value if k not in required and k not in optional]
        if unknown:
            raise self.fail(path, f"unknown key(s) {unknown}; allowed: {sorted(list(required) + list(optional))}")
        missing = [k for k in required if k not in value]
        if missing:
            raise self.fail(path, f"missing required key(s) {missing}")
        return value

    def string(self, value: Any, path: str, choices: Sequence[str] | None = None, empty_ok: bool = True) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {type(value).__name__} {value!r:.60}")
        if choices is not None and value not in choices:
            raise self.fail(path, f"expected one of {list(choices)}, got {value!r}")
        if not empty_ok and not value.strip():
            raise self.fail(path, "expected a non-empty string")
        return value

    def integer(self, value: Any, path: str, lo: int = 0, hi: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.fail(path, f"expected an integer, got {type(value).__name__} {value!r:.60}")
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
                raise self.fail(path, f"expected a number, got the string {value!r}") from None
            raise self.fail(path, f"expected a number, got the string {value!r}: YAML reads exponents without a "
                                  f"dot as strings; write it as {float(value)!r} (e.g. 1.0e9, not 1e9)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a number, got {type(value).__name__} {value!r:.60}")
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise self.fail(path, f"expected a finite number, got {value}")
        if value < lo or (lo_open and value == lo):
            raise self.fail(path, f"expected {'>' if lo_open else '>='} {lo:g}, got {value:g}")
        if hi is not None and value > hi:
            raise self.fail(path, f"{value:g} is above the plausible ceiling {hi:g}{(' for ' + what) if what else ''}; "
                                  f"a unit slip (1e9 too big)?")
        return value

    def bandwidth(self, v: Any, path: str, optional: bool = False) -> float | None:
        return self.number(v, path, lo=0.0, lo_open=True, hi=MAX_BANDWIDTH_BYTES_PER_S, what="bytes/s", optional=optional)

    def flops(self, v: Any, path: str, optional: bool = False) -> float | None:
        return self.number(v, path, lo=0.0, lo_open=True, hi=MAX_FLOP_PER_S, what="FLOP/s", optional=optional)

    def seconds(self, v: Any, path: str, optional: bool = False) -> float | None:
        return self.number(v, path, lo=0.0, hi=MAX_TIME_S, what="seconds", optional=optional)

    def str_list(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of strings, got {type(value).__name__}")
        return [self.string(v, f"{path}[{i}]") for i, v in enumerate(value)]
