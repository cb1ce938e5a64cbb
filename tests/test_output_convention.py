"""One output convention: --format table|json, units on every number, documented exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from accelcal.cli import build_parser, main
from accelcal.exitcodes import EXIT_BAD_INPUT, EXIT_CODES, EXIT_INFEASIBLE, EXIT_OK, EXIT_REGRESSION, EXIT_TARGETS_MISSED
from accelcal.units import fmt, unit_of_key

REPO = Path(__file__).resolve().parents[1]
H200 = str(REPO / "profiles" / "nvidia-h200.yaml")
H100 = str(REPO / "profiles" / "nvidia-h100.yaml")
UNIT_SUFFIXES = ("_s", "_bytes", "_bytes_per_s", "_flop_per_s", "_ratio", "_rel", "_rel_err")


@pytest.mark.parametrize("value, unit, text", [
    (7.755e14, "flop_per_s", "775.5 TFLOP/s"), (4.8e12, "bytes_per_s", "4800 GB/s"), (3.2e-5, "s", "32 us"),
    (1 << 30, "bytes", "1 GiB"), (512 << 20, "bytes", "512 MiB"), (0.717, "ratio", "0.717x"), (2.5e-3, "s", "2.5 ms"),
    (8e-16, "s", "0 s"), (5e8, "bytes_per_s", "500 MB/s"), (None, "s", "not measured")])
def test_one_formatter_scales_to_a_readable_prefix(value, unit, text):
    assert fmt(value, unit) == text


def test_unit_of_key_reads_the_suffix_and_rejects_unknown_units():
    assert unit_of_key("peak_flop_per_s") == "flop_per_s"
    assert unit_of_key("bandwidth_bytes_per_s") == "bytes_per_s"
    assert unit_of_key("latency_s") == "s" and unit_of_key("max_bytes") == "bytes" and unit_of_key("name") is None
    with pytest.raises(ValueError, match="unknown unit 'furlongs'"):
        fmt(1.0, "furlongs")


def test_help_documents_every_exit_code_and_the_format_flag():
    text = build_parser().format_help()
    for code, what in EXIT_CODES.items():
        assert f"  {code}  {what}" in text
    assert "--format table|json" in text
    assert (EXIT_OK, EXIT_BAD_INPUT, EXIT_INFEASIBLE, EXIT_TARGETS_MISSED, EXIT_REGRESSION) == (0, 2, 3, 4, 5)


@pytest.mark.parametrize("command", ["show", "compare", "plan", "validate", "env"])
def test_every_reporting_command_takes_format_table_or_json(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    fmt_action = next(a for a in sub._actions if a.dest == "format")
    assert tuple(fmt_action.choices) == ("table", "json") and fmt_action.default == "table"


def test_compare_table_has_units_on_every_number(capsys):
    assert main(["compare", H100, H200, "--all"]) == EXIT_OK
    rows = [ln for ln in capsys.readouterr().out.splitlines()
            if re.search(r"(FASTER|SLOWER|within noise|context, not judged)", ln) and "%" in ln]
    assert rows
    for ln in rows:
        head = ln.split("  context")[0]  # the note after a context row is prose
        # No bare scientific numbers: every old/new value carries a unit (s, ms, us, GB/s, TFLOP/s, x, GiB).
        assert not re.search(r"\d\.\d+e[+-]\d\d", head), ln
        vals = re.findall(r"(\d[\d.]*) ?(ns|us|ms|s|GB/s|MB/s|TFLOP/s|GFLOP/s|PFLOP/s|x)\b", head)
        assert len(vals) >= 2, ln


def _scaled(tmp_path, factor: float) -> str:
    """The H200 profile with every bandwidth x factor (Profile.with_bandwidth_scale), saved beside the test."""
    from accelcal.calibrate.profile import Profile

    out = tmp_path / f"h200-bw-x{factor:g}.yaml"
    Profile.load(H200).with_bandwidth_scale(factor).save(out)
    return str(out)


def test_compare_json_parses_with_units_in_key_names(capsys):
    assert main(["compare", H100, H200, "--format", "json", "--all"]) == EXIT_OK  # no flag: reported, not failed
    doc = json.loads(capsys.readouterr().out)
    assert doc["changes"]
    for c in doc["changes"]:
        assert f"old_{c['unit']}" in c and f"new_{c['unit']}" in c
        assert c[f"new_{c['unit']}"] / c[f"old_{c['unit']}"] - 1 == pytest.approx(c["rel_change"])
    assert {c["unit"] for c in doc["changes"]} >= {"s", "ratio", "flop_per_s", "bytes_per_s"}


def test_compare_json_counts_no_regression_on_a_faster_profile(capsys, tmp_path):
    assert main(["compare", H200, _scaled(tmp_path, 2.0), "--format", "json", "--all"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["regressions"] == 0 and any(c["rel_change"] < 0 for c in doc["changes"] if c["unit"] == "s")


def test_compare_fail_on_regression_exits_5_only_on_a_slowdown(capsys, tmp_path):
    # The same device with half its bandwidths predicts slower memory-bound times: a regression.
    slow = _scaled(tmp_path, 0.5)
    assert main(["compare", H200, slow, "--fail-on-regression"]) == EXIT_REGRESSION
    assert "slower beyond noise" in capsys.readouterr().err
    assert main(["compare", slow, H200, "--fail-on-regression"]) == EXIT_OK
    assert main(["compare", H200, H200, "--fail-on-regression"]) == EXIT_OK
    assert main(["compare", H200, slow]) == EXIT_OK  # without the flag a slowdown is reported, not failed


def test_plan_exit_codes_infeasible_targets_missed_ok(capsys):
    assert main(["plan", "--profile", H200, "--model", "llama3.1-405b"]) == EXIT_INFEASIBLE
    assert "no feasible plan" in capsys.readouterr().err
    assert main(["plan", "--profile", H200, "--model", "llama3-8b", "--tpot", "1e-6", "--format", "json"]) \
        == EXIT_TARGETS_MISSED
    cap = capsys.readouterr()
    assert json.loads(cap.out)["groups"][0]["ranked"] and "no plan meets the targets" in cap.err
    assert main(["plan", "--profile", H200, "--model", "llama3-8b", "--tpot", "1", "--format", "json"]) == EXIT_OK
    assert main(["plan", "--profile", H200 + ".missing"]) == EXIT_BAD_INPUT


def test_show_json_is_the_profile_schema_plus_flags(capsys):
    assert main(["show", H200, "--format", "json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["profile"]["identity"]["device_name"] == "NVIDIA H200"
    assert doc["profile"]["compute"]["bf16"]["peak_flop_per_s"] > 0
    assert any("target missed" in f for f in doc["flags"])
    # the collectives' bus bandwidth beside the schema's algorithm bandwidth: algbw x 2(n-1)/n for an all_reduce
    nvs = str(Path(H200).parent / "interconnect" / "h100-nvswitch-4of8.yaml")
    assert main(["show", nvs, "--format", "json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    entry = next(c for c in doc["profile"]["collectives"] if c["op"] == "all_reduce" and c["group_size"] == 4
                 and not c.get("kernel"))
    busbw = doc["collective_bus_bandwidth_bytes_per_s"]["collectives[all_reduce,intra_node,4]"]
    assert busbw == pytest.approx([pc["bandwidth_bytes_per_s"] * 1.5 for pc in entry["pieces"]])


def test_env_json_parses(capsys):
    assert main(["env", "--device", "cpu", "--format", "json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["device_type"] == "cpu"


def test_env_json_out_writes_the_json_document_beside_the_table(capsys, tmp_path):
    out = tmp_path / "run" / "environment.json"
    assert main(["env", "--device", "cpu", "--json-out", str(out)]) == EXIT_OK
    table = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["device_type"] == "cpu" and doc["available_devices"] == ["cpu"]
    # one capture: the table shows the same values the file holds
    assert any(ln.split() == ["device_type", "cpu"] for ln in table.splitlines())
    assert any(ln.startswith("host") and ln.split()[-1] == doc["host"] for ln in table.splitlines())
    assert [p.name for p in out.parent.iterdir()] == ["environment.json"]  # no temporary file left


def test_env_table_gives_byte_counts_a_unit(capsys):
    assert main(["env", "--device", "cpu"]) == EXIT_OK
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("device_memory_total_bytes"))
    assert line.rstrip().endswith("GiB)") and "(" in line
