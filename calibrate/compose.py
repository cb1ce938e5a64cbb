"""One planning profile from measured parts: a device profile plus interconnect profiles per fabric.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.compose import compose
    p = compose(Profile.load("profiles/nvidia-h200.yaml"),
                interconnect=Profile.load("profiles/interconnect/h100-nvswitch-8.yaml"),
                inter_node=Profile.load("profiles/interconnect/gcp-a3mega-h100-2x8.yaml"))
    for part in p.parts: print(part.line())     # device: measured on <host>, <date>; intra-node: published by <url>
    p.collective_time_s("all_reduce", 1 << 20, 8, "intra_node")

The device profile answers compute, memory, overheads and attention (one
device measured); the interconnect profile (``--interconnect``) answers every
``intra_node`` collective and the inter-node profile (``--inter-node-profile``)
every ``inter_node`` one.  A part replaces the device profile's own entries of
its scope whole, so one scope never mixes two fabrics.  ``identity.devices_per_node``
comes from the intra-node fabric (else the inter-node one): a device profile measured one device, a
fabric's log says how many share a node.  Numbers are the parts'
own: the same entries in one combined file give identical costs.  Each
collective answer carries the flags of the part it came from (``published``,
``datasheet``, ``ring-model`` for a group size the log did not measure).
"""

from __future__ import annotations

import copy
import functools
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from accelcal.units import fmt_bytes
from accelcal.vocab import ANSWERED_BY_ALL_REDUCE, SCOPES

from .priors import same_device_model
from .profile import Estimate, Profile, ProfileError

__all__ = ["Part", "ComposedProfile", "compose", "datasheet_names", "fabric_device_mismatch", "plan_profiles",
           "require_device_profile", "describe_origin", "shipped_interconnects", "missing_hint", "smoke_sweep",
           "SHIPPED_DIR", "SMOKE_NOTE"]

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "profiles" / "interconnect"
"""The interconnect profiles shipped with accelcal (made by ``accelcal import nccl-tests`` from published logs)."""

_ROLE = {"intra_node": "intra-node", "inter_node": "inter-node"}


def describe_origin(p: Profile) -> str:
    """Where a profile's numbers came from, in a few words (measured on host/date, published by, datasheet)."""
    i = p.identity
    cites = [c for c in i.citations if c.strip()]
    more = f" (+{len(cites) - 1} more)" if len(cites) > 1 else ""
    if i.source == "published":
        return f"published by {cites[0]}{more}" if cites else "published (no citation)"
    if i.source == "datasheet":
        return f"DATASHEET PRIOR ({cites[0]}{more})" if cites else "DATASHEET PRIOR"
    return (f"measured on {i.host or 'an unrecorded host'}, {i.date or 'date not recorded'}"
            + (f" ({SMOKE_NOTE})" if smoke_sweep(p) else ""))


SMOKE_NOTE = "calibrate --smoke: a seconds-long test sweep, not for planning; recalibrate with --quick or --full"
"""What a profile measured by ``accelcal calibrate --smoke`` is (its help: "not for planning")."""


def smoke_sweep(p: Profile) -> bool:
    """Whether ``p`` was measured by ``accelcal calibrate --smoke`` (its recorded command says so)."""
    return p.identity.source == "measured" and "--smoke" in str(p.identity.command or "").split()


@dataclass(frozen=True)
class Part:
    """One component of a composed profile."""

    role: str
    """device, intra-node or inter-node."""
    name: str
    """identity.name of the part's profile."""
    source: str
    """measured, datasheet or published."""
    origin: str
    """:func:`describe_origin` of the part."""
    device_name: str
    """identity.device_name of the part (an interconnect log names the devices it ran on)."""
    entries: int
    """Collective entries it contributes (0 for the device part when another part replaces them)."""
    versions: dict = field(default_factory=dict)
    """identity.versions of the part (an interconnect log's NCCL and nccl-tests versions)."""

    def line(self) -> str:
        what = "" if self.role == "device" else f", {self.entries} collective fit(s) on {self.device_name}"
        return f"{self.role}: {self.name} - {self.origin}{what}"

    def to_dict(self) -> dict:
        return {"role": self.role, "name": self.name, "source": self.source, "origin": self.origin,
                "device_name": self.device_name, "entries": self.entries}


@dataclass
class ComposedProfile(Profile):
    """A Profile whose collectives per scope come from a named part (see :func:`compose`)."""

    parts: list[Part] = field(default_factory=list)
    """device first, then the parts that answer intra_node / inter_node collectives."""
    scope_part: dict[str, Part] = field(default_factory=dict)
    """Which part answers each scope."""

    def collective_time_s(self, op: str, nbytes: float, group_size: int, scope: str = "intra_node",
                          kernel: str | None = None) -> Estimate:
        est = Profile.collective_time_s(self, op, nbytes, group_size, scope, kernel)
        part = self.scope_part.get(scope)
        if part is None or group_size == 1:
            return est
        # The answer is the part's: its source kind, not the device profile's, labels it.
        own = {"datasheet": ("datasheet",), "published": ("published",)}.get(part.source, ())
        flags = tuple(f for f in est.flags if f not in ("datasheet", "published")) + own
        return replace(est, flags=flags, source=f"{part.name}:{est.source}")


def _only(p: Profile, scope: str, flag: str) -> list:
    have = [c for c in p.collectives if c.scope == scope]
    if not have:
        other = sorted({c.scope for c in p.collectives})
        if not p.is_interconnect and not other:
            # a device profile measured on one device: no fabric in it at all
            raise ProfileError(f"{flag} {p.identity.name}: is a device profile with no collective measurements; "
                               f"{flag} takes an interconnect profile (profiles/interconnect/*.yaml, or accelcal "
                               f"import nccl-tests) or a profile measured over several devices")
        hint = {"intra_node": "--inter-node-profile", "inter_node": "--interconnect"}[scope]
        raise ProfileError(f"{flag} {p.identity.name}: has no {scope} collectives (it has {other or 'none'}), so it "
                           f"is passed as {hint} (a log whose ranks span several hosts gives inter_node collectives, "
                           f"one host's gives intra_node)")
    if p.is_datasheet and any(piece.latency_s is None for c in have for piece in c.pieces):
        # a datasheet gives link bandwidths only; the composed profile costs collectives as measured ones
        raise ProfileError(f"{flag} {p.identity.name}: a datasheet profile, whose {scope} collectives have a "
                           f"bandwidth but no latency (null), so they cannot stand in a measured profile's fabric; pass "
                           f"a measured or published interconnect profile (profiles/interconnect/*.yaml, accelcal import "
                           f"nccl-tests), or use the datasheet alone: --profile {p.identity.name}'s file with "
                           f"--assume-zero-latency (plan)")
    return [copy.deepcopy(c) for c in have]


def fabric_part(p: Profile, scope: str) -> Part | None:
    """The part a composed profile took ``scope``'s collectives from (:func:`compose`); None for a plain profile."""
    return getattr(p, "scope_part", {}).get(scope)


def collectives_origin(p: Profile, scope: str) -> tuple[str, str, dict]:
    """(source, profile name, versions) of ``p``'s collectives in ``scope``: the fabric part a composed profile took
    them from (its log's source and NCCL version, not the device profile's), else the profile's own."""
    part = fabric_part(p, scope)
    if part is not None:
        return part.source, part.name, dict(part.versions)
    return ("datasheet" if p.is_datasheet else p.identity.source), p.identity.name, dict(p.identity.versions)


def datasheet_names(*profiles: Profile | None) -> list[str]:
    """identity.name of every datasheet source among ``profiles`` (None skipped; a composed profile by its parts),
    each once, in order: what a report must flag as a prior, not a measurement."""
    out: list[str] = []
    for p in profiles:
        if p is None:
            continue
        parts = [(x.name, x.source) for x in p.parts] if isinstance(p, ComposedProfile) else \
            [(p.identity.name, p.identity.source)]
        out += [str(n) for n, src in parts if src == "datasheet" and str(n) not in out]
    return out


def require_device_profile(device: Profile, flag: str = "--profile", fabric_flags: bool = True) -> None:
    """Refuse an interconnect profile (collectives only) where a device's compute, memory and attention are needed.
    ``fabric_flags``: the command takes interconnect profiles as --interconnect / --inter-node-profile (say so)."""
    if device.is_interconnect:
        where = (f"pass a device profile as {flag} and this one as --interconnect / --inter-node-profile" if fabric_flags
                 else f"pass a device profile as {flag}; an interconnect profile joins one in accelcal plan / predict "
                      f"/ report (--interconnect, --inter-node-profile)")
        raise ProfileError(f"{flag} {device.identity.name}: is an interconnect profile (collectives only, no compute); "
                           f"{where}")


def plan_profiles(device: Profile, interconnect: Profile | None = None,
                  inter_node: Profile | None = None, device_flag: str = "--profile") -> tuple[Profile, Profile | None]:
    """(device group's profile, inter-node profile left to the planner) as ``accelcal plan`` and ``report`` take
    their profiles: with an interconnect, or an inter-node profile that is one, device numbers from ``device`` and
    each scope's collectives from its fabric (:func:`compose`); a full profile as ``inter_node`` stays the group's
    inter-node link, and must have inter_node collectives.  ``device_flag`` names ``device``'s argument in errors."""
    require_device_profile(device, device_flag)
    if interconnect is not None or (inter_node is not None and inter_node.is_interconnect):
        return compose(device, interconnect, inter_node), None
    if inter_node is not None:
        _only(inter_node, "inter_node", "--inter-node-profile")  # refuse a profile with no link between nodes
    return device, inter_node


def compose(device: Profile, interconnect: Profile | None = None, inter_node: Profile | None = None) -> ComposedProfile:
    """The device profile with its intra_node collectives from ``interconnect`` and inter_node ones from ``inter_node``."""
    require_device_profile(device)
    colls = list(copy.deepcopy(device.collectives))
    parts = [Part("device", device.identity.name, device.identity.source, describe_origin(device),
                  device.identity.device_name, len(colls), dict(device.identity.versions))]
    scope_part: dict[str, Part] = {}
    for prof, scope, flag in ((interconnect, "intra_node", "--interconnect"),
                              (inter_node, "inter_node", "--inter-node-profile")):
        if prof is None:
            continue
        mine = _only(prof, scope, flag)
        colls = [c for c in colls if c.scope != scope] + mine
        part = Part(_ROLE[scope], prof.identity.name, prof.identity.source, describe_origin(prof),
                    prof.identity.device_name, len(mine), dict(prof.identity.versions))
        parts.append(part)
        scope_part[scope] = part
    ident = copy.deepcopy(device.identity)
    ident.name = "+".join(p.name for p in parts)
    # A device profile measures one device; how many share a node is the fabric's fact (its log's ranks per host).
    fabric = interconnect if interconnect is not None else inter_node
    if fabric is not None:
        ident.devices_per_node = fabric.identity.devices_per_node
    for p in (interconnect, inter_node):
        for c in (p.identity.citations if p is not None else []):
            if c not in ident.citations:
                ident.citations.append(c)
    base = {f: copy.deepcopy(getattr(device, f)) for f in ("compute", "memory", "overheads", "attention", "elementwise",
                                                            "sampler", "validation", "schema_version", "method_version")}
    out = ComposedProfile(identity=ident, collectives=colls, parts=parts, scope_part=scope_part, **base)
    # The union must still be a valid profile (no duplicate (op, scope, group) keys, ...).
    Profile.from_dict(out.to_dict(), origin=f"composed profile {ident.name}")
    return out


@functools.lru_cache(maxsize=4)
def _shipped(directory: str, stamp: tuple) -> tuple[tuple[str, str, tuple], ...]:
    out = []
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            p = Profile.load(path)
        except (ProfileError, OSError):
            continue
        # (op, scope, group size, smallest and largest message measured (0 when the entry has no fit quality),
        # kernel: "" for the collective library, else an engine's own kernel)
        keys = tuple(sorted({(c.op, c.scope, c.group_size,
                              float(c.quality.range_min) if c.quality is not None else 0.0,
                              float(c.quality.range_max) if c.quality is not None else 0.0, c.kernel or "")
                             for c in p.collectives}))
        out.append((str(path), p.identity.device_name, keys))
    return tuple(out)


def _shipped_in(directory: str | os.PathLike | None = None) -> tuple[tuple[str, str, tuple], ...]:
    """(path, device name, collective keys) of every profile in ``directory`` (default: the shipped interconnect
    profiles), read once per set of file versions (_shipped)."""
    d = Path(directory or SHIPPED_DIR)
    if not d.is_dir():
        return ()
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in d.glob("*.yaml")))
    return _shipped(str(d), stamp)


def _shown_path(path: str) -> str:
    """``path`` relative to the current folder where it lies below it, else as it is (for messages)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def shipped_interconnects(op: str, scope: str, directory: str | os.PathLike | None = None) -> list[str]:
    """Shipped interconnect profiles with ``op`` in ``scope`` (``path (device; group sizes ...)``), for error messages."""
    hits = []
    for path, dev, keys in _shipped_in(directory):
        mine = [(g, lo, hi, k) for o, s, g, lo, hi, k in keys if o == op and s == scope]
        via = ""
        if not mine and op in ANSWERED_BY_ALL_REDUCE:
            # the op is costed from the same scope's all_reduce where it has no entries (Profile.collective_time_s)
            mine = [(g, lo, hi, k) for o, s, g, lo, hi, k in keys if o == "all_reduce" and s == scope and g > 1]
            via = f"{op} not measured, answered by its all_reduce: "
        if mine:
            rel = _shown_path(path)
            library = [m for m in mine if not m[3]]
            own = [m for m in mine if m[3]]
            lo, hi = min(m[1] for m in mine), max(m[2] for m in mine)
            # the message range says whether a decode step's few-KiB all-reduce was measured or extrapolated
            span = f", messages {fmt_bytes(lo)}..{fmt_bytes(hi)}" if hi > 0 else ""
            measured = "all_reduce" if via else op
            # the collective library's group sizes and the engines' own kernels' are told apart: a log of 4 ranks
            # next to published kernel tables for 2 and 8 is not a library measurement at 2 and 8
            parts = [f"group size(s) {sorted({m[0] for m in library})}"] if library else []
            if own:
                parts.append(f"{'' if library else 'group size(s) '}{sorted({m[0] for m in own})} for the engines' "
                             f"own kernels ({', '.join(sorted({m[3] for m in own}))})")
            hits.append(f"{rel} ({dev}; {via}{measured} {scope} measured for {', '.join(parts)}{span})")
    return hits


def shipped_covering(op: str, scope: str, device_name: str, group_size: int, nbytes: float,
                     exclude: str = "") -> list[str]:
    """Shipped interconnect profiles of ``device_name`` whose ``op`` entries at ``group_size`` in ``scope`` were
    measured down to ``nbytes`` or below (relative paths; ``exclude``: a profile name, the one in use): what to pass
    instead when the profile in use extrapolates a small message."""
    return [_shown_path(path) for path, dev, keys in _shipped_in()
            if dev == device_name and Path(path).stem != exclude
            and any(o == op and s == scope and g == group_size and 0 < lo <= nbytes for o, s, g, lo, _, _ in keys)]


def missing_hint(op: str, scope: str) -> str:
    """The sentence a 'collective missing' error ends with: which shipped profile would answer it, and how to pass it."""
    flag = "--interconnect" if scope == SCOPES[0] else "--inter-node-profile"
    hits = shipped_interconnects(op, scope)
    if hits:
        return f"shipped interconnect profiles that answer {op} ({scope}): {'; '.join(hits)} (pass one as {flag})"
    return (f"no shipped interconnect profile has {op} ({scope}); import your own nccl-tests results "
            f"(accelcal import nccl-tests <op>_perf.txt --out IC.yaml) and pass it as {flag}")


def _path_given(value: str) -> str:
    """An option's profile path, refused when empty (an unset shell variable would otherwise read as the option
    left out, or as the current folder)."""
    if not value.strip():
        import argparse

        raise argparse.ArgumentTypeError(f"the path is empty ({value!r}); expected a profile .yaml")
    return value


def add_profile_arguments(parser: Any, device_help: str | None) -> None:
    """``--profile``, ``--interconnect`` and ``--inter-node-profile``: the parts a plan or prediction composes
    (``device_help`` None: the caller takes the device profile otherwise, e.g. as a positional argument)."""
    if device_help is not None:
        parser.add_argument("--profile", required=True, type=_path_given, help=device_help)
    parser.add_argument("--interconnect", default=None, metavar="PROFILE", type=_path_given,
                        help="intra-node interconnect profile (profiles/interconnect/*.yaml, or your own from "
                             "accelcal import nccl-tests): its intra_node collectives replace --profile's, and it "
                             "sets the devices per node")
    parser.add_argument("--inter-node-profile", default=None, metavar="PROFILE", type=_path_given,
                        help="profile whose inter_node collectives link the nodes: an interconnect profile or a "
                             "full profile (default: --profile)")


def doubtful_collectives(profile: Any) -> list[str]:
    """One line per collective entry whose fit a plan or prediction should not take on trust: its log was cut, ran
    into an error or had no rank lines (the import's quality flags), or its bandwidth sits on the fit's upper bound
    (the op then costs next to nothing, whatever its size)."""
    from accelcal.collectives.nccl_tests import DOUBT_NOTES

    from .profile.reader import MAX_BANDWIDTH_BYTES_PER_S

    out = []
    for c in getattr(profile, "collectives", None) or []:
        flags = list(getattr(c.quality, "flags", None) or [])
        doubts = [f for f in flags if any(note in f for note in DOUBT_NOTES)]
        if any(p.bandwidth_bytes_per_s >= MAX_BANDWIDTH_BYTES_PER_S * (1 - 1e-6) for p in c.pieces):
            doubts.append(f"{c.fit_label}: bandwidth at the fit's upper bound ({MAX_BANDWIDTH_BYTES_PER_S:g} B/s): the "
                          f"sizes measured do not show the fabric's bandwidth")
        out += [f"collective fit in doubt (accelcal show lists its flags): {d}" for d in dict.fromkeys(doubts)]
    return out


def wider_node_than_measured(profile: Any, devices_per_node: int | None) -> list[str]:
    """One line when ``devices_per_node`` (--devices-per-node) is wider than the node the profile's intra-node
    collectives were measured on: its groups over the largest measured one are extrapolated from them."""
    fabric = int(profile.identity.devices_per_node)
    measured = sorted({c.group_size for c in getattr(profile, "collectives", None) or [] if c.scope == "intra_node"})
    if devices_per_node is None or devices_per_node <= fabric or not measured:
        return []
    return [f"{devices_per_node} devices per node, but the profile's intra-node collectives come from nodes of "
            f"{fabric} (group sizes {measured} measured): groups over {max(measured)} devices are extrapolated from "
            f"them"]


def fabric_device_mismatch(profile: Any) -> list[str]:
    """One line per composed fabric whose collectives were measured on other devices than the device profile's
    (an H200 profile with an H100 NVSwitch log, say): its TP/PP costs are that hardware's, a stand-in."""
    parts = getattr(profile, "parts", None) or []
    dev = next((p for p in parts if p.role == "device"), None)
    if dev is None or not dev.device_name:
        return []
    out = []
    for p in parts:
        if p.role != "device" and p.entries and p.device_name and not same_device_model(p.device_name, dev.device_name):
            out.append(f"the {p.role} collectives come from {p.name}, measured on {p.device_name}, while the device "
                       f"profile is {dev.name} ({dev.device_name}): its communication costs are that hardware's, a "
                       f"stand-in for this node's")
    return out


def reference_datasheet(path: str, p: Profile, purpose: str, flag: str = "--datasheet") -> tuple[Profile, list[str]]:
    """(the datasheet profile at ``path``, warnings) for reference figures beside device profile ``p``: refused
    unless it is a datasheet prior of a device (a measured profile's figures would pass for a datasheet's);
    ``purpose`` says what its figures do, for the refusal.  Another device's datasheet is allowed (a what-if) with a
    warning."""
    from .priors import device_model_tokens, same_device_model

    ds = Profile.load(path, what=f"{flag} profile")
    require_device_profile(ds, flag, fabric_flags=False)
    if not ds.is_datasheet:
        raise ValueError(f"{flag} {path}: its source is {ds.identity.source!r}, not 'datasheet'; {purpose} "
                         f"(profiles/datasheet/)")
    ds_name = str(ds.identity.device_name)
    warnings = []
    if (str(ds.identity.device_type) != str(p.identity.device_type)
            or device_model_tokens(ds_name) and not same_device_model(ds_name, str(p.identity.device_name))):
        warnings.append(f"{flag} {ds.identity.name} is for {ds.identity.device_name} ({ds.identity.device_type}); the "
                        f"profile measured {p.identity.device_name} ({p.identity.device_type}): its peaks and "
                        f"bandwidths set the reference figures")
    return ds, warnings
