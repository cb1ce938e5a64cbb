"""Export measured numbers into the hardware-description fields inference configurators take.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.export import export_configurator
    d = export_configurator(Profile.load("profiles/h100.yaml"), datasheet=Profile.load("profiles/datasheet/h100-sxm.yaml"))

Established configurators describe a system with a memory bandwidth plus an
empirical scaling factor (achieved / datasheet), a constant memory latency,
per-dtype tensor FLOP/s, intra- and inter-node bandwidth and a point-to-point
latency, usually hand-guessed.  This fills them from measurements; a field the
profile cannot supply is null and listed under ``missing``, never guessed.
"""

from __future__ import annotations

import math
from typing import Any

from .compose import ComposedProfile, collectives_origin
from .profile import Profile, busbw_factor

__all__ = ["export_configurator", "memory_pattern", "FORMATS"]

FORMATS = ("configurator", "aiconfigurator")
"""Export formats ``accelcal export --format`` accepts (aiconfigurator: :mod:`.export_aiconfigurator`)."""


def memory_pattern(p: Profile) -> str | None:
    """The memory pattern whose bandwidth the exports give: read or copy, whichever fit predicts held-out sizes
    better (read on a tie or where neither has a quality record); None when neither was measured."""
    cands = [k for k in ("read", "copy") if k in p.memory]

    def err(k: str) -> float:
        q = p.memory[k].quality
        return q.heldout_median_rel_err if q is not None and q.heldout_median_rel_err is not None else math.inf
    return min(cands, key=lambda k: (err(k), k != "read")) if cands else None


LINK_PROBE_BYTES = 1 << 30
"""The message an inter-node link's bandwidth is read at: large enough that the latency is a rounding error."""


def _best_busbw(p: Profile, scope: str) -> tuple[float | None, str]:
    """One device's link bandwidth in ``scope``, one direction (what configurators' intra_node_bw / inter_node_bw
    hold: aiconfigurator's h100_sxm.yaml gives 450e9 and 50e9, "Byte/s per GPU, single direction").  Inside a node:
    the largest-size bus bandwidth of all_reduce (else any collective) over the biggest measured group, which a
    ring bounds by one link.  Across nodes a collective's bus bandwidth is the whole node's network (and NCCL's
    tree and NVLS algorithms beat a ring: the shipped 2 x 8 H100 log's all_reduce reaches ~470 GB/s over 50 GB/s
    NICs), so the device's share is read from the profile's send_recv over 2 ranks instead (measured, or derived
    from the all_reduce as the planner's PP hand-offs are: Profile._send_recv_from_all_reduce)."""
    # the collective library's entries only: an engine's own kernel (``kernel``) is not the fabric's link rate
    entries = [c for c in p.collectives if c.scope == scope and c.op != "send_recv" and c.group_size > 1
               and c.kernel is None]
    if scope == "inter_node" and (entries or any(c.scope == scope and c.op == "send_recv" for c in p.collectives)):
        est = p.collective_time_s("send_recv", LINK_PROBE_BYTES, 2, scope)
        return LINK_PROBE_BYTES / est.time_s, f"send_recv of {LINK_PROBE_BYTES} B over 2 ranks: {est.detail}"
    if not entries:
        return None, f"no {scope} collective measured"
    ar = [c for c in entries if c.op == "all_reduce"] or entries
    c = max(ar, key=lambda e: e.group_size)
    bw = c.pieces[-1].bandwidth_bytes_per_s * busbw_factor(c.op, c.group_size)
    return bw, f"{c.label} last piece, busbw = algbw x {busbw_factor(c.op, c.group_size):.3g}"


def export_configurator(p: Profile, datasheet: Profile | None = None) -> dict[str, Any]:
    """A plain dict (YAML/JSON-ready) of configurator hardware fields with units in the names and their provenance."""
    missing: list[str] = []
    notes: dict[str, str] = {}
    pattern = memory_pattern(p)
    mem = p.memory[pattern] if pattern else None
    mem_bw = mem.bandwidth_bytes_per_s if mem else None
    if mem is None:
        missing.append("mem_bw_bytes_per_s (no memory read/copy measured)")
    else:
        q = mem.quality
        notes["mem_bw_bytes_per_s"] = f"memory.{pattern}" + (
            f" (the better held-out fit: {q.heldout_median_rel_err:.1%} median error)"
            if q is not None and q.heldout_median_rel_err is not None and {"read", "copy"} <= p.memory.keys()
            else "")
    # mem_bw x scaling factor must equal the measured bandwidth: with a datasheet the bandwidth field is the
    # datasheet peak, without one it is the measured figure and the factor is 1 (never measured x measured/peak).
    measured_bw, scale = mem_bw, None
    if mem_bw is not None:
        ds = (datasheet.memory.get("read") or datasheet.memory.get("copy")) if datasheet is not None else None
        if ds is not None:
            mem_bw, scale = ds.bandwidth_bytes_per_s, measured_bw / ds.bandwidth_bytes_per_s
            notes["mem_bw_bytes_per_s"] = f"datasheet peak ({datasheet.identity.name})"
            notes["mem_bw_empirical_scaling_factor"] = (f"measured {measured_bw:.4g} B/s / datasheet {mem_bw:.4g} B/s; "
                                                        "mem_bw x factor = the measured bandwidth")
        else:
            scale = 1.0
            if p.is_datasheet:  # nothing measured: the format's "measured" field stays empty, never the peak
                measured_bw = None
                missing.append("mem_bw_measured_bytes_per_s (the profile is a datasheet prior: nothing measured)")
                notes["mem_bw_empirical_scaling_factor"] = ("1: the profile is a datasheet prior; mem_bw_bytes_per_s "
                                                            "is its peak, not a measurement")
            else:
                notes["mem_bw_empirical_scaling_factor"] = "1: mem_bw_bytes_per_s is already the measured bandwidth"
    lat = mem.latency_s if mem else None
    if lat is None:
        missing.append("mem_empirical_constant_latency_s")
    intra, intra_note = _best_busbw(p, "intra_node")
    inter, inter_note = _best_busbw(p, "inter_node")
    for name, v, note, scope in (("intra_node_bw_bytes_per_s", intra, intra_note, "intra_node"),
                                 ("inter_node_bw_bytes_per_s", inter, inter_note, "inter_node")):
        if v is None:
            missing.append(f"{name} ({note})")
        else:
            source, part, _ = collectives_origin(p, scope)  # a composed fabric's own source, e.g. a published log
            notes[name] = f"{source} ({part}): {note}"
    p2p = [c for c in p.collectives if c.op in ("send_recv", "send_recv_pingpong") and c.kernel is None]
    p2p_lat = None
    if p2p:
        c = min(p2p, key=lambda e: (e.scope != "intra_node", e.op != "send_recv"))
        p2p_lat = c.pieces[0].latency_s
        if p2p_lat is not None:
            source, part, _ = collectives_origin(p, c.scope)
            notes["p2p_latency_s"] = f"{source} ({part}): {c.label} first piece latency"
    if p2p_lat is None:
        missing.append("p2p_latency_s (no send_recv latency measured)")
    return {
        "format": "configurator-hardware-v1",
        "source_profile": p.identity.name,
        "profile_source": p.identity.source,
        # a composed profile's parts and where each comes from (the node fields are the fabric parts')
        **({"parts": [{"role": x.role, "name": x.name, "source": x.source} for x in p.parts]}
           if isinstance(p, ComposedProfile) else {}),
        "gpu": {
            "name": p.identity.device_name,
            "mem_capacity_bytes": p.identity.memory_capacity_bytes,
            "mem_bw_bytes_per_s": mem_bw,
            "mem_bw_measured_bytes_per_s": measured_bw,
            "mem_bw_empirical_scaling_factor": scale,
            "mem_empirical_constant_latency_s": lat,
            "tc_flop_per_s": {dt: e.peak_flop_per_s for dt, e in p.compute.items()},
            "kernel_launch_overhead_s": p.overheads.eager_launch_s,
        },
        "node": {
            "num_gpus_per_node": p.identity.devices_per_node,
            "intra_node_bw_bytes_per_s": intra,
            "inter_node_bw_bytes_per_s": inter,
            "p2p_latency_s": p2p_lat,
        },
        "provenance": notes,
        "missing": missing,
    }
