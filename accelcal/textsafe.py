"""Terminal-safe text: control characters from files are shown escaped, never sent to the terminal raw.

    from accelcal.textsafe import safe, SafeStream
    print(safe("gpu\\x1b]0;pwned\\x07"))      # gpu\\x1b]0;pwned\\x07  (visible, no window title set)
    sys.stdout = SafeStream(sys.stdout)       # what `accelcal show` / `plan` / `compare` do

A profile's ``name`` or ``device_name`` is data from a file: an OSC/CSI
escape sequence, a carriage return or a NUL in it could set the window title,
clear the screen, or overwrite a printed line with a fake one.  ``safe``
replaces every C0/C1 control character except newline and tab (and the
Unicode line/paragraph separators and bidi overrides) with a visible
``\\xNN``/``\\uNNNN`` escape.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

__all__ = ["brief", "safe", "SafeStream"]

_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe(text: Any, keep_newlines: bool = True) -> str:
    """``str(text)`` with control characters escaped (newlines and tabs kept unless ``keep_newlines`` is False)."""
    s = _UNSAFE.sub(_escape, str(text))
    if not keep_newlines:
        s = s.replace("\n", "\\n").replace("\t", "\\t")
    return s


class SafeStream:
    """A text stream wrapper that escapes control characters in everything written through it."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(safe(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters with a visible end (``'8  2  float ...' (1234 chars)``),
    for error messages that quote what a file held: a plain ``{value!r:.40}`` cuts off the closing quote and reads
    as garbled."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit].rstrip()} ... ({len(text)} chars)"
