"""A human summary of a profile, with units and fit quality.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.show import format_profile
    print(format_profile(Profile.load("profiles/datasheet/h100-sxm.yaml")))
"""

from __future__ import annotations

from accelcal.units import fmt
from accelcal.vocab import PREFILL_KINDS, SAMPLER_BYTES_PER_LOGIT, busbw_factor, gemm_element_bytes

from .compose import SMOKE_NOTE, smoke_sweep
from .profile import Profile, Quality

__all__ = ["format_profile", "profile_to_json", "roof_label"]


def _si(v: float | None, unit: str) -> str:
    return fmt(v, {"B": "bytes", "B/s": "bytes_per_s", "FLOP/s": "flop_per_s"}[unit], digits=3)


def _time(v: float | None) -> str:
    return fmt(v, "s", digits=3)


def roof_label(p: Profile) -> str:
    """What a GEMM entry's peak is called in show and the plots: a datasheet prior's is the vendor's peak, not a
    fit to anything measured."""
    return "datasheet peak" if p.is_datasheet else "fitted roof"


def _q(q: Quality | None, unit: str = "B") -> str:
    """A fit's quality; ``unit``: what its measured range counts (``B`` for memory and collectives, ``FLOP`` for
    GEMM and attention: Quality.range_min)."""
    if q is None:
        return "(no fit quality: datasheet figure)"
    s = (f"[{q.points} pts, fit median {q.median_rel_err:.1%} max {q.max_rel_err:.1%}, held-out median "
         f"{q.heldout_median_rel_err:.1%} p90 {q.heldout_p90_rel_err:.1%}, range {q.range_min:.3g}..{q.range_max:.3g} "
         f"{unit}]")
    return s + (" FLAGGED" if q.flags else "")


def format_profile(p: Profile) -> str:
    i = p.identity
    out = [f"profile {i.name}  (schema {p.schema_version}, method {p.method_version}, source: {i.source.upper()})",
           f"  device      {i.device_name} ({i.device_type}), {i.devices_per_node} per node x {i.nodes} node(s), "
           + (f"{_si(i.memory_capacity_bytes, 'B')} each" if i.memory_capacity_bytes else "memory not recorded")
           + (f"; a CPU device = one rank's share of the cores: {i.threads_per_device} thread(s), "
              f"1/{i.devices_per_node} of the RAM" if i.threads_per_device else ""),
           # A datasheet prior was typed in from documents, not run on a host: "measured ... on -" would mislead.
           (f"  datasheet   transcribed from datasheets {i.date or '-'} ({i.command or '-'}); not measured" if p.is_datasheet
            else f"  {'imported' if p.is_interconnect else 'measured':<12}{i.date or '(no date recorded)'} on "
            f"{i.host or '-'}: {i.command or '-'}")]
    if smoke_sweep(p):
        out.append(f"  WARNING     {SMOKE_NOTE}")
    if i.versions:
        out.append("  versions    " + ", ".join(f"{k} {v}" for k, v in i.versions.items()))
    for c in i.citations:
        out.append(f"  cites       {c}")
    if i.raw_data:
        out.append("  raw data    " + ", ".join(i.raw_data))
    if p.is_interconnect:
        out.append("interconnect profile: collectives only (no compute, memory or launch figures); it joins a device "
                   "profile as --interconnect / --inter-node-profile")
    else:
        out.append("compute (GEMM)")
    for dt, e in p.compute.items():
        # The fitted roof is a model parameter (wave-quantised FLOPs over it, corrected per shape by the
        # measured efficiency), not a rate any call reached: show the best measured rate beside it.
        best = max((2 * m * n * k / t for m, n, k, t in e.points if t > 0), default=None)
        seen = f"best measured {_si(best, 'FLOP/s')}, " if best else ""
        out.append(f"  {dt:<9} {seen}{roof_label(p)} {_si(e.peak_flop_per_s, 'FLOP/s')}, operand bandwidth {_si(e.memory_bandwidth_bytes_per_s, 'B/s')}, "
                   f"overhead {_time(e.overhead_s)}{', wave units ' + str(e.wave_units) if e.wave_units else ''} {_q(e.quality, 'FLOP')}")
    for dt, e in p.compute.items():
        if e.grouped_points:
            out.append(f"  {dt:<9} grouped expert GEMMs: {len(e.grouped_points)} cases, measured / stacked-GEMM "
                       f"estimate " + ", ".join(f"x{r:.3g} at m={m:g}"
                                                for m, r in e.grouped_ratio_table(*gemm_element_bytes(dt))))
    if not p.is_interconnect:
        out.append("memory (time = latency + bytes moved / bandwidth)")
        for pat, e in p.memory.items():
            out.append(f"  {pat:<9} {_memory_line(e)}")
        o = p.overheads
        out.append(f"overheads   eager launch {_time(o.eager_launch_s)}, launch+sync {_time(o.launch_sync_s)}, "
                   f"sync {_time(o.sync_s)}, graph kernel {_time(o.graph_kernel_s)}"
                   + (f", eager dispatch per op of a layer's mix {_time(o.eager_dispatch_s)}"
                      if o.eager_dispatch_s is not None else ""))
    if p.attention:
        out.append("attention (time = latency + max(FLOP/rate, bytes/rate))")
        for dt, phases in p.attention.items():
            for ph, e in phases.items():
                # prefill reuses every K/V byte q_len times: its byte term is held clear of binding, not measured
                held = " (a floor kept from binding, not a measured rate)" if ph in PREFILL_KINDS else ""
                out.append(f"  {dt} {ph:<8} {_si(e.flop_per_s, 'FLOP/s')}, {_si(e.bytes_per_s, 'B/s')}{held}, "
                           f"latency {_time(e.latency_s)} {_q(e.quality, 'FLOP')}")
    if p.elementwise:
        out.append("eager elementwise groups (time = latency + traffic-model bytes / bandwidth)")
        for dt, groups in p.elementwise.items():
            for g, e in groups.items():
                out.append(f"  {dt} {g:<12} {_memory_line(e)}")
    if p.sampler:
        out.append("sampler over a step's logits (time = latency + logits x bytes per logit / bandwidth)")
        for kind, e in p.sampler.items():
            out.append(f"  {kind:<17} {SAMPLER_BYTES_PER_LOGIT[kind]:g} B/logit, {_memory_line(e)}")
    if p.collectives:
        out.append("collectives (time = latency + S / algbw per size range; busbw = algbw x nccl-tests factor)")
        for c in p.collectives:
            f = busbw_factor(c.op, c.group_size)
            pieces = "; ".join(
                f"<= {_si(pc.max_bytes, 'B') if pc.max_bytes is not None else 'inf'}: {_time(pc.latency_s)} + S / "
                f"{_si(pc.bandwidth_bytes_per_s, 'B/s')} (busbw {_si(pc.bandwidth_bytes_per_s * f, 'B/s')})"
                for pc in c.pieces)
            out.append(f"  {c.op} {c.scope} n={c.group_size} {c.dtype}{' kernel ' + c.kernel if c.kernel else ''}: {pieces} {_q(c.quality)}")
    qualities = _qualities(p)
    flags = [f for q in qualities for f in q.flags]
    if flags:
        out.append(f"flags ({len(flags)} on {sum(bool(q.flags) for q in qualities)} of {len(qualities)} fits)")
        out += [f"  ! {f}" for f in flags]
    if p.validation is not None:
        v = p.validation
        out.append(f"validation  {v.date} on {v.device}: median |rel err| {v.median_abs_rel_err:.1%}, "
                   f"max {v.max_abs_rel_err:.1%} over {len(v.cases)} cases"
                   + (f" ({v.command})" if v.command else ""))
    return "\n".join(out)


def profile_to_json(p: Profile) -> dict:
    """The profile as its YAML schema (units in every key) plus the fit flags ``show`` lists, and each collective
    piece's bus bandwidth (the schema holds the algorithm bandwidth; busbw = algbw x the nccl-tests factor, as the
    table prints it), by entry label, piece by piece."""
    busbw = {c.label: [pc.bandwidth_bytes_per_s * busbw_factor(c.op, c.group_size) for pc in c.pieces]
             for c in p.collectives}
    return {"profile": p.to_dict(), "flags": [f for q in _qualities(p) for f in q.flags],
            "collective_bus_bandwidth_bytes_per_s": busbw}


def _memory_line(e) -> str:
    """One memory-like entry (a copy pattern, an elementwise group): its pieces or its single line, and quality."""
    if e.pieces and len(e.pieces) > 1:
        pieces = "; ".join(f"<= {_si(pc.max_bytes, 'B') if pc.max_bytes is not None else 'inf'}: "
                           f"{_time(pc.latency_s)} + bytes / {_si(pc.bandwidth_bytes_per_s, 'B/s')}" for pc in e.pieces)
        return f"{pieces} {_q(e.quality)}"
    return f"{_si(e.bandwidth_bytes_per_s, 'B/s')}, latency {_time(e.latency_s)} {_q(e.quality)}"


def fitted_quantities(p: Profile) -> list[tuple[str, Quality | None]]:
    """(label, fit quality) of every fitted quantity of ``p``, in one order (None: a datasheet figure, no fit):
    what show, calibrate and report count and list."""
    out: list[tuple[str, Quality | None]] = [(f"GEMM {dt}", e.quality) for dt, e in p.compute.items()]
    out += [(f"memory {pat}", e.quality) for pat, e in p.memory.items()]
    out += [(f"attention {dt} {ph}", e.quality) for dt, phs in p.attention.items() for ph, e in phs.items()]
    out += [(f"elementwise {dt} {g}", e.quality) for dt, gs in p.elementwise.items() for g, e in gs.items()]
    out += [(f"sampler {k}", e.quality) for k, e in p.sampler.items()]
    out += [(c.label, c.quality) for c in p.collectives]
    return out


def _qualities(p: Profile) -> list[Quality]:
    return [q for _, q in fitted_quantities(p) if q is not None]
