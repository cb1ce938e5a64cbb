"""The Profile: sections, (de)serialisation, the query API and what-if copies.

    from accelcal.calibrate.profile import Profile
    p = Profile.load("profiles/datasheet/h100-sxm.yaml")
    p.gemm_time_s(4096, 4096, 4096, "bf16").time_s

A query the profile cannot answer raises :class:`MissingMeasurement`; bad
arguments raise ValueError.  No torch.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import yaml

from accelcal.atomic import atomic_write_text
from accelcal.textsafe import brief
from accelcal.vocab import (ANSWERED_BY_ALL_REDUCE, ATTENTION_KINDS, BUSBW_FACTORS, DTYPE_BYTES, ELEMENTWISE_GROUPS,
                            GROUPED_GEMM_DTYPES,
                            PHASES, PREFILL_KINDS, SAMPLER_BYTES_PER_LOGIT, SCOPES,
                            attention_flop_bytes,
                            busbw_factor, gemm_element_bytes, ring_latency_scale, SWITCH_FABRICS)

from .entries import AttentionEntry, CollectiveEntry, ComputeEntry, MemoryEntry, Overheads, Quality
from .provenance import Identity, Validation
from .errors import MissingCollective, MissingMeasurement, ProfileError
from .reader import MEMORY_PATTERNS, SCHEMA_VERSION, TOP_LEVEL, Reader

__all__ = ["Estimate", "Profile"]


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


def _flagged(q: Quality | None) -> tuple[str, ...]:
    return ("fit-flagged",) if q is not None and q.flags else ()


def _piece_bound(max_bytes: float | None) -> str:
    """A collective piece's upper message size as notes print it: the largest whole byte count it covers (the
    last piece has no bound)."""
    return "none" if max_bytes is None else f"{math.floor(max_bytes)}"


def _range_note(q: Quality | None, x: float, unit: str) -> tuple[bool, str]:
    if q is None:
        return True, "no measured range"
    if x < q.range_min or x > q.range_max:
        return True, f"outside the measured range [{q.range_min:g}, {q.range_max:g}] {unit}"
    return False, f"within the measured range [{q.range_min:g}, {q.range_max:g}] {unit}"


def _per_key(r: Reader, section: Any, name: str, what: str, keys: Sequence[str], read: Callable[[Any, str], Any]) -> dict:
    """An optional ``key -> entry`` section (memory patterns, sampler kinds); {} when absent."""
    section = section or {}
    if not isinstance(section, dict):
        raise r.fail(name, f"expected a mapping {what} -> entry, got {type(section).__name__}")
    r.mapping(section, name, [], keys)
    return {k: read(v, f"{name}.{k}") for k, v in section.items()}


def _per_dtype(r: Reader, section: Any, name: str, keys: Sequence[str], read: Callable[[Any, str], Any]) -> dict:
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
    bytes counted with the torch-eager implementation's traffic model (models/presets/implementations)."""
    sampler: dict[str, MemoryEntry] = field(default_factory=dict)
    """Per sampler kind (accelcal.vocab.SAMPLER_BYTES_PER_LOGIT: argmax, softmax_sample, top_k_top_p_sort) over one
    step's logits: time = latency + bytes / bandwidth, bytes = logits x the kind's bytes per logit."""
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
        r = Reader(origin)
        if not isinstance(d, dict):
            raise r.fail(TOP_LEVEL, f"expected a mapping of profile sections (schema_version, identity, compute, ...), "
                                    f"got {type(d).__name__} {brief(d, 40)}; is this an accelcal profile?")
        if "schema_version" in d:
            sv = d["schema_version"]
            if isinstance(sv, bool) or not isinstance(sv, int) or sv != SCHEMA_VERSION:
                what = (f"the {type(sv).__name__} {sv!r}; it is an integer" if not isinstance(sv, int) or isinstance(sv, bool)
                        else f"unknown schema version {sv}")
                raise r.fail("schema_version", f"{what}: this accelcal reads schema_version {SCHEMA_VERSION}")
        # compute / memory / overheads are optional only for an interconnect profile (collectives only).
        d = r.mapping(d, TOP_LEVEL, ["schema_version", "method_version", "identity", "collectives"],
                      ["compute", "memory", "overheads", "attention", "elementwise", "sampler", "validation"])
        ident = Identity.read(r, d["identity"], "identity")
        datasheet = ident.source == "datasheet"
        if not d.get("compute"):
            if not d["collectives"]:
                raise r.fail(TOP_LEVEL, "a profile needs a compute section (a device profile) or collectives (an "
                                        "interconnect profile); this one has neither")
            extra = [k for k in ("memory", "attention", "elementwise", "sampler", "validation") if d.get(k)]
            if extra:
                raise r.fail(TOP_LEVEL, f"an interconnect profile (no compute section) describes collectives only; "
                                        f"it has {extra}")
        elif ident.memory_capacity_bytes is None:
            raise r.fail("identity.memory_capacity_bytes", "expected a number: a device profile (with compute) needs "
                                                           "its memory per device; only interconnect profiles may omit it")
        else:
            # every layer's memory-bound kernels are costed from memory, every launch from overheads (whose values
            # may be null: not measured, costed at 0 s); only an interconnect profile goes without them
            for key, want in (("memory", "a mapping pattern -> fitted entry (copy, read, ...)"),
                              ("overheads", "a mapping of launch/sync constants (null where not measured)")):
                # an empty overheads mapping is every constant unmeasured; an empty memory mapping is nothing
                absent = not isinstance(d.get(key), dict) if key == "overheads" else not d.get(key)
                if absent:
                    raise r.fail(key, f"missing or empty; a device profile (with compute) needs {want}; only an "
                                      f"interconnect profile (collectives only) may leave it out")
        comp = d.get("compute") or {}
        if not isinstance(comp, dict):
            raise r.fail("compute", f"expected a mapping dtype -> entry, got {type(comp).__name__}")
        compute = {}
        for dt, e in comp.items():
            r.string(dt, "compute", list(DTYPE_BYTES))
            compute[dt] = ComputeEntry.read(r, e, f"compute.{dt}", datasheet)
        memory = _per_key(r, d.get("memory"), "memory", "pattern", MEMORY_PATTERNS,
                          lambda e, path: MemoryEntry.read(r, e, path, datasheet))
        attention = _per_dtype(r, d.get("attention"), "attention", ATTENTION_KINDS,
                               lambda e, path: AttentionEntry.read(r, e, path))
        elementwise = _per_dtype(r, d.get("elementwise"), "elementwise", ELEMENTWISE_GROUPS,
                                 lambda e, path: MemoryEntry.read(r, e, path, datasheet))
        sampler = _per_key(r, d.get("sampler"), "sampler", "kind", list(SAMPLER_BYTES_PER_LOGIT),
                           lambda e, path: MemoryEntry.read(r, e, path, datasheet))
        colls = d["collectives"]
        if not isinstance(colls, list):
            raise r.fail("collectives", f"expected a list of entries, got {type(colls).__name__}")
        collectives = [CollectiveEntry.read(r, c, f"collectives[{i}]", datasheet) for i, c in enumerate(colls)]
        seen: dict[tuple, int] = {}
        for i, c in enumerate(collectives):
            # ranks inside one node cannot outnumber its devices: such a file was edited by hand or mislabelled,
            # and would later surface as a baffling "needs inter_node" refusal
            if c.scope == "intra_node" and c.group_size > ident.devices_per_node:
                raise r.fail(f"collectives[{i}].group_size",
                             f"{c.group_size} ranks in scope intra_node, but identity.devices_per_node is "
                             f"{ident.devices_per_node}: one node cannot hold more ranks than devices (a group across "
                             f"nodes is scope inter_node; or devices_per_node is wrong)")
            if c.key in seen:
                raise r.fail(f"collectives[{i}]", f"duplicate entry for (op, scope, group_size, kernel) = {c.key}; "
                                                  f"first at collectives[{seen[c.key]}]")
            seen[c.key] = i
        return cls(
            identity=ident, compute=compute, memory=memory,
            overheads=Overheads.read(r, d.get("overheads") or {}, "overheads"),
            collectives=collectives, attention=attention, elementwise=elementwise, sampler=sampler,
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
        if self.sampler:
            out["sampler"] = {k: e.to_dict() for k, e in self.sampler.items()}
        if self.validation is not None:
            out["validation"] = self.validation.to_dict()
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, width=100)

    @classmethod
    def load(cls, path: str | os.PathLike, what: str = "profile") -> "Profile":
        """Read and validate a profile file (``yaml.safe_load`` only); ``what`` names it in a missing-file error
        (e.g. "--interconnect profile")."""
        from accelcal.filekinds import document_kind
        from accelcal.safe_io import UnsafeInput, parse_yaml, read_text

        from .reader import PROFILE_MAX_BYTES

        path = os.fspath(path)
        try:  # bounded: regular file, size cap, alias/depth limits, duplicate keys refused
            data = parse_yaml(read_text(path, what=what, max_bytes=PROFILE_MAX_BYTES), origin=path)
        except UnsafeInput as exc:
            hint = ""
            if "not valid YAML" in str(exc) and not path.lower().endswith((".yaml", ".yml")):
                what = "raw results" if path.lower().endswith((".csv", ".json", ".parquet")) else "another kind of file"
                hint = (f"; is this an accelcal profile? It looks like {what}: a profile is the .yaml file accelcal "
                        f"calibrate or accelcal import writes")
            raise ProfileError(str(exc) + hint) from None
        if data is None:
            raise ProfileError(f"{path}: {TOP_LEVEL}: the file is empty")
        kind = document_kind(data)
        if kind is not None and kind[0] not in ("profile", "interconnect"):
            # another of accelcal's inputs (a MoE table accelcal import moe-table wrote, a model config, an engine
            # preset): say what it is and where it goes, not which profile keys it lacks
            wants = ("an interconnect profile" if what in ("--interconnect", "--inter-node-profile")
                     else "a device profile" if what in ("--profile", "PROFILE") else "a device or interconnect profile")
            raise ProfileError(f"{path}: {kind[1]}, not a profile: pass it with {kind[2]}; "
                               f"{what if what != 'profile' else 'this option'} takes {wants}")
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

    @property
    def is_interconnect(self) -> bool:
        """A collectives-only profile (no compute): one fabric, to combine with a device profile (calibrate/compose.py)."""
        return not self.compute

    def _base_flags(self) -> tuple[str, ...]:
        return ("datasheet",) if self.is_datasheet else ("published",) if self.identity.source == "published" else ()

    def grouped_source_dtype(self, dtype: str) -> str | None:
        """The dtype whose measured grouped GEMMs answer for ``dtype``'s: its own where measured, else the first
        timed dtype (accelcal.vocab.GROUPED_GEMM_DTYPES) the profile measured them in, standing in; None: none."""
        if dtype in self.compute and self.compute[dtype].grouped_points:
            return dtype
        return next((d for d in GROUPED_GEMM_DTYPES if d in self.compute and self.compute[d].grouped_points), None)

    def grouped_gemm_time_s(self, experts: int, m: int, n: int, k: int, dtype: str,
                            weight_bytes_per_elem: float | None = None) -> Estimate:
        """Time of one grouped kernel over ``experts`` GEMMs of ``m`` tokens each by an (n, k) weight each
        (``weight_bytes_per_elem``: the weights stored weight-only at that size, as :meth:`gemm_time_s` takes it):
        the one GEMM with the experts stacked along N (same FLOPs and weight bytes), times the measured ratio of
        grouped kernels to that estimate at ``m`` tokens per expert (ComputeEntry.grouped_ratio) in ``dtype``, or,
        where ``dtype``'s grouped kernels are not timed (accelcal.vocab.GROUPED_GEMM_DTYPES), in the first timed
        dtype the profile has, standing in; without any, the stacked GEMM as it is."""
        est = self.gemm_time_s(m, experts * n, k, dtype, weight_bytes_per_elem)
        src_dt = self.grouped_source_dtype(dtype)
        if src_dt is None:
            return Estimate(est.time_s, est.extrapolated, f"{experts} experts as one grouped kernel ~ one GEMM N = "
                            f"{experts} x {n}: {est.detail}", est.source, est.flags)
        e = self.compute[src_dt]
        ratio = e.grouped_ratio(m, *gemm_element_bytes(src_dt))
        ms = [p[1] for p in e.grouped_points]
        es = [p[0] for p in e.grouped_points]
        outside = not min(ms) <= m <= max(ms)
        more = experts > max(es)  # the ratio is taken by tokens per expert; more experts than measured: flagged
        stand_in = f" ({src_dt}'s, standing in: {dtype} grouped kernels are not timed)" if src_dt != dtype else ""
        return Estimate(est.time_s * ratio, est.extrapolated or outside or more,
                        f"{experts} experts as one grouped kernel = one GEMM N = {experts} x {n} ({est.detail}) x "
                        f"{ratio:.3g}, the measured grouped / stacked ratio at {m:g} tokens per expert{stand_in}"
                        + (f" (held at the measured range's end, {min(ms):g}..{max(ms):g})" if outside else "")
                        + (f" (measured with up to {max(es):g} experts in a call)" if more else ""),
                        f"compute.{src_dt}.grouped_points", est.flags + (("extrapolated",) if (outside or more) and
                                                                         "extrapolated" not in est.flags else ()))

    def gemm_time_s(self, m: int, n: int, k: int, dtype: str, weight_bytes_per_elem: float | None = None) -> Estimate:
        """Time of C[m,n] = A[m,k] @ B[k,n] in ``dtype``; ``weight_bytes_per_elem``: B stored in a weight-only
        format of that size (accelcal.vocab.WEIGHT_ONLY_BYTES), computed in ``dtype`` (ComputeEntry.weight_only_scale)."""
        for name, v in (("m", m), ("n", n), ("k", k)):
            if v is None or v <= 0:
                raise ValueError(f"gemm_time_s: {name} must be a positive integer, got {v!r}")
        if dtype not in self.compute:
            raise MissingMeasurement(f"{self.identity.name}: no GEMM data for dtype {dtype!r}; "
                                     f"compute has {sorted(self.compute)}")
        e = self.compute[dtype]
        t, extrap, how = e.estimate_s(m, n, k, *gemm_element_bytes(dtype))
        if weight_bytes_per_elem is not None and weight_bytes_per_elem != gemm_element_bytes(dtype)[0]:
            scale = e.weight_only_scale(m, n, k, *gemm_element_bytes(dtype), weight_bytes_per_elem)
            t *= scale
            how = (f"{how}; weights stored at {weight_bytes_per_elem:g} bytes per element: x{scale:.3g} (the "
                   f"{dtype} model with its weight reads at that size; dequantisation not counted)")
        if self.identity.covered_models and not extrap and not e.measures_nk(n, k):
            # The sweep recorded the models it covered (--for-model): a shape outside them is extrapolated.
            extrap, how = True, f"{how}; (N={n:g}, K={k:g}) not measured (sweep covered {self.identity.covered_models})"
        flags = self._base_flags() + _flagged(e.quality)
        if self.is_datasheet:
            how = "datasheet peak FLOP/s and memory bandwidth roofline, no measured efficiency (optimistic)"
            extrap = True
        if extrap:
            flags += ("extrapolated",)
        return Estimate(t, extrap, how, f"compute.{dtype}", flags)

    def roofline_time_s(self, flop: float, nbytes: float, dtype: str) -> Estimate:
        """A kernel of ``flop`` and ``nbytes`` that no profile field times, at ``compute.<dtype>``'s fitted peak FLOP
        rate and bandwidth: overhead + max(FLOP / peak, bytes / bandwidth); flagged ``roofline``."""
        c = self.compute.get(dtype)
        if c is None:
            raise MissingMeasurement(f"{self.identity.name}: no compute.{dtype} for a roofline; compute has "
                                     f"{sorted(self.compute)}")
        t = (c.overhead_s or 0.0) + max(flop / c.peak_flop_per_s, nbytes / c.memory_bandwidth_bytes_per_s)
        return Estimate(t, True, f"roofline of compute.{dtype}'s fitted peak FLOP rate and bandwidth "
                                 f"({flop:.3g} FLOP, {nbytes:.3g} B)", f"compute.{dtype}",
                        self._base_flags() + ("roofline",))

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

    def sampler_time_s(self, kind: str, logits: float) -> Estimate:
        """Time of the sampler ``kind`` over ``logits`` logits (sequences x vocabulary) in one step.

        Raises MissingMeasurement where the profile has no such measurement: callers estimate the kind's bytes per
        logit at the copy bandwidth instead.
        """
        if logits is None or logits < 0:
            raise ValueError(f"sampler_time_s: logits must be >= 0, got {logits!r}")
        if kind not in SAMPLER_BYTES_PER_LOGIT:
            raise ValueError(f"sampler_time_s: unknown sampler kind {kind!r}; expected one of "
                             f"{list(SAMPLER_BYTES_PER_LOGIT)}")
        e = self.sampler.get(kind)
        if e is None:
            raise MissingMeasurement(f"{self.identity.name}: no sampler data for {kind!r}; sampler has "
                                     f"{sorted(self.sampler)}")
        return self._alpha_beta(e, logits * SAMPLER_BYTES_PER_LOGIT[kind], f"sampler.{kind}")

    def _alpha_beta(self, e: MemoryEntry, nbytes: float, source: str) -> Estimate:
        p = e.piece_for(nbytes)
        flags = self._base_flags() + _flagged(e.quality)
        extrap, note = _range_note(e.quality, nbytes, "bytes")
        lat = p.latency_s
        where = f" (piece max_bytes={_piece_bound(p.max_bytes)})" if e.pieces and len(e.pieces) > 1 else ""
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
                         head_dim: int, dtype: str, causal: bool = True, kv_dtype: str | None = None,
                         v_head_dim: int | None = None, shared_kv: bool = False, window: int = 0) -> Estimate:
        """One attention call (prefill, decode, or ``chunk``: torch's kernels for a prefill after cached context),
        from the fitted FLOP and byte rates.

        ``kv_dtype``: the KV cache's element type when it differs from ``dtype`` (an fp8 cache under bf16
        attention): K and V are counted at its size against the ``dtype`` entry's byte rate, and the estimate
        says so (flag ``kv-dtype-not-measured``), since no profile field measures such a kernel.
        ``v_head_dim`` (values narrower or wider than the keys) and ``shared_kv`` (the values are the keys' first
        columns): multi-head latent attention's calls (ModelConfig.attention_shape), their FLOP and bytes counted
        so (vocab.attention_flop_bytes) at the fitted rates of the standard kernel; flagged
        ``attention-form-not-measured``, since the profile times torch's scaled-dot-product attention only.
        ``window``: each query attends at most that many of the ``kv_len`` keys (a sliding window, sparse attention's
        top-k): the FLOP count is the windowed pairs' (vocab.attended_pairs)."""
        if phase not in ATTENTION_KINDS:
            raise ValueError(f"attention_time_s: phase must be one of {ATTENTION_KINDS}, got {phase!r}")
        for what, dt in (("dtype", dtype), ("kv_dtype", kv_dtype)):
            if dt is not None and dt not in DTYPE_BYTES:
                raise ValueError(f"attention_time_s: unknown {what} {dt!r}; known {sorted(DTYPE_BYTES)}")
        other_kv = kv_dtype is not None and DTYPE_BYTES[kv_dtype] != DTYPE_BYTES[dtype]
        flop, nbytes = attention_flop_bytes(batch, q_len, kv_len, heads, kv_heads, head_dim, DTYPE_BYTES[dtype], causal,
                                            DTYPE_BYTES[kv_dtype] if other_kv else None, v_head_dim, shared_kv, window)
        est = self._attention_estimate(phase, batch, q_len, kv_len, heads, kv_heads, head_dim, dtype, flop, nbytes)
        if shared_kv or (v_head_dim is not None and v_head_dim != head_dim):
            v = head_dim if v_head_dim is None else v_head_dim
            form = f"{v}-wide values" + (", one tensor for both" if shared_kv and v else "") if v else "no values"
            est = replace(est, detail=f"{est.detail}; another attention form ({head_dim}-wide keys, {form}) at the "
                                      f"fitted rates of the standard kernel", flags=est.flags + ("attention-form-not-measured",))
        if other_kv:
            est = replace(est, detail=f"{est.detail}; K/V read at {kv_dtype} ({DTYPE_BYTES[kv_dtype]} B/element) at "
                                      f"the {dtype} kernel's byte rate", flags=est.flags + ("kv-dtype-not-measured",))
        return est

    def _attention_estimate(self, phase: str, batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int,
                            head_dim: int, dtype: str, flop: float, nbytes: float) -> Estimate:
        e = self.attention.get(dtype, {}).get(phase)
        if e is None:
            have = [f"{dt}.{ph}" for dt, phs in self.attention.items() for ph in phs]
            if dtype in self.compute:
                # No attention measured: two GEMM-like passes over the data at the GEMM roofline, flagged.
                c = self.compute[dtype]
                t = (c.overhead_s or 0.0) + max(flop / c.peak_flop_per_s, nbytes / c.memory_bandwidth_bytes_per_s)
                return Estimate(t, True, f"no attention measured for {dtype} {phase} (the profile has "
                                         f"{have or 'none'}); roofline from compute.{dtype}",
                                f"compute.{dtype}", self._base_flags() + ("not-measured", "extrapolated"))
            raise MissingMeasurement(f"{self.identity.name}: no attention data for {dtype}.{phase} and no compute.{dtype} "
                                     f"to fall back on; attention has {have}, compute has {sorted(self.compute)}")
        t = e.time_s(phase, batch, q_len, kv_len, heads, kv_heads, head_dim, flop, nbytes)
        extrap, note = _range_note(e.quality, flop, "FLOP")
        flags = self._base_flags() + _flagged(e.quality) + (("extrapolated",) if extrap else ())
        how = "latency + max(FLOP/rate, bytes/rate)" + (
            " x the query blocks' schedule over the units (prologue of half_length keys each)"
            if phase in PREFILL_KINDS and (e.wave_units or e.half_length)
            else (" x (1 + half_length/kv_len)" if e.half_length else ""))
        return Estimate(t, extrap, f"{how}, {note}", f"attention.{dtype}.{phase}", flags)

    def attention_mixed_time_s(self, decode_kv_lens: Sequence[int], chunks: Sequence[tuple[int, int]], heads: int,
                               kv_heads: int, head_dim: int, dtype: str, torch_chunks: bool = False) -> Estimate:
        """One continuous-batching attention step: a decode batch (one new token per sequence, its KV length in
        ``decode_kv_lens``) plus prefill ``chunks`` of (q_len new tokens, context_len tokens already cached).

        Composed from the fitted parts as one varlen kernel: one call latency, plus each part's time above
        its latency (the decode batch at its mean KV length; each chunk a causal prefill, kv = context + q, at
        the whole-prompt rate as an engine's varlen kernel runs it).  ``torch_chunks``: chunks after cached
        context as torch's SDPA runs them, from ``attention.<dtype>.chunk`` where the profile has it.
        """
        from ..attention_model import mixed_parts

        parts = mixed_parts(list(decode_kv_lens), list(chunks))
        if torch_chunks and "chunk" in self.attention.get(dtype, {}):
            parts = [("chunk" if ph == "prefill" and q < kv else ph, b, q, kv) for ph, b, q, kv in parts]
        ests = [(ph, self.attention_time_s(ph, b, q, kv, heads, kv_heads, head_dim, dtype)) for ph, b, q, kv in parts]
        lat = {ph: (self.attention[dtype][ph].latency_s if ph in self.attention.get(dtype, {}) else 0.0) for ph, _ in ests}
        total = max(lat.values()) + sum(max(0.0, e.time_s - lat[ph]) for ph, e in ests)
        flags = tuple(dict.fromkeys(f for _, e in ests for f in e.flags))
        detail = (f"mixed step: {len(decode_kv_lens)} decode sequence(s) + {len(chunks)} prefill chunk(s), one call "
                  f"latency + the parts' work ({', '.join(f'{ph} {e.time_s * 1e6:.3g} us' for ph, e in ests)})")
        return Estimate(total, any(e.extrapolated for _, e in ests), detail,
                        ", ".join(dict.fromkeys(e.source for _, e in ests)), flags)

    def collective_time_s(self, op: str, nbytes: float, group_size: int, scope: str = "intra_node",
                          kernel: str | None = None) -> Estimate:
        """latency + S / bandwidth, S in the nccl-tests convention; ring-model scaling to unmeasured group sizes.

        ``kernel``: the entries of that implementation (e.g. an engine's own all-reduce); where the profile has
        none for this op and scope, the library's entries answer and the estimate says so (flag
        ``kernel-not-measured``)."""
        if kernel is not None:
            if any(c.op == op and c.scope == scope and c.kernel == kernel for c in self.collectives):
                est = self._collective(op, nbytes, group_size, scope, kernel)
                return replace(est, detail=f"{kernel} kernel: {est.detail}")
            est = self._collective(op, nbytes, group_size, scope, None)
            return replace(est, flags=tuple(dict.fromkeys(est.flags + ("kernel-not-measured",))),
                           detail=f"{kernel} not measured for {op} ({scope}): the collective library's entry; "
                                  f"{est.detail}")
        est = self._collective(op, nbytes, group_size, scope, None)
        return self._network_floor(est, op, nbytes, group_size) if scope == "inter_node" else est

    def _network_floor(self, est: Estimate, op: str, nbytes: float, group_size: int) -> Estimate:
        """An inter-node answer scaled from another group size (est.extrapolated) is at least the same collective's
        intra-node answer: the log it is scaled from has its own ranks per node (2 x 8 H100s: NVLink inside each
        node, 16 NICs between them), so scaling it down to a group spread over more nodes can come out faster than
        NVLink, which no network is.  A measured inter-node entry stands as measured."""
        if not est.extrapolated or not any(c.scope == "intra_node" for c in self.collectives):
            return est
        try:
            local = self._collective(op, nbytes, group_size, "intra_node", None)
        except MissingMeasurement:
            return est
        if local.time_s <= est.time_s:
            return est
        return replace(est, time_s=local.time_s, flags=tuple(dict.fromkeys(est.flags + ("intra-node-floor",))),
                       detail=f"{est.detail}; raised to the intra-node {op} over {group_size} ranks "
                              f"({local.time_s * 1e6:.4g} us > {est.time_s * 1e6:.4g} us): a network is not faster "
                              f"than the node's own fabric")

    def _collective(self, op: str, nbytes: float, group_size: int, scope: str, kernel: str | None) -> Estimate:
        if nbytes is None or nbytes < 0:
            raise ValueError(f"collective_time_s: nbytes must be >= 0, got {nbytes!r}")
        if group_size is None or group_size < 1:
            raise ValueError(f"collective_time_s: group_size must be >= 1, got {group_size!r}")
        if op not in BUSBW_FACTORS:
            raise ValueError(f"collective_time_s: unknown op {op!r}; known {sorted(BUSBW_FACTORS)}")
        label = f"collectives[{op},{scope},{group_size}]"
        if group_size == 1 and op != "send_recv":
            return Estimate(0.0, False, "group of one rank: nothing to communicate", label, ())
        cands = [c for c in self.collectives if c.op == op and c.scope == scope and c.kernel == kernel]
        if not cands and op in ANSWERED_BY_ALL_REDUCE and any(
                c.op == "all_reduce" and c.scope == scope and c.kernel == kernel for c in self.collectives):
            if op == "send_recv":
                return self._send_recv_from_all_reduce(nbytes, scope, kernel)
            # An all-reduce of the zero-padded S-byte buffer is an all-gather of it, and a reduce-scatter's output is
            # a slice of the all-reduce result: all_reduce(S) bounds both from above (a stated, flagged model).
            est = self._collective("all_reduce", nbytes, group_size, scope, kernel)
            return replace(est, extrapolated=True, flags=tuple(dict.fromkeys(est.flags + ("upper-bound", "extrapolated"))),
                           detail=f"{op} not measured: upper bound all_reduce(S) ({est.detail})")
        if not cands:
            have = sorted({(c.op, c.scope) for c in self.collectives})
            raise MissingCollective(f"{self.identity.name}: no {op} data for scope {scope!r}; "
                                     f"collectives has (op, scope) {have}")
        exact = [c for c in cands if c.group_size == group_size]
        if exact:
            c = exact[0]
            p = c.piece_for(nbytes)
            extrap, note = _range_note(c.quality, nbytes, "bytes")
            lat = p.latency_s
            flags = self._base_flags() + _flagged(c.quality)
            detail = (f"alpha-beta piece (max_bytes={_piece_bound(p.max_bytes)}), {note}" if len(c.pieces or ()) > 1
                      else f"alpha-beta fit, {note}")
            if lat is None:
                lat, extrap = 0.0, True
                flags += ("not-measured",)
                detail = "datasheet link bandwidth as bus bandwidth; latency not given by the source, 0 assumed"
            if extrap:
                flags += ("extrapolated",)
            return Estimate(lat + nbytes / p.bandwidth_bytes_per_s, extrap, detail, c.label, flags)
        # Ring model: bus bandwidth is constant in n, so algbw(n) = busbw / factor(n).  Latency keeps the
        # measured value and takes only its growth in n from NCCL's base + per-step ring model
        # (accelcal.vocab.ring_latency_scale): a pure x(n-1) scaling would treat NCCL's fixed launch/sync
        # base as per-step cost.  Scale from the nearest measured group size.
        c = min(cands, key=lambda e: (abs(math.log(e.group_size / group_size)), -e.group_size))
        if c.group_size == 1:
            raise MissingCollective(f"{self.identity.name}: {op} measured only for group size 1; cannot scale to {group_size}")
        p = c.piece_for(nbytes)
        f0, f1 = busbw_factor(op, c.group_size), busbw_factor(op, group_size)
        bw = p.bandwidth_bytes_per_s * f0 / f1
        if c.fabric in SWITCH_FABRICS:
            # every rank one hop from every other through the switch: NCCL's switch-algorithm latency has no
            # per-rank steps (accelcal.vocab.SWITCH_FABRICS), so the measured latency is kept
            steps, model, how = 1.0, "switch-model", f"{c.fabric} switch: latency kept (NCCL's NVLS latency model)"
        else:
            link = "net" if scope == "inter_node" else "nvlink"
            steps = ring_latency_scale(op, c.group_size, group_size, link)
            model, how = "ring-model", f"latency x {steps:.3g} (NCCL ring model, {link} steps)"
        lat = (p.latency_s or 0.0) * steps
        flags = self._base_flags() + _flagged(c.quality) + (model, "extrapolated")
        if p.latency_s is None:
            flags += ("not-measured",)
        detail = (f"{model} extrapolation from group {c.group_size}: bandwidth x factor({c.group_size})/factor({group_size}) "
                  f"= {f0:.3g}/{f1:.3g}, {how}")
        return Estimate(lat + nbytes / bw, True, detail, c.label, flags)

    def _send_recv_from_all_reduce(self, nbytes: float, scope: str, kernel: str | None) -> Estimate:
        """send_recv(S) where only all_reduce was measured on this fabric: S over one device's link at the
        all-reduce's bus bandwidth, with the all-reduce's latency (a stated, flagged model).

        Inside a node, a ring all-reduce of S bytes over n ranks sends 2(n-1)/n x S from every rank over its one
        outgoing link, so its bus bandwidth (nccl-tests' busbw = algbw x 2(n-1)/n) is at most that link's speed,
        and its latency (2(n-1) steps) at least one hand-off's: all_reduce(S x n / (2(n-1))) over n ranks costs a
        one-link transfer of S at busbw plus the all-reduce latency, an upper bound up to what in-switch reduction
        (NVLS) adds to busbw.  Across nodes the bus bandwidth is the node's, every device's network links together
        (and NCCL's tree and NVLS algorithms, which beat a ring); one device's hand-off gets its share,
        busbw / devices per node: all_reduce(S x devices per node / factor), an estimate (about 56 GB/s per
        device for 256 MiB from the shipped 2 x 8 H100 log, whose 400 Gb/s NICs carry 50).  The smallest measured
        group is used: its latency has the fewest steps."""
        groups = [c.group_size for c in self.collectives
                  if c.op == "all_reduce" and c.scope == scope and c.kernel == kernel and c.group_size > 1]
        if not groups:
            raise MissingCollective(f"{self.identity.name}: no send_recv data for scope {scope!r}, and its all_reduce "
                                     f"was measured over one rank only (nothing to derive a link's speed from)")
        n = min(groups)
        f = busbw_factor("all_reduce", n)
        share = max(1, min(n, int(self.identity.devices_per_node or 1))) if scope == "inter_node" else 1
        est = self._collective("all_reduce", nbytes * share / f, n, scope, kernel)
        how = ("one link at the all_reduce bus bandwidth" if share == 1 else
               f"one device's share of the node's network, the all_reduce bus bandwidth / {share} devices per node")
        bound = ("upper-bound",) if share == 1 else ()
        return replace(est, extrapolated=True,
                       flags=tuple(dict.fromkeys(est.flags + ("derived",) + bound + ("extrapolated",))),
                       detail=f"send_recv not measured: {nbytes:.4g} B over {how} of {n} ranks = all_reduce("
                              f"{nbytes:.4g} B x {share} / busbw factor {f:.3g}) over {n} ranks ({est.detail})")

    def launch_overhead_s(self, mode: str = "eager") -> Estimate:
        """Per-kernel launch cost: ``eager`` (Python issuing a tiny kernel), ``dispatch`` (per op of a real eager
        layer, views and casts included; falls back to ``eager``) or ``graph`` (graph replay)."""
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
            # a tiny kernel's launch stands in for a real layer's ops (views, casts, Python between them): flagged,
            # since an eager-launch-bound estimate from it is optimistic (the H200 profile measured 20.3 us per op,
            # 10.7 us per tiny kernel)
            return replace(est, extrapolated=True, flags=tuple(dict.fromkeys(est.flags + ("fallback",))),
                           detail=f"overheads.eager_dispatch_s (an eager layer's op-mix dispatch cost) not measured, "
                                  f"so eager_launch_s (one tiny kernel's launch, {est.time_s * 1e6:.3g} us) stands in: "
                                  f"eager steps' launch cost is optimistic; recalibrate with this accelcal to measure "
                                  f"it (the stand-in: {est.detail})")
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
            el = gemm_element_bytes(dt)
            g = e.gemm_model
            query_model = (lambda a, b, c: g.time_s(a, b, c)) if g is not None else (lambda a, b, c: e.model_time_s(a, b, c, *el))
            before = [query_model(*pt[:3]) for pt in e.points]
            grouped_before = [query_model(pt[1], pt[0] * pt[2], pt[3]) for pt in e.grouped_points]
            e.memory_bandwidth_bytes_per_s *= factor
            if g is not None:
                g = e.gemm_model = replace(g, memory_bandwidth_bytes_per_s=g.memory_bandwidth_bytes_per_s * factor)
            # Measured points become what they would have measured on the faster/slower memory under the model,
            # so the efficiency correction (measured / model) is kept rather than cancelling the what-if.
            e.points = [pt[:3] + [pt[3] * query_model(*pt[:3]) / b] for pt, b in zip(e.points, before)]
            # grouped cases likewise, by their stacked GEMM's model time, so their ratio is kept
            e.grouped_points = [pt[:4] + [pt[4] * query_model(pt[1], pt[0] * pt[2], pt[3]) / b]
                                for pt, b in zip(e.grouped_points, grouped_before)]
        for e in (list(p.memory.values()) + [g for gs in p.elementwise.values() for g in gs.values()]
                  + list(p.sampler.values())):
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
