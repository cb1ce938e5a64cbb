"""Datasheet prior vs measured profile: which one predicts the real layers?

    python benchmarks/datasheet_vs_measured.py \\
        --log benchmarks/results/nvidia-h200/gpu_check.log \\
        --measured profiles/nvidia-h200.yaml --datasheet profiles/datasheet/h200-sxm.yaml

Reads the measured layer times that ``accelcal validate`` printed into a log
(its fixed-width table: ``case  measured_ms  predicted_ms ...``; the last table
in the log is used), re-predicts every case now from both profiles with the
planner (``torch-eager`` layers, graph replay where the case says so) and
prints the error of each against the measurement.  The measurements are the
log's; the predictions are computed in this run.  Needs no torch and no GPU.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

ROW = re.compile(r"^(?P<name>[\w.-]+\.(?:prefill|decode)\.b\d+_(?:s|kv)\d+\.tp\d+(?:_dp\d+)?\.(?:eager|graph))\s+"
                 r"(?P<measured>[\d.]+)\s+(?P<predicted>[\d.]+)\s+[+-][\d.]+%")
NAME = re.compile(r"^(?P<model>.+)\.(?P<phase>prefill|decode)\.b(?P<batch>\d+)_(?P<kind>s|kv)(?P<len>\d+)"
                  r"\.tp(?P<tp>\d+)(?:_dp(?P<dp>\d+))?\.(?P<mode>eager|graph)$")


def read_cases(log: Path) -> list[tuple[object, float]]:
    """(Case, measured seconds) from the last validation table in ``log``."""
    from accelcal.validate.configs import Case

    tables: list[list[tuple[object, float]]] = []
    current: list[tuple[object, float]] = []
    for line in log.read_text().splitlines():
        m = ROW.match(line)
        if not m:
            if current:
                tables.append(current)
                current = []
            continue
        n = NAME.match(m["name"])
        if n is None:
            raise ValueError(f"{log}: cannot read the case name {m['name']!r}")
        length = int(n["len"])
        case = Case(model=n["model"], phase=n["phase"], batch=int(n["batch"]),
                    q_len=length if n["phase"] == "prefill" else 1, kv_len=length, tp=int(n["tp"]),
                    dp=int(n["dp"] or 1), graphs=n["mode"] == "graph")
        current.append((case, float(m["measured"]) / 1e3))
    if current:
        tables.append(current)
    if not tables:
        raise SystemExit(f"{log}: no validation table (lines 'case measured_ms predicted_ms rel_err ...') found")
    return tables[-1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", required=True, help="a log holding `accelcal validate` output (e.g. gpu_check.log)")
    ap.add_argument("--measured", required=True, help="the profile measured on that device")
    ap.add_argument("--datasheet", required=True, help="the datasheet prior for that device")
    ap.add_argument("--dtype", default="bf16", help="dtype the layers ran in (default: bf16)")
    args = ap.parse_args(argv)

    from accelcal.calibrate.profile import Profile
    from accelcal.models import ModelConfig
    from accelcal.validate.compare import predict_case, prediction_model

    cases = read_cases(Path(args.log))
    profiles = {"measured": Profile.load(args.measured), "datasheet": Profile.load(args.datasheet)}
    print(f"measurements: {args.log} ({len(cases)} cases, the last validation table in it)")
    for label, p in profiles.items():
        print(f"{label:<9}: {p.identity.name} ({p.identity.source}, {p.identity.device_name})")
    head = f"{'case':<44} {'measured_ms':>11} {'measured-profile':>17} {'datasheet':>11}"
    print()
    print(head)
    print("-" * len(head))
    errs: dict[str, list[float]] = {k: [] for k in profiles}
    graph: dict[str, list[float]] = {k: [] for k in profiles}
    for case, t in cases:
        model = prediction_model(ModelConfig.resolve(case.model), args.dtype)
        cells = []
        for label, p in profiles.items():
            pred = predict_case(p, model, case).total_s
            e = pred / t - 1.0
            errs[label].append(abs(e))
            if case.graphs:
                graph[label].append(abs(e))
            cells.append(f"{pred * 1e3:.4f} {e:+.0%}")
        print(f"{case.name:<44} {t * 1e3:>11.4f} {cells[0]:>17} {cells[1]:>11}")
    print()
    for label in profiles:
        line = f"{label:<9}: median |rel err| {statistics.median(errs[label]):.1%}, max {max(errs[label]):.1%} over {len(cases)}"
        if graph[label]:
            line += f"; graph-mode cases {statistics.median(graph[label]):.1%} median over {len(graph[label])}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
