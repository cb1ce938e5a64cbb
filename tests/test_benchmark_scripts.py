"""Benchmark scripts' own logic (not their figures): what they read and how they fail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_datasheet_vs_measured_reads_the_last_validation_table(tmp_path):
    mod = _load("datasheet_vs_measured")
    log = tmp_path / "run.log"
    log.write_text(
        "case  measured_ms predicted_ms  rel_err  method  biggest predicted part\n"
        "tiny.decode.b4_kv128.tp1.eager                     1.0000       0.9000   -10.0%  queue  memory 0.1 ms\n"
        "median |rel err| = 10.0%\n"
        "other text\n"
        "llama3-8b.prefill.b8_s2048.tp1.graph              14.9360      15.2420    +2.0%  graph  compute 10.8 ms\n"
        "llama3-8b.decode.b16_kv2048.tp2_dp2.eager          0.2500       0.2414    -3.4%  queue  memory 0.17 ms\n")
    cases = mod.read_cases(log)
    assert [(c.name, t) for c, t in cases] == [("llama3-8b.prefill.b8_s2048.tp1.graph", pytest.approx(14.936e-3)),
                                               ("llama3-8b.decode.b16_kv2048.tp2_dp2.eager", pytest.approx(0.25e-3))]
    pre, dec = cases[0][0], cases[1][0]
    assert (pre.q_len, pre.kv_len, pre.batch, pre.graphs) == (2048, 2048, 8, True)
    assert (dec.q_len, dec.kv_len, dec.tp, dec.dp, dec.graphs) == (1, 2048, 2, 2, False)
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    with pytest.raises(SystemExit, match="no validation table"):
        mod.read_cases(empty)


def test_serving_accuracy_summary_and_model_fallback():
    mod = _load("serving_accuracy")
    line = mod.summary("all", [0.1, -0.3], [0.05, -0.05])
    assert "n=2" in line and "mean   20.0%" in line and "median    5.0%" in line
    assert "n=0" in mod.summary("none", [], [])
    assert mod.resolve_model("tiny").name == "tiny"


def test_aiconfigurator_export_reads_the_estimate_box():
    mod = _load("aiconfigurator_export")
    box = ("============================================================\n"
           "  Backend:          vllm (0.24.0)\n"
           "  TP Size:          1\n"
           "  TTFT:             46.780 ms\n"
           "  TPOT:             4.864 ms\n"
           "  Request Latency:  664.469 ms\n"
           "  tokens/s:         191.13\n")
    assert mod.parse_estimate(box) == {"Backend": "vllm (0.24.0)", "TTFT": "46.780 ms", "TPOT": "4.864 ms",
                                       "Request Latency": "664.469 ms"}
    assert mod.parse_estimate("Error: YAML error at x.yaml: node: missing field `inter_node_bw`") == {}
