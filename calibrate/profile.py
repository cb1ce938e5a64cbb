"""The accelerator profile: typed schema, strict YAML loader, atomic writer, query API.

    from accelcal.calibrate.profile import Profile
    p = Profile.load("profiles/datasheet/h100-sxm.yaml")
    est = p.gemm_time_s(4096, 4096, 4096, "bf16")
    print(est.time_s, est.extrapolated, est.detail, est.source)
    p.collective_time_s("all_reduce", 64 * 2**20, group_size=8).time_s

Schema version 1 is fixed in docs/ARCHITECTURE.md.  Loading is strict: every
unknown key, missing key, wrong type, NaN/inf, negative or implausible number
(a 1e9 unit slip) and every number that YAML read as a string raises
:class:`ProfileError` naming the file and the key path.  This module imports
no torch (the planner runs it on laptops without torch), only PyYAML and the
standard library.
"""

from __future__ import annotations

import bisect
import copy
import math
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Sequence

import yaml

from accelcal.atomic import atomic_write_text

__all__ = [
    "SCHEMA_VERSION",
    "DTYPE_BYTES",
    "BUSBW_FACTORS",
    "ProfileError",
    "MissingMeasurement",
    "Estimate",
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
    "gemm_bytes",
    "gemm_model_time_s",
    "gemm_estimate_s",
    "attention_flop_bytes",
    "busbw_factor",
]

SCHEMA_VERSION = 1
"""The only schema version this loader reads."""

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8_e4m3": 1}
"""Element size per dtype name (the dtype names used everywhere in accelcal)."""

# Implausibility ceilings: a value above one is almost surely a unit slip (1e9 too big).
MAX_BANDWIDTH_BYTES_PER_S = 1e14
MAX_FLOP_PER_S = 1e17
MAX_TIME_S = 10.0
MAX_MEMORY_BYTES = 1e14
MAX_MESSAGE_BYTES = 1e13

WAVE_TILE = 128
"""Output tile edge assumed by the wave-quantisation term of the GEMM model (rows and columns)."""

SOURCES = ("measured", "datasheet")
SCOPES = ("intra_node", "inter_node")
PHASES = ("prefill", "decode")
MEMORY_PATTERNS = ("copy", "read", "write")

ELEMENTWISE_GROUPS = ("norm", "residual_add", "rope", "act_mul")
"""Eager elementwise groups of a decoder layer the kernel suite measures (kernels/elementwise.py)."""

# nccl-tests bus-bandwidth factors (DESIGN.md section 2); n = ranks.
BUSBW_FACTORS: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2.0 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
    "send_recv": lambda n: 1.0,
    "send_recv_pingpong": lambda n: 1.0,
}


def busbw_factor(op: str, n: int) -> float:
    """busbw / algbw for ``op`` over ``n`` ranks (nccl-tests convention)."""
    if op not in BUSBW_FACTORS:
        raise KeyError(f"unknown collective {op!r}; known: {sorted(BUSBW_FACTORS)}")
    return BUSBW_FACTORS[op](n)


TOP_LEVEL = "(top level)"
"""Key path printed for problems with the document as a whole (no key to name)."""


class ProfileError(ValueError):
    """A profile that does not satisfy the schema; the message names the file and key path."""


class MissingMeasurement(KeyError):
    """A query the profile cannot answer at all; the message says what is missing and what is there."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Estimate:
    """One answer of the query API."""

    time_s: float
    """Predicted time in seconds."""
    extrapolated: bool
    """True when the query lies outside the measured range (or the figure is not measured at all)."""
    detail: str
    """How the number was obtained (interpolated between ..., ring-model extrapolation ..., datasheet figure)."""
    source: str
    """The profile field it came from, e.g. ``compute.bf16`` or ``collectives[all_reduce,intra_node,8]``."""
    flags: tuple[str, ...] = ()
    """Machine-readable caveats: ``extrapolated``, ``datasheet``, ``not-measured``, ``ring-model``, ``fit-flagged``."""


# ----------------------------------------------------------------------------- strict reading


class _Reader:
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


def _is_present(d: dict, key: str) -> bool:
    return key in d and d[key] is not None


# ----------------------------------------------------------------------------- schema dataclasses


@dataclass
class Quality:
    """How well one fitted quantity matches its measurements."""

    points: int
    """Measured points the fit used."""
    median_rel_err: float
    """Median |predicted/measured - 1| over the fitted points."""
    max_rel_err: float
    """Largest |predicted/measured - 1| over the fitted points."""
    heldout_median_rel_err: float
    """Median |rel err| on points held out of the fit (k-fold or leave-one-out)."""
    heldout_p90_rel_err: float
    """90th percentile of the held-out |rel err|."""
    range_min: float
    """Smallest measured size (bytes for memory/collectives, FLOP for GEMM and attention)."""
    range_max: float
    """Largest measured size, same unit as ``range_min``."""
    converged: bool
    """Whether the optimiser reported convergence."""
    flags: list[str] = field(default_factory=list)
    """Problems: not converged, parameter on a bound, error target missed, too few points, ..."""

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str) -> "Quality":
        names = [f.name for f in fields(cls)]
        d = r.mapping(d, path, names)
        rel = lambda k: r.number(d[k], f"{path}.{k}", hi=1e6)  # noqa: E731
        q = cls(
            points=r.integer(d["points"], f"{path}.points"),
            median_rel_err=rel("median_rel_err"),
            max_rel_err=rel("max_rel_err"),
            heldout_median_rel_err=rel("heldout_median_rel_err"),
            heldout_p90_rel_err=rel("heldout_p90_rel_err"),
            range_min=r.number(d["range_min"], f"{path}.range_min", hi=1e25),
            range_max=r.number(d["range_max"], f"{path}.range_max", hi=1e25),
            converged=d["converged"],
            flags=r.str_list(d["flags"], f"{path}.flags"),
        )
        if not isinstance(q.converged, bool):
            raise r.fail(f"{path}.converged", f"expected true/false, got {q.converged!r}")
        if q.range_min > q.range_max:
            raise r.fail(path, f"range_min ({q.range_min:g}) > range_max ({q.range_max:g})")
        return q

    def to_dict(self) -> dict:
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


@dataclass
class Identity:
    """Who and what was measured, how, and from which source."""

    name: str
    """Profile name, e.g. ``cpu-amd-epyc-2c`` or ``h100-sxm-datasheet``."""
    source: str
    """``measured`` or ``datasheet``."""
    device_type: str
    """cpu | cuda | rocm | ..."""
    device_name: str
    """Marketing / driver name of the device."""
    devices_per_node: int
    """Accelerators per node (ranks per node for CPU runs)."""
    nodes: int
    """Nodes measured (or described)."""
    memory_capacity_bytes: float
    """Memory per device in bytes."""
    host: str
    """Host name the measurement ran on ("" for datasheets)."""
    date: str
    """ISO 8601 date of the measurement (or of the datasheet transcription)."""
    command: str
    """The command line that produced the profile."""
    versions: dict[str, str] = field(default_factory=dict)
    """Software versions: torch, cuda, nccl, driver, python, ..."""
    citations: list[str] = field(default_factory=list)
    """Sources of every number; required non-empty for datasheet profiles."""
    raw_data: list[str] = field(default_factory=list)
    """Raw result files, relative to the profile's folder."""
    threads_per_device: int | None = None
    """CPU only: intra-op threads one "device" (one rank's share of the cores) was measured with; null for
    accelerators and for profiles written before the field existed (optional key)."""
    covered_models: list[str] | None = None
    """Optional: models whose TP-divided GEMM shapes the sweep measured (``accelcal calibrate --for-model``);
    a GEMM query on another (N, K) is flagged ``extrapolated``.  Null/absent: none recorded."""
    covered_tp: list[int] | None = None
    """Optional: the TP degrees ``covered_models`` were divided by."""

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str) -> "Identity":
        opt = ("threads_per_device", "covered_models", "covered_tp")
        names = [f.name for f in fields(cls) if f.name not in opt]
        d = r.mapping(d, path, names, opt)
        versions = d["versions"]
        if not isinstance(versions, dict):
            raise r.fail(f"{path}.versions", f"expected a mapping of name -> version string, got {type(versions).__name__}")
        for k, v in versions.items():
            r.string(v, f"{path}.versions.{k}")
        ident = cls(
            name=r.string(d["name"], f"{path}.name", empty_ok=False),
            source=r.string(d["source"], f"{path}.source", SOURCES),
            device_type=r.string(d["device_type"], f"{path}.device_type", empty_ok=False),
            device_name=r.string(d["device_name"], f"{path}.device_name", empty_ok=False),
            devices_per_node=r.integer(d["devices_per_node"], f"{path}.devices_per_node", lo=1, hi=1024),
            nodes=r.integer(d["nodes"], f"{path}.nodes", lo=1, hi=100000),
            memory_capacity_bytes=r.number(d["memory_capacity_bytes"], f"{path}.memory_capacity_bytes",
                                           lo=0.0, lo_open=True, hi=MAX_MEMORY_BYTES, what="bytes per device"),
            host=r.string(d["host"], f"{path}.host"),
            date=r.string(d["date"], f"{path}.date"),
            command=r.string(d["command"], f"{path}.command"),
            versions=dict(versions),
            citations=r.str_list(d["citations"], f"{path}.citations"),
            raw_data=r.str_list(d["raw_data"], f"{path}.raw_data"),
            threads_per_device=None if d.get("threads_per_device") is None else
            r.integer(d["threads_per_device"], f"{path}.threads_per_device", lo=1, hi=100000),
            covered_models=None if d.get("covered_models") is None else r.str_list(d["covered_models"], f"{path}.covered_models"),
            covered_tp=None if d.get("covered_tp") is None else
            [r.integer(v, f"{path}.covered_tp[{i}]", lo=1, hi=100000) for i, v in enumerate(r_list(r, d["covered_tp"], f"{path}.covered_tp"))],
        )
        if ident.source == "datasheet" and not [c for c in ident.citations if c.strip()]:
            raise r.fail(f"{path}.citations", "a datasheet profile must cite the source of its numbers (empty list)")
        return ident

    def to_dict(self) -> dict:
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        for k in ("covered_models", "covered_tp"):  # optional keys: absent unless recorded
            if out[k] is None:
                del out[k]
        return out


def r_list(r: "_Reader", value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise r.fail(path, f"expected a list, got {type(value).__name__}")
    return value


@dataclass
class ComputeEntry:
    """GEMM performance of one dtype: a roofline with a measured efficiency correction."""

    peak_flop_per_s: float
    """Compute roof: fitted from measurements (best sustained), or the datasheet dense peak."""
    memory_bandwidth_bytes_per_s: float
    """Effective operand-read bandwidth seen by small-M (memory-bound) GEMMs."""
    overhead_s: float | None = None
    """Per-call floor in seconds (optional)."""
    points: list[list[float]] = field(default_factory=list)
    """Measured medians ``[m, n, k, time_s]`` (device time); empty for datasheet priors."""
    quality: Quality | None = None
    """Fit quality (optional for datasheet priors)."""
    wave_units: int | None = None
    """Parallel units (SMs/CUs) for the wave-quantisation term with 128x128 tiles; null = no quantisation term."""

    gemm_model: Any = None
    """Optional :class:`accelcal.calibrate.gemm_model.GemmModel` (key ``gemm_model``): when present the query uses
    it (wave quantisation, split-K, memory-bound small M) instead of the efficiency-interpolated roofline."""

    _ratio_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def model_time_s(self, m: float, n: float, k: float, elsize: int) -> float:
        return gemm_model_time_s(m, n, k, elsize, self.peak_flop_per_s, self.memory_bandwidth_bytes_per_s,
                                 self.overhead_s or 0.0, self.wave_units)

    def estimate_s(self, m: float, n: float, k: float, elsize: int) -> tuple[float, bool, str]:
        """(time_s, extrapolated, detail) from the model corrected by the measured efficiency."""
        if self.gemm_model is not None:
            return self.gemm_model.estimate_s(m, n, k, self.points)
        # Ratios depend on every parameter; keying on them keeps copies made by with_bandwidth_scale correct.
        key = (elsize, self.peak_flop_per_s, self.memory_bandwidth_bytes_per_s, self.overhead_s, self.wave_units,
               tuple(tuple(pt) for pt in self.points))
        model = lambda a, b, c: self.model_time_s(a, b, c, elsize)  # noqa: E731
        if key not in self._ratio_cache:
            self._ratio_cache.clear()
            self._ratio_cache[key] = _ratio_table(model, self.points)
        return gemm_estimate_s(model, self.points, m, n, k, table=self._ratio_cache[key])

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str, datasheet: bool) -> "ComputeEntry":
        d = r.mapping(d, path, ["peak_flop_per_s", "memory_bandwidth_bytes_per_s", "points"],
                      ["overhead_s", "quality", "wave_units", "gemm_model"])
        pts = d["points"]
        if not isinstance(pts, list):
            raise r.fail(f"{path}.points", f"expected a list of [m, n, k, time_s], got {type(pts).__name__}")
        points: list[list[float]] = []
        for i, p in enumerate(pts):
            pp = f"{path}.points[{i}]"
            if not isinstance(p, list) or len(p) != 4:
                raise r.fail(pp, f"expected [m, n, k, time_s] (4 numbers), got {p!r:.80}")
            m, n, k = (r.number(v, f"{pp}[{j}]", lo=1.0, hi=1e9, what="a GEMM dimension") for j, v in enumerate(p[:3]))
            t = r.number(p[3], f"{pp}[3]", lo=0.0, lo_open=True, hi=MAX_TIME_S, what="seconds")
            points.append([m, n, k, t])
        if not datasheet and not points:
            raise r.fail(f"{path}.points", "a measured profile needs its measured GEMM points (empty list)")
        if not datasheet and d.get("quality") is None:
            raise r.fail(f"{path}.quality", "missing; required for measured profiles")
        wave = d.get("wave_units")
        return cls(
            peak_flop_per_s=r.flops(d["peak_flop_per_s"], f"{path}.peak_flop_per_s"),
            memory_bandwidth_bytes_per_s=r.bandwidth(d["memory_bandwidth_bytes_per_s"], f"{path}.memory_bandwidth_bytes_per_s"),
            overhead_s=r.seconds(d.get("overhead_s"), f"{path}.overhead_s", optional=True),
            points=points,
            quality=Quality.read(r, d["quality"], f"{path}.quality") if d.get("quality") is not None else None,
            wave_units=None if wave is None else r.integer(wave, f"{path}.wave_units", lo=1, hi=100000),
            gemm_model=_read_gemm_model(r, d.get("gemm_model"), f"{path}.gemm_model"),
        )

    def to_dict(self) -> dict:
        return {
            "peak_flop_per_s": float(self.peak_flop_per_s),
            "memory_bandwidth_bytes_per_s": float(self.memory_bandwidth_bytes_per_s),
            "overhead_s": None if self.overhead_s is None else float(self.overhead_s),
            "points": [[float(v) for v in p] for p in self.points],
            "quality": None if self.quality is None else self.quality.to_dict(),
            "wave_units": self.wave_units,
            **({"gemm_model": self.gemm_model.to_dict()} if self.gemm_model is not None else {}),
        }


def _read_gemm_model(r: "_Reader", d: Any, path: str) -> Any:
    if d is None:
        return None
    from .gemm_model import GemmModel  # lazy: gemm_model imports this module's FLOP/byte formulas

    try:
        return GemmModel.from_dict(d, path)
    except ValueError as exc:
        where, _, problem = str(exc).partition(": ")  # GemmModel names the full key path first
        raise r.fail(where, problem) from None


@dataclass
class MemoryEntry:
    """One access pattern (copy, read, write): time = latency_s + bytes moved / bandwidth.

    With ``pieces`` the line is piecewise in the bytes moved (one piece per cache
    level the working set fits in: L2, L3, DRAM), chosen by held-out error like
    the collectives; ``latency_s`` and ``bandwidth_bytes_per_s`` then repeat the
    last (largest-size, DRAM-streaming) piece so readers that want one streaming
    figure keep working.  Entries without ``pieces`` (datasheet priors, profiles
    written before it existed) are a single line.
    """

    latency_s: float | None
    """Constant cost per operation; null only in datasheet priors (not a datasheet figure)."""
    bandwidth_bytes_per_s: float
    """Bytes moved per second (the last piece's when ``pieces`` is given)."""
    quality: Quality | None = None
    """Fit quality (optional for datasheet priors)."""
    pieces: list[CollectivePiece] | None = None
    """Optional piecewise model, ascending ``max_bytes`` (bytes moved), the last with ``max_bytes: null``."""

    def piece_for(self, nbytes: float) -> "CollectivePiece":
        """The piece covering ``nbytes`` moved (a single-line entry is one open-ended piece)."""
        if not self.pieces:
            return CollectivePiece(max_bytes=None, latency_s=self.latency_s, bandwidth_bytes_per_s=self.bandwidth_bytes_per_s)
        return next((p for p in self.pieces if p.max_bytes is None or nbytes <= p.max_bytes), self.pieces[-1])

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str, datasheet: bool) -> "MemoryEntry":
        d = r.mapping(d, path, ["latency_s", "bandwidth_bytes_per_s"], ["quality", "pieces"])
        if not datasheet and d.get("quality") is None:
            raise r.fail(f"{path}.quality", "missing; required for measured profiles")
        pieces = None if d.get("pieces") is None else _read_pieces(r, d["pieces"], f"{path}.pieces", datasheet)
        e = cls(
            latency_s=r.seconds(d["latency_s"], f"{path}.latency_s", optional=datasheet),
            bandwidth_bytes_per_s=r.bandwidth(d["bandwidth_bytes_per_s"], f"{path}.bandwidth_bytes_per_s"),
            quality=Quality.read(r, d["quality"], f"{path}.quality") if d.get("quality") is not None else None,
            pieces=pieces,
        )
        if pieces and (pieces[-1].bandwidth_bytes_per_s != e.bandwidth_bytes_per_s or pieces[-1].latency_s != e.latency_s):
            raise r.fail(path, f"latency_s/bandwidth_bytes_per_s ({e.latency_s!r}, {e.bandwidth_bytes_per_s!r}) must repeat "
                               f"the last piece's ({pieces[-1].latency_s!r}, {pieces[-1].bandwidth_bytes_per_s!r})")
        return e

    def to_dict(self) -> dict:
        out = {"latency_s": None if self.latency_s is None else float(self.latency_s),
               "bandwidth_bytes_per_s": float(self.bandwidth_bytes_per_s),
               "quality": None if self.quality is None else self.quality.to_dict()}
        if self.pieces:
            out["pieces"] = [p.to_dict() for p in self.pieces]
        return out


@dataclass
class Overheads:
    """Measured per-kernel constants; null = not measured."""

    eager_launch_s: float | None = None
    """Host cost of issuing one kernel from eager Python."""
    launch_sync_s: float | None = None
    """One launch followed by a device synchronise."""
    sync_s: float | None = None
    """A device synchronise with nothing queued."""
    graph_kernel_s: float | None = None
    """Per-kernel cost when replayed from a CUDA/HIP graph."""
    eager_dispatch_s: float | None = None
    """Host cost per work op of a real decoder layer's eager op mix, its view/cast/reshape dispatches included
    (kernels/dispatch.py); what an eager layer's host issue rate is on an accelerator.  Optional (null: not measured)."""

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str) -> "Overheads":
        names = [f.name for f in fields(cls)]
        d = r.mapping(d, path, [], names)
        return cls(**{n: r.seconds(d.get(n), f"{path}.{n}", optional=True) for n in names})

    def to_dict(self) -> dict:
        return {f.name: None if getattr(self, f.name) is None else float(getattr(self, f.name)) for f in fields(self)}


@dataclass
class AttentionEntry:
    """One attention phase: time = latency_s + max(FLOP / flop_per_s, bytes / bytes_per_s)."""

    latency_s: float
    """Constant cost per call."""
    flop_per_s: float
    """Sustained attention FLOP rate."""
    bytes_per_s: float
    """Sustained Q+K+V+O byte rate."""
    quality: Quality
    """Fit quality."""
    half_length: float | None = None
    """Optional: KV length (tokens) at which a call reaches half its sustained rate (per-block prologue,
    calibrate/attention_model.py); null/absent = no length term (profiles written before it existed)."""
    wave_units: int | None = None
    """Optional: units (SMs/CUs) prefill thread blocks of ``block_q`` queries are spread over; null = no wave term."""
    block_q: int | None = None
    """Optional: query rows per prefill thread block for the wave term (null: 128)."""

    def time_s(self, phase: str, batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, head_dim: int,
               flop: float, nbytes: float) -> float:
        """Model time of one call whose FLOP and bytes are already counted (attention_flop_bytes)."""
        from .attention_model import DEFAULT_BLOCK_Q, attention_model_time_s  # lazy: it imports this module

        return attention_model_time_s(latency_s=self.latency_s, flop_per_s=self.flop_per_s, bytes_per_s=self.bytes_per_s,
                                      half_length=self.half_length or 0.0, wave_units=self.wave_units,
                                      block_q=self.block_q or DEFAULT_BLOCK_Q, phase=phase, batch=batch, q_len=q_len,
                                      kv_len=kv_len, heads=heads, kv_heads=kv_heads, head_dim=head_dim, elsize=0,
                                      flop=flop, nbytes=nbytes)

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str) -> "AttentionEntry":
        d = r.mapping(d, path, ["latency_s", "flop_per_s", "bytes_per_s", "quality"], ["half_length", "wave_units", "block_q"])
        opt_int = lambda k: None if d.get(k) is None else r.integer(d[k], f"{path}.{k}", lo=1, hi=100000)  # noqa: E731
        return cls(latency_s=r.seconds(d["latency_s"], f"{path}.latency_s"),
                   flop_per_s=r.flops(d["flop_per_s"], f"{path}.flop_per_s"),
                   bytes_per_s=r.bandwidth(d["bytes_per_s"], f"{path}.bytes_per_s"),
                   quality=Quality.read(r, d["quality"], f"{path}.quality"),
                   half_length=r.number(d.get("half_length"), f"{path}.half_length", hi=1e7, what="tokens", optional=True),
                   wave_units=opt_int("wave_units"), block_q=opt_int("block_q"))

    def to_dict(self) -> dict:
        out = {"latency_s": float(self.latency_s), "flop_per_s": float(self.flop_per_s),
               "bytes_per_s": float(self.bytes_per_s), "quality": self.quality.to_dict()}
        for k in ("half_length", "wave_units", "block_q"):
            if getattr(self, k) is not None:
                out[k] = float(getattr(self, k)) if k == "half_length" else int(getattr(self, k))
        return out


@dataclass
class CollectivePiece:
    """One size range of a piecewise alpha-beta collective model."""

    max_bytes: float | None
    """Upper end of the size range (S, nccl-tests convention); null for the last piece."""
    latency_s: float | None
    """Alpha; null only in datasheet priors."""
    bandwidth_bytes_per_s: float
    """S / (time - latency): the algorithm bandwidth of this range."""

    def to_dict(self) -> dict:
        return {"max_bytes": None if self.max_bytes is None else float(self.max_bytes),
                "latency_s": None if self.latency_s is None else float(self.latency_s),
                "bandwidth_bytes_per_s": float(self.bandwidth_bytes_per_s)}


def _read_pieces(r: _Reader, pieces_raw: Any, path: str, datasheet: bool) -> list[CollectivePiece]:
    """A non-empty list of alpha-beta pieces with ascending max_bytes, the last open-ended (collectives, memory)."""
    if not isinstance(pieces_raw, list) or not pieces_raw:
        raise r.fail(path, f"expected a non-empty list of pieces, got {pieces_raw!r:.60}")
    pieces = []
    for i, pd_ in enumerate(pieces_raw):
        pp = f"{path}[{i}]"
        pd_ = r.mapping(pd_, pp, ["max_bytes", "latency_s", "bandwidth_bytes_per_s"])
        last = i == len(pieces_raw) - 1
        mb = pd_["max_bytes"]
        if last and mb is not None:
            raise r.fail(f"{pp}.max_bytes", f"the last piece must have max_bytes: null, got {mb!r}")
        if not last and mb is None:
            raise r.fail(f"{pp}.max_bytes", "only the last piece may have max_bytes: null")
        pieces.append(CollectivePiece(
            max_bytes=r.number(mb, f"{pp}.max_bytes", lo=0.0, lo_open=True, hi=MAX_MESSAGE_BYTES, what="bytes",
                               optional=last),
            latency_s=r.seconds(pd_["latency_s"], f"{pp}.latency_s", optional=datasheet),
            bandwidth_bytes_per_s=r.bandwidth(pd_["bandwidth_bytes_per_s"], f"{pp}.bandwidth_bytes_per_s"),
        ))
    bounds = [p.max_bytes for p in pieces[:-1]]
    if any(b >= a for a, b in zip(bounds[1:], bounds[:-1])):
        raise r.fail(path, f"max_bytes must ascend, got {bounds}")
    return pieces


@dataclass
class CollectiveEntry:
    """One (collective, scope, group size): time = latency_s + S / bandwidth_bytes_per_s of the matching piece."""

    op: str
    """all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv, ..."""
    scope: str
    """intra_node or inter_node."""
    group_size: int
    """Ranks in the group."""
    dtype: str
    """Element type measured."""
    pieces: list[CollectivePiece]
    """Ascending ``max_bytes``; the last has ``max_bytes: null``."""
    quality: Quality | None = None
    """Fit quality (optional for datasheet priors)."""

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.op, self.scope, self.group_size)

    @property
    def label(self) -> str:
        return f"collectives[{self.op},{self.scope},{self.group_size}]"

    def piece_for(self, nbytes: float) -> CollectivePiece:
        for p in self.pieces:
            if p.max_bytes is None or nbytes <= p.max_bytes:
                return p
        return self.pieces[-1]

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str, datasheet: bool) -> "CollectiveEntry":
        d = r.mapping(d, path, ["op", "scope", "group_size", "dtype", "pieces"], ["quality"])
        op = r.string(d["op"], f"{path}.op", list(BUSBW_FACTORS))
        pieces = _read_pieces(r, d["pieces"], f"{path}.pieces", datasheet)
        if not datasheet and d.get("quality") is None:
            raise r.fail(f"{path}.quality", "missing; required for measured profiles")
        return cls(op=op, scope=r.string(d["scope"], f"{path}.scope", SCOPES),
                   group_size=r.integer(d["group_size"], f"{path}.group_size", lo=1, hi=1_000_000),
                   dtype=r.string(d["dtype"], f"{path}.dtype", list(DTYPE_BYTES)), pieces=pieces,
                   quality=Quality.read(r, d["quality"], f"{path}.quality") if d.get("quality") is not None else None)

    def to_dict(self) -> dict:
        return {"op": self.op, "scope": self.scope, "group_size": int(self.group_size), "dtype": self.dtype,
                "pieces": [p.to_dict() for p in self.pieces],
                "quality": None if self.quality is None else self.quality.to_dict()}


@dataclass
class ValidationCase:
    """One real decoder layer compared with the planner's prediction."""

    name: str
    """Case name."""
    phase: str
    """prefill or decode."""
    measured_s: float
    """Measured time."""
    predicted_s: float
    """Planner prediction."""
    rel_err: float
    """predicted / measured - 1."""

    def to_dict(self) -> dict:
        return {"name": self.name, "phase": self.phase, "measured_s": float(self.measured_s),
                "predicted_s": float(self.predicted_s), "rel_err": float(self.rel_err)}


@dataclass
class Validation:
    """Written by ``accelcal validate``: how well the planner predicts real layers on this device."""

    date: str
    """ISO 8601 date."""
    device: str
    """Device spec validated on."""
    median_abs_rel_err: float
    """Median |rel_err| over the cases."""
    max_abs_rel_err: float
    """Largest |rel_err|."""
    cases: list[ValidationCase] = field(default_factory=list)
    """The individual comparisons."""

    @classmethod
    def read(cls, r: _Reader, d: Any, path: str) -> "Validation":
        d = r.mapping(d, path, ["date", "device", "median_abs_rel_err", "max_abs_rel_err", "cases"])
        if not isinstance(d["cases"], list):
            raise r.fail(f"{path}.cases", "expected a list")
        cases = []
        for i, c in enumerate(d["cases"]):
            cp = f"{path}.cases[{i}]"
            c = r.mapping(c, cp, ["name", "phase", "measured_s", "predicted_s", "rel_err"])
            cases.append(ValidationCase(
                name=r.string(c["name"], f"{cp}.name"), phase=r.string(c["phase"], f"{cp}.phase"),
                measured_s=r.seconds(c["measured_s"], f"{cp}.measured_s"),
                predicted_s=r.seconds(c["predicted_s"], f"{cp}.predicted_s"),
                rel_err=r.number(c["rel_err"], f"{cp}.rel_err", lo=-1.0, hi=1e6)))
        return cls(date=r.string(d["date"], f"{path}.date"), device=r.string(d["device"], f"{path}.device"),
                   median_abs_rel_err=r.number(d["median_abs_rel_err"], f"{path}.median_abs_rel_err", hi=1e6),
                   max_abs_rel_err=r.number(d["max_abs_rel_err"], f"{path}.max_abs_rel_err", hi=1e6), cases=cases)

    def to_dict(self) -> dict:
        return {"date": self.date, "device": self.device, "median_abs_rel_err": float(self.median_abs_rel_err),
                "max_abs_rel_err": float(self.max_abs_rel_err), "cases": [c.to_dict() for c in self.cases]}


# ----------------------------------------------------------------------------- shared models


def gemm_flop(m: float, n: float, k: float) -> float:
    """2mnk: one multiply and one add per MAC."""
    return 2.0 * m * n * k


def gemm_bytes(m: float, n: float, k: float, elsize: int) -> float:
    """A (m x k) and B (k x n) read once, C (m x n) written once."""
    return (m * k + k * n + m * n) * elsize


def gemm_model_time_s(m: float, n: float, k: float, elsize: int, peak_flop_per_s: float,
                      bandwidth_bytes_per_s: float, overhead_s: float = 0.0, wave_units: int | None = None) -> float:
    """Roofline: overhead + max(compute time, operand-traffic time).

    With ``wave_units`` the compute term counts whole waves of 128x128 output
    tiles (the last, partly filled wave costs as much as a full one), which is
    where GPU GEMM time steps up as M or N crosses a wave boundary.
    """
    flop = gemm_flop(m, n, k)
    if wave_units:
        tiles = math.ceil(m / WAVE_TILE) * math.ceil(n / WAVE_TILE)
        waves = math.ceil(tiles / wave_units)
        # Every unit computes whole 128x128 tiles for every wave, filled or not.
        flop = max(flop, 2.0 * k * WAVE_TILE * WAVE_TILE * waves * wave_units)
    return overhead_s + max(flop / peak_flop_per_s, gemm_bytes(m, n, k, elsize) / bandwidth_bytes_per_s)


def _log3(p: Sequence[float]) -> tuple[float, float, float]:
    return (math.log(p[0]), math.log(p[1]), math.log(p[2]))


def _ratio_table(model: Callable[[float, float, float], float], points: Sequence[Sequence[float]]) -> dict:
    ratios = [(p, math.log(p[3] / model(p[0], p[1], p[2]))) for p in points]
    lines: dict[tuple[float, float], list[tuple[float, float]]] = {}
    for p, lr in ratios:
        lines.setdefault((p[1], p[2]), []).append((p[0], lr))
    return {"ratios": ratios, "lines": {key: sorted(v) for key, v in lines.items()},
            "logs": [(_log3(p), lr) for p, lr in ratios],
            "lo": [min(math.log(p[i]) for p in points) for i in range(3)] if points else [],
            "hi": [max(math.log(p[i]) for p in points) for i in range(3)] if points else []}


def _line_lr(line: Sequence[tuple[float, float]], m: float) -> float | None:
    """log(ratio) at ``m`` on one measured line, linear in log(M) between measured M; None outside its range."""
    ms = [x for x, _ in line]
    if not ms or m < ms[0] or m > ms[-1]:
        return None
    j = bisect.bisect_left(ms, m)
    if ms[j] == m:
        return line[j][1]
    x0, x1 = math.log(ms[j - 1]), math.log(ms[j])
    w = (math.log(m) - x0) / (x1 - x0)
    return line[j - 1][1] * (1 - w) + line[j][1] * w


def _m_trend(lines: dict, own: tuple[float, float], m_from: float, m_to: float) -> tuple[float, int]:
    """(median change of log(ratio) from ``m_from`` to ``m_to`` over the other lines that measured both, count)."""
    deltas = []
    for key, line in lines.items():
        if key == own:
            continue
        a, b = _line_lr(line, m_from), _line_lr(line, m_to)
        if a is not None and b is not None:
            deltas.append(b - a)
    if not deltas:
        return 0.0, 0
    deltas.sort()
    mid = len(deltas) // 2
    return (deltas[mid] if len(deltas) % 2 else 0.5 * (deltas[mid - 1] + deltas[mid])), len(deltas)


def gemm_estimate_s(model: Callable[[float, float, float], float], points: Sequence[Sequence[float]],
                    m: float, n: float, k: float, table: dict | None = None) -> tuple[float, bool, str]:
    """Correct the parametric model by the measured efficiency ratio, interpolated in log-shape space.

    ratio_i = measured_i / model_i at every measured shape.  A query on a
    measured (n, k) line interpolates log(ratio) linearly in log(m) between the
    neighbouring measured M values; below or above the line's measured M, the
    line's boundary efficiency moved by the change in efficiency the other
    measured lines show between those M (the kernel path, GEMV at M=1 or a
    blocked GEMM above, is picked by M on every shape); elsewhere, inverse-distance weighting over
    the nearest shapes in log(m, n, k).  Outside the measured box the query is
    clamped to the box first, so extrapolation holds the boundary efficiency
    rather than following a trend off the data.  Returns (time_s, extrapolated, detail).
    """
    base = model(m, n, k)
    if not points:
        return base, True, "parametric roofline (no measured shapes)"
    table = table if table is not None else _ratio_table(model, points)
    line = table["lines"].get((float(n), float(k)), [])
    if len(line) >= 1:
        ms = [x for x, _ in line]
        lrs = [y for _, y in line]
        extrap = m < ms[0] or m > ms[-1]
        if m < ms[0] or m > ms[-1]:
            mb, lb = (ms[0], lrs[0]) if m < ms[0] else (ms[-1], lrs[-1])
            delta, nlines = _m_trend(table["lines"], (float(n), float(k)), mb, m)
            if nlines:
                # The kernel path follows M (a GEMV for M=1, blocked GEMMs above), the same on every (N, K):
                # take this line's efficiency at its nearest measured M and the change from there to M that
                # the other measured lines show, instead of holding the boundary efficiency across a regime change.
                return (base * math.exp(lb + delta), False,
                        f"efficiency of measured M={mb:g} on the (N={n:g}, K={k:g}) line, moved to M={m:g} by the "
                        f"M trend of {nlines} other measured line(s)")
        if len(line) == 1 or m <= ms[0]:
            lr, how = lrs[0] if m <= ms[0] else lrs[-1], f"held the efficiency of measured M={ms[0]:g}"
        elif m >= ms[-1]:
            lr, how = lrs[-1], f"held the efficiency of measured M={ms[-1]:g}"
        else:
            j = bisect.bisect_left(ms, m)
            if ms[j] == m:
                lr, how = lrs[j], f"measured shape M={m:g}"
            else:
                x0, x1 = math.log(ms[j - 1]), math.log(ms[j])
                w = (math.log(m) - x0) / (x1 - x0)
                lr = lrs[j - 1] * (1 - w) + lrs[j] * w
                how = f"interpolated efficiency between M={ms[j - 1]:g} and M={ms[j]:g}"
        if len(line) == 1 and m != ms[0]:
            how = f"held the efficiency of the only measured M={ms[0]:g}"
            extrap = True
        return base * math.exp(lr), extrap, f"{how} on the measured (N={n:g}, K={k:g}) line"
    lo, hi = table["lo"], table["hi"]
    q = _log3((m, n, k))
    extrap = any(q[i] < lo[i] - 1e-12 or q[i] > hi[i] + 1e-12 for i in range(3))
    qc = [min(max(q[i], lo[i]), hi[i]) for i in range(3)]
    dists = sorted((sum((a - b) ** 2 for a, b in zip(qc, lp)), lr) for lp, lr in table["logs"])[:4]
    if dists[0][0] < 1e-18:
        lr = dists[0][1]
    else:
        ws = [1.0 / d for d, _ in dists]
        lr = sum(w * v for w, (_, v) in zip(ws, dists)) / sum(ws)
    how = ("held the boundary efficiency of the nearest measured shapes (outside the measured range)" if extrap
           else "efficiency interpolated (inverse-distance, log shape space) from the 4 nearest measured shapes")
    return base * math.exp(lr), extrap, how


def attention_flop_bytes(batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, head_dim: int,
                         elsize: int, causal: bool = True) -> tuple[float, float]:
    """(FLOP, bytes) of one scaled-dot-product attention call.

    FLOP: QK^T and PV, 2 FLOP per MAC each, over the attended (query, key)
    pairs; causal with q_len <= kv_len drops the masked upper triangle of the
    last q_len keys.  Bytes: Q and O (heads) plus K and V (kv_heads), read or
    written once.
    """
    if causal and q_len > 1:
        q = min(q_len, kv_len)
        pairs = q_len * kv_len - q * (q - 1) / 2.0
    else:
        pairs = float(q_len * kv_len)
    flop = 4.0 * batch * heads * head_dim * pairs
    nbytes = float(elsize) * batch * head_dim * (2 * heads * q_len + 2 * kv_heads * kv_len)
    return flop, nbytes


def _flagged(q: Quality | None) -> tuple[str, ...]:
    return ("fit-flagged",) if q is not None and q.flags else ()


def _range_note(q: Quality | None, x: float, unit: str) -> tuple[bool, str]:
    if q is None:
        return True, "no measured range"
    if x < q.range_min or x > q.range_max:
        return True, f"outside the measured range [{q.range_min:g}, {q.range_max:g}] {unit}"
    return False, f"within the measured range [{q.range_min:g}, {q.range_max:g}] {unit}"


# ----------------------------------------------------------------------------- the profile


def _per_dtype(r: _Reader, section: Any, name: str, keys: Sequence[str], read: Callable[[Any, str], Any]) -> dict:
    """An optional ``dtype -> key -> entry`` section (attention phases, elementwise groups); {} when absent."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise r.fail(name, f"expected a mapping dtype -> {'/'.join(keys)}, got {type(section).__name__}")
    out = {}
    for dt, entries in section.items():
        r.string(dt, name, list(DTYPE_BYTES))
        r.mapping(entries, f"{name}.{dt}", [], keys)
        out[dt] = {k: read(e, f"{name}.{dt}.{k}") for k, e in entries.items()}
    return out


@dataclass
class Profile:
    """A calibrated (or datasheet) accelerator description; see docs/ARCHITECTURE.md for the YAML schema."""

    identity: Identity
    """Provenance."""
    compute: dict[str, ComputeEntry]
    """GEMM model per dtype."""
    memory: dict[str, MemoryEntry]
    """Per access pattern: copy, read, write."""
    overheads: Overheads
    """Launch and sync constants."""
    collectives: list[CollectiveEntry] = field(default_factory=list)
    """One entry per (op, scope, group_size)."""
    attention: dict[str, dict[str, AttentionEntry]] = field(default_factory=dict)
    """Per dtype, per phase (prefill, decode)."""
    elementwise: dict[str, dict[str, MemoryEntry]] = field(default_factory=dict)
    """Per dtype, per eager elementwise group (norm, residual_add, rope, act_mul): time = latency + bytes / bandwidth,
    bytes counted with the torch-eager implementation's traffic model (planner/presets/implementations)."""
    validation: Validation | None = None
    """Planner-vs-real comparison, written by ``accelcal validate``."""
    schema_version: int = SCHEMA_VERSION
    """Schema of the YAML; only 1 exists."""
    method_version: int = 1
    """Measurement method version of the data behind it (kernels.timing.METHOD_VERSION)."""

    # ---------------------------------------------------------------- (de)serialisation

    @classmethod
    def from_dict(cls, d: Any, origin: str = "<dict>") -> "Profile":
        """Validate and build; raises :class:`ProfileError` naming ``origin`` and the key path."""
        r = _Reader(origin)
        if not isinstance(d, dict):
            raise r.fail(TOP_LEVEL, f"expected a mapping of profile sections (schema_version, identity, compute, ...), "
                                    f"got {type(d).__name__} {d!r:.40}; is this an accelcal profile?")
        if "schema_version" in d:
            sv = d["schema_version"]
            if isinstance(sv, bool) or not isinstance(sv, int) or sv != SCHEMA_VERSION:
                raise r.fail("schema_version", f"unknown schema version {sv!r}; this accelcal reads {SCHEMA_VERSION}")
        d = r.mapping(d, TOP_LEVEL, ["schema_version", "method_version", "identity", "compute", "memory", "overheads",
                                   "collectives"], ["attention", "elementwise", "validation"])
        ident = Identity.read(r, d["identity"], "identity")
        datasheet = ident.source == "datasheet"
        comp = d["compute"]
        if not isinstance(comp, dict):
            raise r.fail("compute", f"expected a mapping dtype -> entry, got {type(comp).__name__}")
        compute = {}
        for dt, e in comp.items():
            r.string(dt, "compute", list(DTYPE_BYTES))
            compute[dt] = ComputeEntry.read(r, e, f"compute.{dt}", datasheet)
        mem = d["memory"]
        if not isinstance(mem, dict):
            raise r.fail("memory", f"expected a mapping pattern -> entry, got {type(mem).__name__}")
        r.mapping(mem, "memory", [], MEMORY_PATTERNS)
        memory = {k: MemoryEntry.read(r, v, f"memory.{k}", datasheet) for k, v in mem.items()}
        attention = _per_dtype(r, d.get("attention"), "attention", PHASES,
                               lambda e, path: AttentionEntry.read(r, e, path))
        elementwise = _per_dtype(r, d.get("elementwise"), "elementwise", ELEMENTWISE_GROUPS,
                                 lambda e, path: MemoryEntry.read(r, e, path, datasheet))
        colls = d["collectives"]
        if not isinstance(colls, list):
            raise r.fail("collectives", f"expected a list of entries, got {type(colls).__name__}")
        collectives = [CollectiveEntry.read(r, c, f"collectives[{i}]", datasheet) for i, c in enumerate(colls)]
        seen: dict[tuple, int] = {}
        for i, c in enumerate(collectives):
            if c.key in seen:
                raise r.fail(f"collectives[{i}]", f"duplicate entry for (op, scope, group_size) = {c.key}; "
                                                  f"first at collectives[{seen[c.key]}]")
            seen[c.key] = i
        return cls(
            identity=ident, compute=compute, memory=memory,
            overheads=Overheads.read(r, d["overheads"], "overheads"),
            collectives=collectives, attention=attention, elementwise=elementwise,
            validation=Validation.read(r, d["validation"], "validation") if d.get("validation") is not None else None,
            schema_version=SCHEMA_VERSION,
            method_version=r.integer(d["method_version"], "method_version", lo=1, hi=1000),
        )

    def to_dict(self) -> dict:
        """Plain types only (safe_dump-able); floats stay floats."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "method_version": int(self.method_version),
            "identity": self.identity.to_dict(),
            "compute": {k: v.to_dict() for k, v in self.compute.items()},
            "memory": {k: v.to_dict() for k, v in self.memory.items()},
            "overheads": self.overheads.to_dict(),
            "attention": {dt: {ph: e.to_dict() for ph, e in phases.items()} for dt, phases in self.attention.items()},
            "collectives": [c.to_dict() for c in self.collectives],
        }
        if self.elementwise:
            out["elementwise"] = {dt: {g: e.to_dict() for g, e in groups.items()} for dt, groups in self.elementwise.items()}
        if self.validation is not None:
            out["validation"] = self.validation.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, width=100)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Profile":
        """Read and validate a profile file (``yaml.safe_load`` only)."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"profile {path} does not exist")
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ProfileError(f"{path}: not valid YAML (expected an accelcal profile): {exc}") from None
        if data is None:
            raise ProfileError(f"{path}: {TOP_LEVEL}: the file is empty")
        return cls.from_dict(data, origin=path)

    def save(self, path: str | os.PathLike) -> None:
        """Validate, then write atomically (a crash leaves the previous file intact)."""
        text = self.to_yaml()
        # Refuse to write what we could not read back.
        Profile.from_dict(yaml.safe_load(text), origin=f"{os.fspath(path)} (about to be written)")
        atomic_write_text(path, text)

    # ---------------------------------------------------------------- queries

    def dtypes(self) -> list[str]:
        """Dtypes with GEMM (compute) data."""
        return list(self.compute)

    @property
    def is_datasheet(self) -> bool:
        return self.identity.source == "datasheet"

    def _base_flags(self) -> tuple[str, ...]:
        return ("datasheet",) if self.is_datasheet else ()

    def gemm_time_s(self, m: int, n: int, k: int, dtype: str) -> Estimate:
        """Time of C[m,n] = A[m,k] @ B[k,n] in ``dtype``."""
        for name, v in (("m", m), ("n", n), ("k", k)):
            if v is None or v <= 0:
                raise ValueError(f"gemm_time_s: {name} must be a positive integer, got {v!r}")
        if dtype not in self.compute:
            raise MissingMeasurement(f"{self.identity.name}: no GEMM data for dtype {dtype!r}; "
                                     f"compute has {sorted(self.compute)}")
        e = self.compute[dtype]
        elsize = DTYPE_BYTES[dtype]
        t, extrap, how = e.estimate_s(m, n, k, elsize)
        if self.identity.covered_models and not extrap and not any(p[1] == n and p[2] == k for p in e.points):
            # The sweep recorded the models it covered (--for-model): a shape outside them is extrapolated.
            extrap, how = True, f"{how}; (N={n:g}, K={k:g}) not measured (sweep covered {self.identity.covered_models})"
        flags = self._base_flags() + _flagged(e.quality)
        if self.is_datasheet:
            how = "datasheet peak FLOP/s and memory bandwidth roofline, no measured efficiency (optimistic)"
            extrap = True
        if extrap:
            flags += ("extrapolated",)
        return Estimate(t, extrap, how, f"compute.{dtype}", flags)

    def memory_time_s(self, nbytes: float, pattern: str = "copy") -> Estimate:
        """Time to move ``nbytes`` (bytes moved: a copy of S bytes moves 2S) with ``pattern``."""
        if nbytes is None or nbytes < 0:
            raise ValueError(f"memory_time_s: nbytes must be >= 0, got {nbytes!r}")
        if pattern not in self.memory:
            raise MissingMeasurement(f"{self.identity.name}: no memory data for pattern {pattern!r}; "
                                     f"memory has {sorted(self.memory)}")
        return self._alpha_beta(self.memory[pattern], nbytes, f"memory.{pattern}")

    def elementwise_time_s(self, group: str, nbytes: float, dtype: str) -> Estimate:
        """Time of one eager elementwise ``group`` moving ``nbytes`` (its traffic model's bytes) in ``dtype``.

        Raises MissingMeasurement where the profile has no such measurement (datasheet priors, profiles
        measured before the kernel suite had it): callers fall back to ``memory_time_s(nbytes, "copy")``.
        """
        if nbytes is None or nbytes < 0:
            raise ValueError(f"elementwise_time_s: nbytes must be >= 0, got {nbytes!r}")
        if group not in ELEMENTWISE_GROUPS:
            raise ValueError(f"elementwise_time_s: unknown group {group!r}; expected one of {list(ELEMENTWISE_GROUPS)}")
        e = self.elementwise.get(dtype, {}).get(group)
        if e is None:
            have = [f"{dt}.{g}" for dt, gs in self.elementwise.items() for g in gs]
            raise MissingMeasurement(f"{self.identity.name}: no elementwise data for {group!r} in {dtype}; "
                                     f"elementwise has {have}")
        return self._alpha_beta(e, nbytes, f"elementwise.{dtype}.{group}")

    def _alpha_beta(self, e: MemoryEntry, nbytes: float, source: str) -> Estimate:
        p = e.piece_for(nbytes)
        flags = self._base_flags() + _flagged(e.quality)
        extrap, note = _range_note(e.quality, nbytes, "bytes")
        lat = p.latency_s
        where = f" (piece max_bytes={p.max_bytes})" if e.pieces and len(e.pieces) > 1 else ""
        detail = f"latency + bytes / {p.bandwidth_bytes_per_s:.4g} B/s{where}, {note}"
        if lat is None:
            lat = 0.0
            flags += ("not-measured",)
            detail = f"datasheet bandwidth {p.bandwidth_bytes_per_s:.4g} B/s; latency not given by the source, 0 assumed"
            extrap = True
        if extrap:
            flags += ("extrapolated",)
        return Estimate(lat + nbytes / p.bandwidth_bytes_per_s, extrap, detail, source, flags)

    def attention_time_s(self, phase: str, batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int,
                         head_dim: int, dtype: str, causal: bool = True) -> Estimate:
        """One attention call (prefill or decode), from the fitted FLOP and byte rates."""
        if phase not in PHASES:
            raise ValueError(f"attention_time_s: phase must be one of {PHASES}, got {phase!r}")
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"attention_time_s: unknown dtype {dtype!r}; known {sorted(DTYPE_BYTES)}")
        flop, nbytes = attention_flop_bytes(batch, q_len, kv_len, heads, kv_heads, head_dim, DTYPE_BYTES[dtype], causal)
        e = self.attention.get(dtype, {}).get(phase)
        if e is None:
            have = [f"{dt}.{ph}" for dt, phs in self.attention.items() for ph in phs]
            if dtype in self.compute:
                # No attention measured: two GEMM-like passes over the data at the GEMM roofline, flagged.
                c = self.compute[dtype]
                t = (c.overhead_s or 0.0) + max(flop / c.peak_flop_per_s, nbytes / c.memory_bandwidth_bytes_per_s)
                return Estimate(t, True, f"no attention measured ({have or 'none'}); roofline from compute.{dtype}",
                                f"compute.{dtype}", self._base_flags() + ("not-measured", "extrapolated"))
            raise MissingMeasurement(f"{self.identity.name}: no attention data for {dtype}.{phase} and no compute.{dtype} "
                                     f"to fall back on; attention has {have}, compute has {sorted(self.compute)}")
        t = e.time_s(phase, batch, q_len, kv_len, heads, kv_heads, head_dim, flop, nbytes)
        extrap, note = _range_note(e.quality, flop, "FLOP")
        flags = self._base_flags() + _flagged(e.quality) + (("extrapolated",) if extrap else ())
        how = "latency + max(FLOP/rate, bytes/rate)" + (" x (1 + half_length/kv_len)" if e.half_length else "") + \
              (" x prefill waves" if e.wave_units and phase == "prefill" else "")
        return Estimate(t, extrap, f"{how}, {note}", f"attention.{dtype}.{phase}", flags)

    def attention_mixed_time_s(self, decode_kv_lens: Sequence[int], chunks: Sequence[tuple[int, int]], heads: int,
                               kv_heads: int, head_dim: int, dtype: str) -> Estimate:
        """One continuous-batching attention step: a decode batch (one new token per sequence, its KV length in
        ``decode_kv_lens``) plus prefill ``chunks`` of (q_len new tokens, context_len tokens already cached).

        Composed from the fitted parts as one varlen kernel: one call latency, plus each part's time above
        its latency (the decode batch at its mean KV length; each chunk a causal prefill, kv = context + q).
        """
        from .attention_model import mixed_parts

        parts = mixed_parts(list(decode_kv_lens), list(chunks))
        ests = [(ph, self.attention_time_s(ph, b, q, kv, heads, kv_heads, head_dim, dtype)) for ph, b, q, kv in parts]
        lat = {ph: (self.attention[dtype][ph].latency_s if ph in self.attention.get(dtype, {}) else 0.0) for ph, _ in ests}
        total = max(lat.values()) + sum(max(0.0, e.time_s - lat[ph]) for ph, e in ests)
        flags = tuple(dict.fromkeys(f for _, e in ests for f in e.flags))
        detail = (f"mixed step: {len(decode_kv_lens)} decode sequence(s) + {len(chunks)} prefill chunk(s), one call "
                  f"latency + the parts' work ({', '.join(f'{ph} {e.time_s * 1e6:.3g} us' for ph, e in ests)})")
        return Estimate(total, any(e.extrapolated for _, e in ests), detail,
                        ", ".join(dict.fromkeys(e.source for _, e in ests)), flags)

    def collective_time_s(self, op: str, nbytes: float, group_size: int, scope: str = "intra_node") -> Estimate:
        """latency + S / bandwidth, S in the nccl-tests convention; ring-model scaling to unmeasured group sizes."""
        if nbytes is None or nbytes < 0:
            raise ValueError(f"collective_time_s: nbytes must be >= 0, got {nbytes!r}")
        if group_size is None or group_size < 1:
            raise ValueError(f"collective_time_s: group_size must be >= 1, got {group_size!r}")
        if op not in BUSBW_FACTORS:
            raise ValueError(f"collective_time_s: unknown op {op!r}; known {sorted(BUSBW_FACTORS)}")
        label = f"collectives[{op},{scope},{group_size}]"
        if group_size == 1 and op != "send_recv":
            return Estimate(0.0, False, "group of one rank: nothing to communicate", label, ())
        cands = [c for c in self.collectives if c.op == op and c.scope == scope]
        if not cands:
            have = sorted({(c.op, c.scope) for c in self.collectives})
            raise MissingMeasurement(f"{self.identity.name}: no {op} data for scope {scope!r}; "
                                     f"collectives has (op, scope) {have}")
        exact = [c for c in cands if c.group_size == group_size]
        if exact:
            c = exact[0]
            p = c.piece_for(nbytes)
            extrap, note = _range_note(c.quality, nbytes, "bytes")
            lat = p.latency_s
            flags = self._base_flags() + _flagged(c.quality)
            detail = f"alpha-beta piece (max_bytes={p.max_bytes}), {note}"
            if lat is None:
                lat, extrap = 0.0, True
                flags += ("not-measured",)
                detail = "datasheet link bandwidth as bus bandwidth; latency not given by the source, 0 assumed"
            if extrap:
                flags += ("extrapolated",)
            return Estimate(lat + nbytes / p.bandwidth_bytes_per_s, extrap, detail, c.label, flags)
        # Ring model: bus bandwidth is constant in n, so algbw(n) = busbw / factor(n); latency grows with
        # the (n - 1) ring steps.  Scale from the nearest measured group size.
        c = min(cands, key=lambda e: (abs(math.log(e.group_size / group_size)), -e.group_size))
        if c.group_size == 1:
            raise MissingMeasurement(f"{self.identity.name}: {op} measured only for group size 1; cannot scale to {group_size}")
        p = c.piece_for(nbytes)
        f0, f1 = busbw_factor(op, c.group_size), busbw_factor(op, group_size)
        bw = p.bandwidth_bytes_per_s * f0 / f1
        # Point-to-point ops do not grow with the group; ring collectives take (n - 1) steps.
        steps = 1.0 if op.startswith("send_recv") else (group_size - 1) / (c.group_size - 1)
        lat = (p.latency_s or 0.0) * steps
        flags = self._base_flags() + _flagged(c.quality) + ("ring-model", "extrapolated")
        if p.latency_s is None:
            flags += ("not-measured",)
        detail = (f"ring-model extrapolation from group {c.group_size}: bandwidth x factor({c.group_size})/factor({group_size}) "
                  f"= {f0:.3g}/{f1:.3g}, latency x (n-1) steps {steps:.3g}")
        return Estimate(lat + nbytes / bw, True, detail, c.label, flags)

    def launch_overhead_s(self, mode: str = "eager") -> Estimate:
        """Per-kernel launch cost: ``eager`` (Python issuing a tiny kernel), ``dispatch`` (per op of a real eager
        layer, views and casts included; falls back to ``eager``, flagged not-measured) or ``graph`` (graph replay)."""
        o = self.overheads
        if mode == "eager":
            if o.eager_launch_s is not None:
                return Estimate(o.eager_launch_s, False, "measured eager launch", "overheads.eager_launch_s", self._base_flags())
            return Estimate(0.0, True, "eager launch overhead not measured (null): 0 assumed", "overheads.eager_launch_s",
                            self._base_flags() + ("not-measured",))
        if mode == "dispatch":
            if o.eager_dispatch_s is not None:
                return Estimate(o.eager_dispatch_s, False, "measured host cost per op of an eager layer's op mix",
                                "overheads.eager_dispatch_s", self._base_flags())
            est = self.launch_overhead_s("eager")
            return replace(est, detail=f"layer op-mix dispatch not measured; {est.detail}")
        if mode == "graph":
            if o.graph_kernel_s is not None:
                return Estimate(o.graph_kernel_s, False, "measured per-kernel graph replay cost", "overheads.graph_kernel_s",
                                self._base_flags())
            if o.eager_launch_s is not None:
                return Estimate(o.eager_launch_s, True, "no graph replay measured (device without graphs); eager launch used",
                                "overheads.eager_launch_s", self._base_flags() + ("not-measured",))
            return Estimate(0.0, True, "graph overhead not measured (null): 0 assumed", "overheads.graph_kernel_s",
                            self._base_flags() + ("not-measured",))
        raise ValueError(f"launch_overhead_s: mode must be 'eager', 'dispatch' or 'graph', got {mode!r}")

    # ---------------------------------------------------------------- what-ifs

    def with_bandwidth_scale(self, factor: float) -> "Profile":
        """A copy with every bandwidth (memory, GEMM operand, attention bytes, collectives) multiplied by ``factor``."""
        if not factor > 0 or math.isinf(factor):
            raise ValueError(f"with_bandwidth_scale: factor must be a positive finite number, got {factor!r}")
        p = copy.deepcopy(self)
        for dt, e in p.compute.items():
            el = DTYPE_BYTES[dt]
            g = e.gemm_model
            query_model = (lambda a, b, c: g.time_s(a, b, c)) if g is not None else (lambda a, b, c: e.model_time_s(a, b, c, el))
            before = [query_model(*pt[:3]) for pt in e.points]
            e.memory_bandwidth_bytes_per_s *= factor
            if g is not None:
                g = e.gemm_model = replace(g, memory_bandwidth_bytes_per_s=g.memory_bandwidth_bytes_per_s * factor)
            # Measured points become what they would have measured on the faster/slower memory under the model,
            # so the efficiency correction (measured / model) is kept rather than cancelling the what-if.
            e.points = [pt[:3] + [pt[3] * query_model(*pt[:3]) / b] for pt, b in zip(e.points, before)]
        for e in list(p.memory.values()) + [g for gs in p.elementwise.values() for g in gs.values()]:
            e.bandwidth_bytes_per_s *= factor
            for piece in e.pieces or ():
                piece.bandwidth_bytes_per_s *= factor
        for phases in p.attention.values():
            for e in phases.values():
                e.bytes_per_s *= factor
        for c in p.collectives:
            for piece in c.pieces:
                piece.bandwidth_bytes_per_s *= factor
        return p

    def with_collective_scale(self, factor: float, scope: str | None = None) -> "Profile":
        """A copy with collectives ``factor`` times slower: bandwidth / factor, latency x factor (one scope or all)."""
        if not factor > 0 or math.isinf(factor):
            raise ValueError(f"with_collective_scale: factor must be a positive finite number, got {factor!r}")
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"with_collective_scale: scope must be one of {SCOPES} or None, got {scope!r}")
        p = copy.deepcopy(self)
        for c in p.collectives:
            if scope is None or c.scope == scope:
                for piece in c.pieces:
                    piece.bandwidth_bytes_per_s /= factor
                    if piece.latency_s is not None:
                        piece.latency_s *= factor
        return p

    def with_validation(self, validation: Validation) -> "Profile":
        return replace(self, validation=validation)
