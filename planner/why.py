""""Why" lines: each recommendation's dominant cost terms, measured values, and the guideline they bear out.

    from accelcal.planner.why import explain
    explain(group_plan, top=5)          # fills Candidate.why for the listed plans
    print("\\n".join(group_plan.ranked[0].why))

Nothing here decides a plan: the search already ranked them by cost.  These
lines compare the chosen plan with the best plan that differs in one degree
(TP, PP, EP, SP) and quote the profile numbers behind the difference, then
name the deployment guideline (GUIDELINES below) that the numbers reproduce.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from accelcal.calibrate.profile import MissingMeasurement
from accelcal.units import fmt_time_s

if TYPE_CHECKING:  # search imports this module to fill Candidate.why; no import back at run time
    from .search import Candidate, GroupPlan

__all__ = ["explain", "GUIDELINES"]

GUIDELINES = {
    "tp": "TP favours tightly coupled, low-latency accelerators; prefer TP within a single node",
    "tp_decode": "decode is latency-critical: avoid excessive cross-device communication",
    "pp": "use PP to scale model size, not to reduce single-token latency",
    "sp": "apply SP only when the sequence is long enough to amortise its communication",
    "ep": "co-locate experts and minimise cross-node routing",
    "dp": "use DP to scale throughput across nodes and accelerator types",
    "flops": "peak FLOPs do not translate directly into inference speed",
}


def _best(gp: GroupPlan, pred: Callable[[Candidate], bool]) -> Candidate | None:
    return next((c for c in gp.ranked if pred(c)), None)


def _comm_nodes(c: Candidate, prefix: str, phase: str = "decode"):
    """Communication nodes of one layer: ``ep_``/``sp_`` by prefix; ``tp_`` = every other collective."""
    layer = (c.decode if phase == "decode" else c.prefill).layer
    comm = [n for n in layer.nodes if n.category == "communication"]
    if prefix == "tp_":
        return [n for n in comm if not n.name.startswith(("ep_", "sp_"))]
    return [n for n in comm if n.name.startswith(prefix)]


def _lines(gp: GroupPlan, c: Candidate) -> list[str]:
    out: list[str] = []
    layers = gp.context.model.layers if gp.context is not None else 0
    bd = c.decode.breakdown
    tot = sum(bd.values()) or 1.0
    shares = sorted(((v / tot, k) for k, v in bd.items()), reverse=True)
    top_nodes = sorted(c.decode.layer.nodes, key=lambda n: (-n.device_s, n.name))[:2]
    out.append(
        f"decode: TPOT {fmt_time_s(c.tpot_s)} = " + ", ".join(f"{100 * f:.0f}% {k}" for f, k in shares if f >= 0.005)
        # each term's bound beside the profile entry that costed it: a GEMM entry (compute.bf16) answers memory-bound
        # decode GEMMs too, which read as compute next to "compute is only 0%"
        + "; largest per-layer terms: " + ", ".join(
            f"{n.name} {fmt_time_s(n.device_s)} ({n.category}{'-bound' if n.category in ('compute', 'memory') else ''}, "
            f"from {n.source})" for n in top_nodes)
        + (f" [{GUIDELINES['flops']}: compute is only {100 * bd['compute'] / tot:.0f}% of decode]"
           if bd["compute"] / tot < 0.5 else ""))
    # TP
    if c.tp > 1:
        alt = _best(gp, lambda o: o.tp == 1)
        ar = _comm_nodes(c, "tp_")
        ar_s = sum(n.device_s for n in ar)
        src = ar[0].source if ar else "-"
        if alt:
            out.append(f"TP{c.tp} ({c.scopes['tp']}): TPOT {fmt_time_s(c.tpot_s)} vs {fmt_time_s(alt.tpot_s)} for the best TP1 plan "
                       f"({alt.label}); TP collectives cost {fmt_time_s(ar_s)} per layer ({src}) against weight reads split "
                       f"{c.tp} ways [{GUIDELINES['tp']}]")
        else:
            out.append(f"TP{c.tp}: no TP1 plan fits or divides; TP collectives cost {fmt_time_s(ar_s)} per layer ({src})")
        if c.scopes["tp"] == "intra_node" and ar and gp.context is not None:
            n0 = ar[0]
            try:
                inter = gp.context.coster.collective(n0.params["op"], n0.params["nbytes"], n0.params["group_size"],
                                                       "inter_node")
                out.append(f"TP kept inside a node: {n0.params['op']} of {n0.params['nbytes']:.0f} B over {c.tp} "
                           f"devices costs {fmt_time_s(n0.device_s)} intra-node vs {fmt_time_s(inter.time_s)} across nodes "
                           f"({inter.source}) [{GUIDELINES['tp']}]")
            except MissingMeasurement:
                pass
    else:
        alt = _best(gp, lambda o: o.tp > 1)
        if alt:
            ar = _comm_nodes(alt, "tp_")
            out.append(f"TP1: the best TP>1 plan ({alt.label}) has TPOT {fmt_time_s(alt.tpot_s)} vs {fmt_time_s(c.tpot_s)}; its TP "
                       f"collectives cost {fmt_time_s(sum(n.device_s for n in ar))} per layer "
                       f"({ar[0].source if ar else '-'}) x {layers} layers [{GUIDELINES['tp_decode']}]")
    # PP
    if c.pp > 1:
        smaller = [r for r in gp.rejected if r.constraint == "memory" and r.tp * r.pp < c.tp * c.pp and r.sp == 1]
        p2p = c.decode.edges.get("pp_send")
        line = (f"PP{c.pp} ({c.scopes['pp']}): stage hand-off {fmt_time_s(p2p.total_s) if p2p else '-'} "
                f"({p2p.nodes[0].source if p2p else '-'}) per boundary")
        fewer = _best(gp, lambda o: o.tp == c.tp and o.ep == c.ep and o.pp < c.pp)
        if fewer is None and smaller:
            same_tp = [r for r in smaller if r.tp == c.tp]
            r = max(same_tp or smaller, key=lambda r: (r.tp * r.pp, -r.excess))
            line += f"; needed for memory: {r.label} {r.reason}"
        elif fewer is not None:
            w = gp.context.workload
            m = min(w.batch, c.pp)
            line += (f"; not needed for memory ({fewer.label} fits), chosen on cost: request latency "
                     f"{fmt_time_s(c.request_latency_s)} vs {fmt_time_s(fewer.request_latency_s)}, because decode runs {m} "
                     f"micro-batches of {-(-w.batch // m)} sequences (layer {fmt_time_s(c.decode.layer.total_s)} vs "
                     f"{fmt_time_s(fewer.decode.layer.total_s)}), at {c.tokens_per_s_per_device:.4g} vs "
                     f"{fewer.tokens_per_s_per_device:.4g} tokens/s per device")
        out.append(line + f" [{GUIDELINES['pp']}]")
    else:
        alt = _best(gp, lambda o: o.pp > 1 and o.tp == c.tp and o.ep == c.ep)
        if alt:
            # the figures side by side, each with its direction: a PP layout can win on TPOT and still rank below
            out.append(f"PP1 over {alt.label}, which spreads the layers: TPOT {fmt_time_s(c.tpot_s)} vs "
                       f"{fmt_time_s(alt.tpot_s)}, TTFT {fmt_time_s(c.ttft_s)} vs {fmt_time_s(alt.ttft_s)}, request "
                       f"latency {fmt_time_s(c.request_latency_s)} vs {fmt_time_s(alt.request_latency_s)}, "
                       f"{c.tokens_per_s_per_device:.4g} vs {alt.tokens_per_s_per_device:.4g} tokens/s per device "
                       f"[{GUIDELINES['pp']}]")
    # EP
    if gp.context is not None and gp.context.model.is_moe:
        if c.ep > 1:
            a2a = _comm_nodes(c, "ep_")
            a2a_s = sum(n.device_s for n in a2a)
            line = (f"EP{c.ep} ({c.scopes['ep']}): dispatch + combine all-to-all {fmt_time_s(a2a_s)} per layer "
                    f"({a2a[0].source if a2a else '-'})")
            if a2a and c.scopes["ep"] == "intra_node":
                n0 = a2a[0]
                try:
                    inter = gp.context.coster.collective("all_to_all", n0.params["nbytes"], c.ep, "inter_node")
                    line += f"; across nodes the same all-to-all would take {fmt_time_s(2 * inter.time_s)} ({inter.source})"
                except MissingMeasurement:
                    pass
            out.append(line + f" [{GUIDELINES['ep']}]")
        else:
            alt = _best(gp, lambda o: o.ep > 1)
            if alt:
                out.append(f"EP1 (experts TP-split): the best EP plan ({alt.label}, EP group {alt.scopes['ep']}) has "
                           f"request latency {fmt_time_s(alt.request_latency_s)} vs {fmt_time_s(c.request_latency_s)} "
                           f"[{GUIDELINES['ep']}]")
    # SP
    th = gp.sp_threshold or {}
    if c.sp > 1:
        alt = _best(gp, lambda o: o.sp == 1 and (o.tp, o.pp, o.ep) == (c.tp, c.pp, c.ep))
        out.append(f"SP{c.sp} ({c.scopes['sp']}): TTFT {fmt_time_s(c.ttft_s)}"
                   + (f" vs {fmt_time_s(alt.ttft_s)} without SP" if alt else "")
                   + (f"; prompt {gp.context.workload.prompt_len} >= computed threshold {th['prompt_len']}"
                      if th.get("prompt_len") else "") + f" [{GUIDELINES['sp']}]")
    elif th.get("prompt_len") and gp.context is not None:
        pl = gp.context.workload.prompt_len
        rel = "below" if pl < th["prompt_len"] else "at or above"
        out.append(f"no SP: prompt {pl} is {rel} the computed SP{th['sp']} threshold {th['prompt_len']} tokens"
                   + ("" if pl < th["prompt_len"] else " but SP costs throughput under this objective")
                   + f" [{GUIDELINES['sp']}]")
    # DP
    if c.dp > 1:
        out.append(f"DP{c.dp}: {c.dp} independent replicas, no inference-time communication between them; "
                   f"{c.tokens_per_s:.4g} tokens/s in total ({c.tokens_per_s_per_device:.4g} per device) "
                   f"[{GUIDELINES['dp']}]")
    out.append(f"memory per device: {c.memory.describe()} of {c.memory_limit_bytes / 1e9:.4g} GB allowed")
    if c.extrapolated:
        out.append(f"extrapolated profile answers ({len(c.extrapolated)}, the largest share of TTFT or TPOT first): "
                   f"{c.extrapolated[0]}" + (" ..." if len(c.extrapolated) > 1 else ""))
    return out


def explain(gp: GroupPlan, top: int = 5) -> None:
    """Fill ``why`` for the top ``top`` plans and the Pareto front."""
    seen = set()
    for c in list(gp.ranked[:top]) + list(gp.pareto):
        if id(c) in seen:
            continue
        seen.add(id(c))
        c.why = _lines(gp, c)
