"""Export a plan's DAGs (JSON, DOT) and a Chrome/Perfetto trace of one prefill and one decode step.

    from accelcal.planner.export import write_exports
    paths = write_exports(result.best, "out/plan", model=result.model)
    # open out/plan/trace.json in https://ui.perfetto.dev or chrome://tracing
    # render out/plan/dag_decode.dot with `dot -Tsvg`

The trace shows the path of one prompt (prefill) and then one decode step
through every pipeline stage: one process per stage, every layer's nodes as
complete ("X") events with their profile source in ``args``.  All files are
written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from accelcal.atomic import atomic_write_text

from .cost import CostedDAG
from .search import Candidate, PhaseCost

__all__ = ["costed_dag_to_dict", "dag_to_dot", "trace_events", "write_exports"]

_COLOURS = {"compute": "#8fbcd4", "memory": "#f2c57c", "communication": "#e08080", "launch": "#cccccc"}


def costed_dag_to_dict(cd: CostedDAG) -> dict:
    """The layer DAG with each node's cost, category and profile source."""
    d = cd.dag.to_dict()
    costs = {n.name: n for n in cd.nodes}
    for node in d["nodes"]:
        c = costs[node["name"]]
        node.update(device_s=c.device_s, category=c.category, source=c.source, detail=c.detail,
                    extrapolated=c.extrapolated)
    d.update(device_s=cd.device_s, launch_s=cd.launch_s, total_s=cd.total_s, launch_source=cd.launch_source,
             breakdown_s=cd.breakdown)
    return d


def dag_to_dot(cd: CostedDAG, title: str = "") -> str:
    """Graphviz DOT of one costed layer DAG (node colour = category)."""
    lines = [f'digraph "{title or cd.dag.phase}" {{', "  rankdir=TB;", '  node [shape=box, style=filled, fontname="Helvetica"];',
             f'  label="{title} {cd.dag.phase} layer: {cd.total_s * 1e6:.4g} us"; labelloc=t;']
    for n in cd.nodes:
        lines.append(f'  "{n.name}" [label="{n.name}\\n{n.device_s * 1e6:.4g} us\\n{n.source}", '
                     f'fillcolor="{_COLOURS[n.category]}"];')
    for a, b in cd.dag.edges:
        lines.append(f'  "{a}" -> "{b}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _phase_events(pc: PhaseCost, pp: int, layers: int, t0_us: float, label: str) -> tuple[list[dict], float]:
    events: list[dict] = []
    t = t0_us
    per_stage = layers // pp

    def emit(cd: CostedDAG, stage: int, prefix: str) -> None:
        nonlocal t
        for n in cd.nodes:
            dur = n.device_s * 1e6
            events.append({"name": n.name, "cat": f"{label},{n.category}", "ph": "X", "ts": round(t, 3),
                           "dur": round(dur, 3), "pid": stage, "tid": 0,
                           "args": {"layer": prefix, "source": n.source, "detail": n.detail}})
            t += dur
        if cd.launch_s > 0:
            events.append({"name": "launch overhead", "cat": f"{label},launch", "ph": "X", "ts": round(t, 3),
                           "dur": round(cd.launch_s * 1e6, 3), "pid": stage, "tid": 0,
                           "args": {"layer": prefix, "source": cd.launch_source}})
            t += cd.launch_s * 1e6

    for s in range(pp):
        if s == 0:
            emit(pc.edges["embed"], s, "embed")
        for i in range(per_stage):
            emit(pc.layer, s, f"{label} layer {s * per_stage + i}")
        if s == pp - 1:
            emit(pc.edges["head"], s, "head")
        else:
            emit(pc.edges["pp_send"], s, f"stage {s} -> {s + 1}")
    return events, t


def trace_events(c: Candidate, layers: int) -> dict:
    """Chrome trace JSON (dict) of one prefill then one decode step of ``c``."""
    meta = [{"name": "process_name", "ph": "M", "pid": s, "tid": 0, "args": {"name": f"PP stage {s} (one TP rank)"}}
            for s in range(c.pp)]
    pre, t = _phase_events(c.prefill, c.pp, layers, 0.0, "prefill")
    dec, _ = _phase_events(c.decode, c.pp, layers, t, "decode")
    return {"traceEvents": meta + pre + dec, "displayTimeUnit": "ms",
            "otherData": {"plan": c.label, "group": c.group, "ttft_s": c.ttft_s, "tpot_s": c.tpot_s}}


def write_exports(c: Candidate, out_dir: str | Path, layers: int) -> list[Path]:
    """DAG JSON + DOT per phase and the trace, under ``out_dir``; returns the paths."""
    out = Path(out_dir)
    paths = []
    for phase, pc in (("prefill", c.prefill), ("decode", c.decode)):
        d = costed_dag_to_dict(pc.layer)
        d["edges_of_stage"] = {k: costed_dag_to_dict(v) for k, v in pc.edges.items()}
        d["plan"] = c.label
        paths.append(atomic_write_text(out / f"dag_{phase}.json", json.dumps(d, indent=1, sort_keys=True) + "\n"))
        paths.append(atomic_write_text(out / f"dag_{phase}.dot", dag_to_dot(pc.layer, c.label)))
    paths.append(atomic_write_text(out / "trace.json", json.dumps(trace_events(c, layers)) + "\n"))
    return paths
