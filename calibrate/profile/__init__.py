"""The accelerator profile: typed schema, strict YAML loader, atomic writer, query API.

    from accelcal.calibrate.profile import Profile
    p = Profile.load("profiles/datasheet/h100-sxm.yaml")
    est = p.gemm_time_s(4096, 4096, 4096, "bf16")
    print(est.time_s, est.extrapolated, est.detail, est.source)
    p.collective_time_s("all_reduce", 64 * 2**20, group_size=8).time_s

Schema version 1 is fixed in docs/ARCHITECTURE.md.  Loading is strict: every
unknown key, missing key, wrong type, NaN/inf, negative or implausible number
(a 1e9 unit slip) and every number that YAML read as a string raises
:class:`ProfileError` naming the file and the key path.  A query the profile
cannot answer raises :class:`MissingMeasurement` (a :class:`ProfileQueryError`,
not a KeyError).  No torch (the planner runs it on laptops without torch).

Modules, by job: ``reader`` (strict reading, ceilings), ``entries`` (one
dataclass per section entry), ``perf`` (the GEMM roofline and its efficiency
correction), ``profile`` (the Profile and its queries), ``protocol`` (what the
planner asks of a profile), ``errors``.  The vocabulary names re-exported here
(DTYPE_BYTES, busbw_factor, ...) are defined in :mod:`accelcal.vocab`.
"""

from accelcal.vocab import (BUSBW_FACTORS, DTYPE_BYTES, ELEMENTWISE_GROUPS, PHASES, SCOPES, attention_flop_bytes,
                            busbw_factor, gemm_flop)

from .entries import AttentionEntry, CollectiveEntry, CollectivePiece, ComputeEntry, MemoryEntry, Overheads, Quality
from .provenance import Identity, Validation, ValidationCase
from .errors import MissingCollective, MissingMeasurement, ProfileError, ProfileQueryError
from .perf import WAVE_TILE, gemm_estimate_s, gemm_model_time_s
from .profile import Estimate, Profile
from .protocol import ProfileQueries
from .reader import (MAX_BANDWIDTH_BYTES_PER_S, MAX_FLOP_PER_S, MAX_MEMORY_BYTES, MAX_MESSAGE_BYTES, MAX_TIME_S,
                     MEMORY_PATTERNS, SCHEMA_VERSION, SOURCES)

__all__ = [
    "SCHEMA_VERSION",
    "DTYPE_BYTES",
    "BUSBW_FACTORS",
    "ProfileError",
    "ProfileQueryError",
    "MissingMeasurement",
    "MissingCollective",
    "Estimate",
    "ProfileQueries",
    "Quality",
    "Identity",
    "ComputeEntry",
    "MemoryEntry",
    "Overheads",
    "AttentionEntry",
    "CollectivePiece",
    "CollectiveEntry",
    "ValidationCase",
    "Validation",
    "Profile",
    "gemm_flop",
    "gemm_model_time_s",
    "gemm_estimate_s",
    "attention_flop_bytes",
    "busbw_factor",
]
