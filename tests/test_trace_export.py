"""The Perfetto/Chrome trace of a plan: Trace Event Format fields, integer-ns clock, strict nesting, tracks."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.planner.cluster import Cluster, DeviceGroup
from accelcal.planner.export import trace_events, write_exports
from accelcal.models import ModelConfig
from accelcal.planner.search import PlanOptions, plan
from accelcal.planner.workload import Workload
from tests.planner_profiles import h100_like


@pytest.fixture(scope="module")
def pp_candidate():
    model = ModelConfig.resolve("llama3-70b")
    result = plan(model, Cluster([DeviceGroup("h100", Profile.from_dict(h100_like()), 1, None, None)]),
                  Workload(1024, 64, 8, None, None, None), PlanOptions())
    c = next(c for c in result.ranked if c.pp == 2 and c.tp > 1)  # a layout with PP stages and TP collectives
    return c, model.layers


def _ns(x: float) -> int:
    # What a truncating viewer reads; the exporter guarantees rounding reads the same.
    assert int(x * 1000) == round(x * 1000), x
    return int(x * 1000)


def test_events_have_the_trace_event_format_fields(pp_candidate):
    c, layers = pp_candidate
    doc = json.loads(json.dumps(trace_events(c, layers)))
    assert doc["traceEvents"]
    for e in doc["traceEvents"]:
        assert {"ph", "pid", "tid", "name"} <= set(e), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int) and isinstance(e["name"], str)
        if e["ph"] == "X":
            assert isinstance(e["ts"], float) and isinstance(e["dur"], float) and e["dur"] >= 0, e
        else:
            assert e["ph"] == "M" and "args" in e


def test_pp_stages_are_processes_with_one_track_per_stream(pp_candidate):
    c, layers = pp_candidate
    ev = trace_events(c, layers)["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert sorted(procs) == [1, 2] and procs[1].startswith("PP stage 0")
    tracks = {(e["pid"], e["args"]["name"]): e["tid"] for e in ev if e["name"] == "thread_name"}
    for pid in (1, 2):
        assert {tracks[(pid, n)] for n in ("layers", "compute stream", "communication stream", "host launches")} \
            == {0, 1, 2, 3}
    x = [e for e in ev if e["ph"] == "X"]
    by_track = defaultdict(set)
    for e in x:
        by_track[e["tid"]].add(e["cat"].split(",")[1])
    assert by_track[1] <= {"compute", "memory"} and "compute" in by_track[1]
    assert by_track[2] == {"communication"}  # TP all-reduces and the PP send
    assert by_track[3] <= {"launch"}
    # A parent slice per layer and per stage, per phase; the stage slices split the layers between processes.
    for phase in ("prefill", "decode"):
        layer_slices = [e for e in x if e["cat"] == f"{phase},layer" and e["name"].startswith("layer ")]
        assert sorted(int(e["name"].split()[1]) for e in layer_slices) == list(range(layers))
        stages = [e for e in x if e["cat"] == f"{phase},stage"]
        assert [e["pid"] for e in stages] == [1, 2] and stages[0]["name"].endswith(f"(layers 0-{layers // 2 - 1})")


def test_slices_nest_strictly_on_every_track(pp_candidate):
    c, layers = pp_candidate
    x = [e for e in json.loads(json.dumps(trace_events(c, layers)))["traceEvents"] if e["ph"] == "X"]
    tracks = defaultdict(list)
    for e in x:
        tracks[(e["pid"], e["tid"])].append((_ns(e["ts"]), _ns(e["ts"]) + _ns(e["dur"]), e["name"]))
    for key, spans in tracks.items():
        stack: list[tuple[int, int, str]] = []
        # Parents first: earlier start, then the longer slice.
        for a, b, name in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]))):
            while stack and stack[-1][1] <= a:
                stack.pop()
            if stack:
                pa, pb, pname = stack[-1]
                assert pa <= a and b <= pb, f"{key}: {name} [{a}, {b}] straddles {pname} [{pa}, {pb}]"
            stack.append((a, b, name))
    # Nodes on the stream tracks lie inside their layer's slice on the layers track of the same process.
    parents = {(e["pid"], e["cat"].split(",")[0], e["name"]): (_ns(e["ts"]), _ns(e["ts"]) + _ns(e["dur"]))
               for e in x if e["tid"] == 0 and e["cat"].endswith(",layer")}
    for e in x:
        if e["tid"] != 0:
            pa, pb = parents[(e["pid"], e["cat"].split(",")[0], e["args"]["layer"])]
            assert pa <= _ns(e["ts"]) and _ns(e["ts"]) + _ns(e["dur"]) <= pb, e


def test_adjacent_slices_abut_and_phases_end_at_the_planned_times(pp_candidate):
    c, layers = pp_candidate
    x = [e for e in trace_events(c, layers)["traceEvents"] if e["ph"] == "X" and e["tid"] != 0]
    spans = sorted((_ns(e["ts"]), _ns(e["ts"]) + _ns(e["dur"])) for e in x)
    # One stream in the cost model: every node starts where the previous one ended, across all tracks.
    assert all(b == a2 for (_, b), (a2, _) in zip(spans, spans[1:]))
    pre_end = max(_ns(e["ts"]) + _ns(e["dur"]) for e in x if e["cat"].startswith("prefill"))
    assert pre_end == pytest.approx(c.prefill.path_s * 1e9, abs=len(x))  # <= 0.5 ns rounding per DAG
    assert pre_end == pytest.approx(c.ttft_s * 1e9, rel=1e-6)


def test_write_exports_writes_a_loadable_trace(pp_candidate, tmp_path):
    c, layers = pp_candidate
    paths = write_exports(c, tmp_path, layers)
    assert tmp_path / "trace.json" in paths
    assert json.loads((tmp_path / "trace.json").read_text())["otherData"]["plan"] == c.label
