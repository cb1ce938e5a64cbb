"""The profile's two errors: a file that breaks the schema, and a query the profile cannot answer.

    from accelcal.calibrate.profile import MissingMeasurement, ProfileQueryError
    try:
        profile.gemm_time_s(1, 2, 3, "fp8_e4m3")
    except MissingMeasurement as exc:      # a ProfileQueryError, never a KeyError
        print(exc)                         # says what is missing and what the profile has

``MissingMeasurement`` is deliberately not a ``KeyError``: a typo in a Python
key must not be mistaken for a missing measurement by a caller catching it.
"""

from __future__ import annotations

__all__ = ["MissingCollective", "MissingMeasurement", "ProfileError", "ProfileQueryError"]


class ProfileError(ValueError):
    """A profile that does not satisfy the schema; the message names the file and key path."""


class ProfileQueryError(LookupError):
    """A profile query that cannot be answered (base of :class:`MissingMeasurement`); not a KeyError."""


class MissingMeasurement(ProfileQueryError):
    """A query the profile cannot answer at all; the message says what is missing and what is there."""


class MissingCollective(MissingMeasurement):
    """A collective the profile has no data for (op, scope or group size): the fix is a fabric's measurements,
    where another missing measurement's is the device's own."""
