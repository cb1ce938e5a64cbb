"""Plan results as a table for people or JSON for programs.

    from accelcal.planner.report import format_table, to_json
    print(format_table(result, top=10))
    json.dump(to_json(result, top=10), fh)

Both are deterministic for the same inputs (no timestamps, sorted keys).
"""

from __future__ import annotations

from collections import Counter

from accelcal.units import count, fmt_time_s

from .search import GroupPlan, PlanResult

__all__ = ["datasheet_note", "datasheet_warnings", "format_table", "to_json"]


def _pct(bd: dict[str, float]) -> str:
    tot = sum(bd.values()) or 1.0
    return "/".join(f"{100 * bd[k] / tot:.0f}" for k in ("compute", "memory", "communication", "launch"))


def datasheet_note(name: str, assume_zero_latency: bool, why: str = "",
                   unless: str = "--assume-zero-latency") -> str:
    """The warning for one datasheet profile: its figures are priors; the latencies it lacks are 0 s (``why`` says
    on whose say, e.g. " (--assume-zero-latency)") or, for collectives, refused (``unless`` names what lifts that)."""
    if assume_zero_latency:
        what = (f"latencies and launch overheads the datasheets do not give are assumed 0 s{why}, so collectives and "
                f"kernel launches look cheaper than they are")
    else:
        what = ("launch overheads and memory latencies the datasheets do not give are assumed 0 s, so kernel launches "
                "look cheaper than they are; collectives without a latency (none given by an interconnect profile) "
                f"are refused (layouts that need them are rejected) unless {unless}")
    return (f"DATASHEET PRIOR, NOT A MEASUREMENT: profile {name} is transcribed from vendor datasheets; {what} "
            f"(measure with `accelcal calibrate` for real numbers)")


def datasheet_warnings(r: PlanResult) -> list[str]:
    """One line per datasheet profile the plan used (:func:`datasheet_note`)."""
    return [datasheet_note(name, r.options.assume_zero_latency, " (--assume-zero-latency)")
            for name in r.datasheet_profiles]


def zero_latency_warning(r: PlanResult) -> str | None:
    """Present whenever --assume-zero-latency is on: every output must say that latencies may be 0 s."""
    if not r.options.assume_zero_latency:
        return None
    return ("ASSUMED ZERO LATENCY (--assume-zero-latency): collectives whose latency the profile does not give are "
            "costed at 0 s; small messages (decode TP all-reduces) look free and wide TP is favoured")


def _group_table(r: PlanResult, gp: GroupPlan, top: int) -> list[str]:
    w = r.workload
    on = gp.group if gp.group == gp.device_name else f"{gp.group} ({gp.device_name})"  # a group named after its device
    out = [f"{r.model.name} on {on}: {count(gp.devices, 'device')}, {gp.devices_per_node} per node; "
           f"prompt {w.prompt_len}, output {w.output_len}, batch {w.batch} per replica; "
           f"{'CUDA graphs' if r.options.cuda_graphs else 'eager launches'}; objective: {gp.objective}"
           + (" (a target is set: most tokens/s per device that meets it)" if r.options.objective == "auto"
              and gp.objective == "throughput" else ""),
           f"{gp.candidates_evaluated} layouts evaluated: {len(gp.ranked)} feasible, {len(gp.rejected)} rejected",
           "TTFT = one request's prompt prefilled alone (batch does not change it); TPOT = one decode step of the "
           "replica's batch",
           ""]
    hdr = f"{'#':>3}  {'plan':<22} {'TTFT':>10} {'TPOT':>10} {'tok/s/dev':>10} {'mem/dev':>9}  {'decode c/m/comm/l %':<20} {'scopes tp,pp':<22} {'targets'}"
    out.append(hdr)
    out.append("-" * len(hdr))
    pareto = {id(c) for c in gp.pareto}
    for i, c in enumerate(gp.ranked[:top], 1):
        mark = "*" if id(c) in pareto else " "
        label = c.label + (f" +{c.idle_devices} idle" if c.idle_devices else "")
        out.append(f"{i:>3}{mark} {label:<22} {fmt_time_s(c.ttft_s):>10} {fmt_time_s(c.tpot_s):>10} {c.tokens_per_s_per_device:>10.4g} "
                   f"{c.memory.total_bytes / 1e9:>6.3g} GB  {_pct(c.decode.breakdown):<20} "
                   f"{c.scopes['tp'][:5] + ',' + c.scopes['pp'][:5]:<22} {'ok' if not c.misses else 'MISS'}")
    out.append("  (* = on the Pareto front of request latency vs tokens/s per device)")
    idle = [c for c in gp.ranked[:top] if c.idle_devices]
    if idle:
        c = idle[0]
        out.append(f"  (+N idle = the layout leaves N of the group's devices unused; its tok/s/dev is over the "
                   f"{c.devices} it uses: {c.label} gives {c.tokens_per_s:.4g} tokens/s in all, "
                   f"{c.tokens_per_s / (c.devices + c.idle_devices):.4g} per device of the group's "
                   f"{c.devices + c.idle_devices})")
    out.append("")
    out.append("Pareto front: " + "; ".join(f"{c.label} (request latency {fmt_time_s(c.request_latency_s)}, "
                                             f"{c.tokens_per_s_per_device:.4g} tok/s/dev)"
                                             for c in gp.pareto))
    best = gp.ranked[0]
    if gp.sp_threshold:
        # The threshold is computed for the recommended plan's TP/PP/DP only; other listed plans (e.g. SP2 ones)
        # have their own layouts, so an "n/a" here must not read as a verdict on them.
        th = gp.sp_threshold
        out.append(f"SP threshold for the recommended layout ({best.label}): "
                   f"{str(th['prompt_len']) + ' tokens' if th.get('prompt_len') else 'n/a'} - {th['detail']}")
    out.append("")
    out.append(f"Recommended: {best.label}  TTFT {fmt_time_s(best.ttft_s)}, TPOT {fmt_time_s(best.tpot_s)}, "
               f"{best.tokens_per_s_per_device:.4g} tokens/s per device, {best.memory.total_bytes / 1e9:.3g} GB per device")
    out.extend(f"  why: {line}" for line in best.why)
    for m in best.misses:
        out.append(f"  misses: {m}")
    out.extend(f"note: {n}" for n in gp.notes)
    counts = Counter(x.constraint for x in gp.rejected)
    if counts:
        out.append("")
        out.append("Rejected: " + ", ".join(f"{n} by {k}" for k, n in sorted(counts.items())))
        shown = set()
        for rej in gp.rejected:
            if rej.constraint in shown:
                continue
            shown.add(rej.constraint)
            out.append(f"  e.g. {rej.label}: {rej.reason}")
    return out


def format_table(r: PlanResult, top: int = 10) -> str:
    zero = zero_latency_warning(r)
    too_long = r.model.context_warning(r.workload.prompt_len, r.workload.output_len)
    lines: list[str] = [f"WARNING: {w}" for w in ([zero] if zero else []) + datasheet_warnings(r)
                        + ([too_long] if too_long else [])]
    if lines:
        lines.append("")
    if r.provenance:
        lines.append("Profiles: " + "; ".join(r.provenance))
        lines.append("")
    for gp in r.groups:
        lines.extend(_group_table(r, gp, top))
        lines.append("")
    if len(r.groups) > 1:
        c = r.combined()
        lines.append(f"DP across device groups: {', '.join(c['groups'])}: {c['tokens_per_s']:.4g} tokens/s on "
                     f"{c['devices']} devices ({c['tokens_per_s_per_device']:.4g} per device), worst TTFT "
                     f"{fmt_time_s(c['ttft_s_worst'])}, worst TPOT {fmt_time_s(c['tpot_s_worst'])}")
    return "\n".join(lines).rstrip() + "\n"


def no_plan_json(model, workload, options, reason: str) -> dict:
    """:func:`to_json`'s document where no layout is feasible (``reason`` why): what was asked and no groups, the
    same keys (feasible / reason as predict's), so a program reads one shape."""
    return {"feasible": False, "reason": reason, **_plan_json(model, workload, options, None)}


def _plan_json(model, workload, options, r: PlanResult | None) -> dict:
    return {"model": model.to_dict(), "workload": workload.to_dict(),
            "options": {k: getattr(options, k) for k in options.__dataclass_fields__}, "groups": [],
            # Always present so programs can test it: [] when every profile used is measured.
            "datasheet_priors": [{"profile": name, "warning": w}
                                 for name, w in zip(r.datasheet_profiles, datasheet_warnings(r))] if r else [],
            "provenance": list(r.provenance) if r else [], "assumed_zero_latency": zero_latency_warning(r) if r else None,
            "context_warning": model.context_warning(workload.prompt_len, workload.output_len) if r else None}


def to_json(r: PlanResult, top: int = 10) -> dict:
    out = {"feasible": True, "reason": "", **_plan_json(r.model, r.workload, r.options, r)}
    for gp in r.groups:
        out["groups"].append({
            "group": gp.group, "device_name": gp.device_name, "devices": gp.devices,
            "devices_per_node": gp.devices_per_node, "objective": gp.objective,
            "candidates_evaluated": gp.candidates_evaluated, "feasible": len(gp.ranked),
            "ranked": [c.summary() for c in gp.ranked[:top]],
            "pareto": [c.summary() for c in gp.pareto],
            "rejected": [x.to_dict() for x in gp.rejected],
            "sp_threshold": gp.sp_threshold, "notes": list(gp.notes)})
    if len(r.groups) > 1:
        out["combined"] = r.combined()
    return out
