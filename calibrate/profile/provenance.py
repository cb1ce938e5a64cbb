"""Provenance sections of a profile: who measured what, how (``identity``), and how well it predicted (``validation``).

    from accelcal.calibrate.profile.provenance import Identity, Validation
    Profile.load("profiles/nvidia-h200.yaml").identity.source     # measured | published | datasheet

Each class reads itself strictly with :class:`~accelcal.calibrate.profile.reader.Reader` and writes itself
back with ``to_dict``; the measured sections' classes are in :mod:`.entries`.  No torch.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from accelcal.textsafe import brief

from .reader import SOURCES, Reader

__all__ = ["Identity", "Validation", "ValidationCase"]


def _iso_date(r, value, path: str) -> str:
    """An ISO 8601 date or date-time string ('' when not recorded), as calibrate writes it."""
    from datetime import date, datetime

    # an unquoted 2026-11-26 is a YAML date: take it as its ISO text
    text = value.isoformat() if isinstance(value, (date, datetime)) else r.string(value, path)
    if text:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            raise r.fail(path, f"expected an ISO 8601 date such as 2026-11-26 or 2026-11-26T06:03:07+00:00, got "
                               f"{text[:40]!r}") from None
    return text


@dataclass
class Identity:
    """Who and what was measured, how, and from which source."""

    name: str
    """Profile name, e.g. ``cpu-amd-epyc-2c`` or ``h100-sxm``."""
    source: str
    """``measured``, ``datasheet`` or ``published`` (measured by someone else; citations required)."""
    device_type: str
    """cpu | cuda | rocm | ..."""
    device_name: str
    """Marketing / driver name of the device."""
    devices_per_node: int
    """Accelerators per node (ranks per node for CPU runs)."""
    nodes: int
    """Nodes measured (or described)."""
    memory_capacity_bytes: float | None
    """Memory per device in bytes; null only in an interconnect profile (collectives only, no compute section)."""
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

    memory_in_use_at_start_bytes: float | None = None
    """Optional: device memory already in use when the kernel suite started (total - free from the device's own
    query, torch.cuda.mem_get_info on CUDA: the CUDA context and driver reservations, which an engine's process
    holds too and which no engine counts as its KV cache); null where not measured (CPUs, datasheets, profiles
    measured before the field)."""

    raw_sha256: dict[str, str] = field(default_factory=dict)
    """sha256 of each source file the profile was fitted from (``raw_data`` path -> hex digest; optional key)."""

    @classmethod
    def read(cls, r: Reader, d: Any, path: str) -> "Identity":
        opt = ("threads_per_device", "raw_sha256", "covered_models", "covered_tp", "memory_in_use_at_start_bytes")
        names = [f.name for f in fields(cls) if f.name not in opt]
        d = r.mapping(d, path, names, opt)
        sha = d.get("raw_sha256") or {}
        if not isinstance(sha, dict) or not all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in sha.values()):
            raise r.fail(f"{path}.raw_sha256", f"expected a mapping of file -> 64 hex digits, got {brief(sha, 80)}")
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
            memory_capacity_bytes=r.plausible("memory_bytes", d["memory_capacity_bytes"], f"{path}.memory_capacity_bytes",
                                              optional=True),
            host=r.string(d["host"], f"{path}.host"),
            date=_iso_date(r, d["date"], f"{path}.date"),
            command=r.string(d["command"], f"{path}.command"),
            versions=dict(versions),
            citations=r.str_list(d["citations"], f"{path}.citations"),
            raw_data=r.str_list(d["raw_data"], f"{path}.raw_data"),
            threads_per_device=None if d.get("threads_per_device") is None else
            r.integer(d["threads_per_device"], f"{path}.threads_per_device", lo=1, hi=100000),
            raw_sha256={str(k): v for k, v in sha.items()},
            memory_in_use_at_start_bytes=_in_use(r, d.get("memory_in_use_at_start_bytes"), d["memory_capacity_bytes"],
                                                 f"{path}.memory_in_use_at_start_bytes"),
            covered_models=None if d.get("covered_models") is None else r.str_list(d["covered_models"], f"{path}.covered_models"),
            covered_tp=None if d.get("covered_tp") is None else
            [r.integer(v, f"{path}.covered_tp[{i}]", lo=1, hi=100000) for i, v in enumerate(_as_list(r, d["covered_tp"], f"{path}.covered_tp"))],
        )
        if ident.source in ("datasheet", "published") and not [c for c in ident.citations if c.strip()]:
            raise r.fail(f"{path}.citations", f"a {ident.source} profile must cite the source of its numbers (empty list)")
        return ident

    def raw_csv_paths(self, profile_path: str | os.PathLike) -> list[Path]:
        """The raw CSVs of ``raw_data`` that exist beside the profile at ``profile_path``; an entry that leaves the
        profile's folder is refused (accelcal.safe_io.inside raises UnsafeInput)."""
        from accelcal.safe_io import inside

        base = Path(profile_path).parent
        return [q for q in (inside(base, r, "raw_data entry") for r in self.raw_data if r.endswith(".csv")) if q.exists()]

    def raw_env(self, profile_path: str | os.PathLike) -> tuple[Path | None, dict]:
        """(path, fields) of the first ``<raw CSV>.env.json`` beside the profile (the measurement's environment:
        device, versions, memory total/free at start), or (None, {}) when no raw CSV has one."""
        from accelcal.safe_io import load_json

        for csv in self.raw_csv_paths(profile_path):
            env = csv.with_suffix(".env.json")
            if env.is_file():
                return env, load_json(env, what="environment file", max_bytes=16 * 2**20, expect=dict)
        return None, {}

    def to_dict(self) -> dict:
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        if not self.raw_sha256:
            del out["raw_sha256"]  # optional key: profiles without source digests stay as they were
        for k in ("covered_models", "covered_tp", "memory_in_use_at_start_bytes"):  # optional keys: absent unless recorded
            if out[k] is None:
                del out[k]
        return out


def _in_use(r: Reader, value: Any, capacity: Any, path: str) -> float | None:
    """memory_in_use_at_start_bytes: absent/null, or bytes >= 0 below the device's capacity."""
    value = r.number(value, path, lo=0.0, optional=True)
    if value is not None and isinstance(capacity, (int, float)) and value >= capacity:
        raise r.fail(path, f"{value:.4g} bytes in use at start >= memory_capacity_bytes {capacity:.4g}")
    return value


def _as_list(r: Reader, value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise r.fail(path, f"expected a list, got {type(value).__name__}")
    return value


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
    command: str = ""
    """The command that ran the validation ("" in profiles written before it was recorded)."""

    @classmethod
    def read(cls, r: Reader, d: Any, path: str) -> "Validation":
        d = r.mapping(d, path, ["date", "device", "median_abs_rel_err", "max_abs_rel_err", "cases"], ["command"])
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
        return cls(date=_iso_date(r, d["date"], f"{path}.date"), device=r.string(d["device"], f"{path}.device"),
                   median_abs_rel_err=r.number(d["median_abs_rel_err"], f"{path}.median_abs_rel_err", hi=1e6),
                   max_abs_rel_err=r.number(d["max_abs_rel_err"], f"{path}.max_abs_rel_err", hi=1e6), cases=cases,
                   command=r.string(d["command"], f"{path}.command") if d.get("command") is not None else "")

    def to_dict(self) -> dict:
        return {"date": self.date, "device": self.device, **({"command": self.command} if self.command else {}),
                "median_abs_rel_err": float(self.median_abs_rel_err),
                "max_abs_rel_err": float(self.max_abs_rel_err), "cases": [c.to_dict() for c in self.cases]}
