"""Export a plan's DAGs (JSON, DOT) and a Chrome/Perfetto trace of one prefill and one decode step.

    from accelcal.planner.export import write_exports
    paths = write_exports(result.best, "out/plan", model=result.model)
    # open out/plan/trace.json in https://ui.perfetto.dev or chrome://tracing
    # render out/plan/dag_decode.dot with `dot -Tsvg`

The trace shows the path of one prompt (prefill) and then one decode step
through every pipeline stage: one process per stage with a ``layers`` track
(stage and layer slices) and one track per stream (compute, communication,
host launches) holding every node as a complete ("X") event with its profile
source in ``args``.  Times sit on an integer-nanosecond grid, so slices nest
strictly.  All files are written atomically.
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


# Tracks (tid) inside each PP stage's process: the structure, then one per stream the cost model times.
_TRACKS: tuple[tuple[int, str], ...] = ((0, "layers"), (1, "compute stream"), (2, "communication stream"),
                                        (3, "host launches"))
_TRACK_OF_CATEGORY = {"compute": 1, "memory": 1, "communication": 2, "launch": 3}
"""Memory-bound kernels run on the compute stream; collectives and PP sends on their own; un-hidden launch
overhead is host time."""


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def _us(ns: int) -> float:
    """Integer nanoseconds as trace microseconds that read back exactly.

    ``ts`` is in microseconds and viewers convert with ``int(ts * 1000)`` (truncating) or by rounding; ``1.001``
    truncates to 1000 ns.  The smallest double >= ns/1000 whose product truncates to ``ns`` reads back as
    ``ns`` both ways, so abutting slices computed from integer ends never overlap by a nanosecond.
    """
    import math

    x = ns / 1000.0
    while int(x * 1000.0) < ns:
        x = math.nextafter(x, math.inf)
    return x


class _Timeline:
    """Complete ("X") events on an integer-nanosecond clock: every ts/dur comes from integer cumulative ends."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.t_ns = 0

    def slice(self, name: str, cat: str, pid: int, tid: int, start_ns: int, end_ns: int, args: dict) -> None:
        self.events.append({"name": name, "cat": cat, "ph": "X", "ts": _us(start_ns), "dur": _us(end_ns - start_ns),
                            "pid": pid, "tid": tid, "args": args})

    def run(self, cd: CostedDAG, pid: int, phase: str, part: str) -> tuple[int, int]:
        """Lay one costed DAG's nodes end to end (the cost model's one stream), then its launch overhead."""
        start = self.t_ns
        cum_s = 0.0
        for n in cd.nodes:
            a, cum_s = self.t_ns, cum_s + n.device_s
            self.t_ns = start + _ns(cum_s)
            self.slice(n.name, f"{phase},{n.category}", pid, _TRACK_OF_CATEGORY[n.category], a, self.t_ns,
                       {"layer": part, "source": n.source, "detail": n.detail, "device_s": n.device_s})
        if cd.launch_s > 0:
            a = self.t_ns
            self.t_ns = start + _ns(cum_s + cd.launch_s)
            self.slice("launch overhead (not hidden)", f"{phase},launch", pid, _TRACK_OF_CATEGORY["launch"], a,
                       self.t_ns, {"layer": part, "source": cd.launch_source, "launch_s": cd.launch_s})
        return start, self.t_ns


def _phase_events(tl: _Timeline, pc: PhaseCost, pp: int, layers: int, phase: str) -> None:
    """One prompt (prefill) or one token (decode) through every stage; stage s is process s + 1."""
    per_stage = layers // pp
    for s in range(pp):
        pid = s + 1
        stage_start = tl.t_ns
        parts: list[tuple[str, CostedDAG]] = [("embed", pc.edges["embed"])] if s == 0 else []
        parts += [(f"layer {s * per_stage + i}", pc.layer) for i in range(per_stage)]
        parts.append(("head", pc.edges["head"]) if s == pp - 1 else (f"send to stage {s + 1}", pc.edges["pp_send"]))
        spans = [(part, *tl.run(cd, pid, phase, part)) for part, cd in parts]
        first, last = s * per_stage, (s + 1) * per_stage - 1
        tl.slice(f"{phase} stage {s} (layers {first}-{last})", f"{phase},stage", pid, 0, stage_start, tl.t_ns,
                 {"stage": s, "layers": per_stage})
        for part, a, b in spans:
            tl.slice(part, f"{phase},layer", pid, 0, a, b, {"stage": s})


def trace_events(c: Candidate, layers: int) -> dict:
    """Chrome/Perfetto trace (Trace Event Format dict) of one prefill then one decode step of ``c``.

    One process per PP stage; in each, a ``layers`` track (a stage slice holding one slice per layer, embed,
    head or PP send) and one track per stream (compute, communication, host launches) holding the nodes.
    Timestamps sit on an integer-nanosecond grid: slices on one track abut without overlapping and every
    child lies inside its parent.
    """
    meta: list[dict] = []
    for s in range(c.pp):
        meta.append({"name": "process_name", "ph": "M", "pid": s + 1, "tid": 0,
                     "args": {"name": f"PP stage {s} (one TP rank of {c.tp})"}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": s + 1, "tid": 0, "args": {"sort_index": s}})
        for tid, track in _TRACKS:
            meta.append({"name": "thread_name", "ph": "M", "pid": s + 1, "tid": tid, "args": {"name": track}})
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": s + 1, "tid": tid, "args": {"sort_index": tid}})
    tl = _Timeline()
    _phase_events(tl, c.prefill, c.pp, layers, "prefill")
    _phase_events(tl, c.decode, c.pp, layers, "decode")
    return {"traceEvents": meta + tl.events, "displayTimeUnit": "ns",
            "otherData": {"plan": c.label, "group": c.group, "ttft_s": c.ttft_s, "tpot_s": c.tpot_s,
                          "clock": "integer nanoseconds; ts/dur in microseconds"}}


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
