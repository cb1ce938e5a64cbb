"""accelcal plan end to end, exports, and the no-torch rule."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.planner import cli as plan_cli

from planner_profiles import h100_like

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="accelcal")
    sub = parser.add_subparsers(dest="command")
    plan_cli.register(sub, None)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prof") / "h100-like.yaml"
    Profile.from_dict(h100_like()).save(path)
    return path


def test_plan_table_defaults(profile_path, capsys):
    assert _run(["plan", "--profile", str(profile_path), "--model", "llama3-70b"]) == 0
    out = capsys.readouterr().out
    assert "Recommended: TP8 PP1 DP1" in out and "why:" in out and "Pareto front:" in out
    assert "8 devices, 8 per node" in out  # devices per node from the profile
    assert "64 attention heads and 64 % 3 = 1" in out or "layers(80) % pp(3) = 2" in out


def test_datasheet_profile_is_flagged_in_table_and_json(capsys):
    h100 = Path(__file__).parent.parent / "profiles" / "datasheet" / "h100-sxm.yaml"
    # Without --assume-zero-latency the datasheet's latency-less collectives are refused: single-device layouts only.
    assert _run(["plan", "--profile", str(h100), "--model", "llama3-8b"]) == 0
    out = capsys.readouterr().out
    assert "Recommended: TP1 PP1 DP8" in out and "refused" in out.splitlines()[0]
    assert _run(["plan", "--profile", str(h100), "--model", "llama3-8b", "--assume-zero-latency"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # The banners come first, before any number, and name the profile and the 0-latency assumption.
    assert lines[0].startswith("WARNING: ASSUMED ZERO LATENCY"), lines[0]
    assert lines[1].startswith("WARNING: DATASHEET PRIOR, NOT A MEASUREMENT: profile h100-sxm"), lines[1]
    assert "assumed 0 s" in lines[1] and "collectives and kernel launches look cheaper" in lines[1]
    # TP8 DP1 is recommended while SP2 plans are listed: the SP line says whose layout it describes.
    assert any("SP2" in l for l in lines if l[:3].strip().isdigit())
    sp = [l for l in lines if l.startswith("SP threshold")]
    assert sp == ["SP threshold for the recommended layout (TP8 PP1 DP1): n/a - DP=1: this layout has no second "
                  "replica to split a prompt across, so SP does not apply to it"], sp
    assert _run(["plan", "--profile", str(h100), "--model", "llama3-8b", "--format", "json", "--assume-zero-latency"]) == 0
    pri = json.loads(capsys.readouterr().out)["datasheet_priors"]
    assert [p["profile"] for p in pri] == ["h100-sxm"] and "NOT A MEASUREMENT" in pri[0]["warning"]


def test_measured_profile_has_no_datasheet_banner(capsys):
    cpu = Path(__file__).parent.parent / "profiles" / "cpu-amd-epyc-2core.yaml"  # source: measured
    assert _run(["plan", "--profile", str(cpu), "--model", "tiny", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["datasheet_priors"] == []
    assert _run(["plan", "--profile", str(cpu), "--model", "tiny"]) == 0
    assert "DATASHEET" not in capsys.readouterr().out


def test_plan_json_and_exports(profile_path, capsys, tmp_path):
    rc = _run(["plan", "--profile", str(profile_path), "--inter-node-profile", str(profile_path), "--model",
               "tiny-moe", "--nodes", "2", "--prompt-len", "256", "--output-len", "32", "--batch", "4",
               "--tpot", "0.01", "--format", "json", "--top", "3", "--export-dir", str(tmp_path / "exp")])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    g = data["groups"][0]
    assert g["objective"] == "throughput" and len(g["ranked"]) == 3
    best = g["ranked"][0]
    for k in ("ttft_s", "tpot_s", "tokens_per_s_per_device", "memory", "decode_breakdown_s", "why"):
        assert k in best
    assert set(best["decode_breakdown_s"]) == {"compute", "memory", "communication", "launch"}
    assert best["memory"]["total_bytes"] > best["memory"]["weights_bytes"] > 0
    exp = tmp_path / "exp"
    dag = json.loads((exp / "dag_decode.json").read_text())
    names = {n["name"] for n in dag["nodes"]}
    assert {"attn_norm", "qkv", "attention", "o_proj", "router"} <= names
    assert all(e[0] in names and e[1] in names for e in dag["edges"])
    assert all(n["source"] for n in dag["nodes"])
    dot = (exp / "dag_prefill.dot").read_text()
    assert dot.startswith("digraph") and '"qkv" -> "rope";' in dot
    trace = json.loads((exp / "trace.json").read_text())
    ev = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["cat"].split(",")[0] for e in ev} == {"prefill", "decode"}
    ends = [e["ts"] + e["dur"] for e in ev]
    assert all(e["dur"] >= 0 for e in ev) and max(ends) > 0
    # the trace's prefill ends at TTFT (in us) up to rounding
    pre_end = max(e["ts"] + e["dur"] for e in ev if e["cat"].startswith("prefill"))
    assert pre_end == pytest.approx(best["ttft_s"] * 1e6, rel=1e-3)


def test_plan_bad_inputs(profile_path):
    with pytest.raises(ValueError, match="unknown model 'nope'; presets: .*llama3-8b"):
        _run(["plan", "--profile", str(profile_path), "--model", "nope"])
    with pytest.raises(ValueError, match="--nodes must be >= 1"):
        _run(["plan", "--profile", str(profile_path), "--nodes", "0"])
    with pytest.raises(ValueError, match=r"--prompt-len \(--isl\) must be >= 1, got 0"):
        _run(["plan", "--profile", str(profile_path), "--prompt-len", "0"])
    with pytest.raises(ValueError, match="--tpot must be a finite number > 0, got -1"):
        _run(["plan", "--profile", str(profile_path), "--tpot", "-1"])
    with pytest.raises(ValueError, match="--ttft must be a finite number > 0, got inf"):
        _run(["plan", "--profile", str(profile_path), "--ttft", "inf"])
    with pytest.raises(FileNotFoundError):
        _run(["plan", "--profile", str(profile_path) + ".missing"])
    # Infeasible is not a typo: its own exit code (accelcal.exitcodes), the reason on stderr.
    assert _run(["plan", "--profile", str(profile_path), "--model", "llama3.1-405b", "--devices-per-node", "2"]) == 3


@pytest.mark.parametrize("spec, message", [
    ("{p}", "expected PROFILE:NODES\\[:DEVICES\\], e.g."),
    ("{p}:0", "NODES must be an integer >= 1, got 0"),
    ("{p}:two", "NODES must be an integer >= 1, got 'two'"),
    ("{p}:1:0", "DEVICES must be an integer >= 1, got 0"),
    ("{p}:1:x", "DEVICES must be an integer >= 1, got 'x'"),
    (":1", "the PROFILE before ':NODES' is empty"),
    ("{p}:1:2:3", "more than two numbers after the profile"),
    ("{p}.missing:1", "profile .* does not exist"),
])
def test_extra_group_spec_errors_name_the_flag_and_the_part(profile_path, spec, message):
    spec = spec.format(p=profile_path)
    with pytest.raises((ValueError, FileNotFoundError), match=f"--extra-group '{re.escape(spec)}': {message}"):
        _run(["plan", "--profile", str(profile_path), "--extra-group", spec])



def test_profiles_in_the_wrong_role_are_refused_by_name(profile_path):
    ic = str(Path(__file__).parent.parent / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")
    with pytest.raises(ValueError, match="--extra-group h100-nvswitch-4of8: is an interconnect profile"):
        _run(["plan", "--profile", str(profile_path), "--extra-group", f"{ic}:1"])
    # a device profile measured on one device links no nodes
    one = Path(__file__).parent.parent / "profiles" / "nvidia-h100.yaml"
    with pytest.raises(ValueError, match="--inter-node-profile nvidia-h100: is a device profile with no collective"):
        _run(["plan", "--profile", str(one), "--inter-node-profile", str(one), "--nodes", "2"])

def test_extra_group_adds_a_device_group(profile_path, capsys):
    assert plan_cli.parse_extra_group(f"{profile_path}:2:4") == (str(profile_path), [2, 4])
    assert plan_cli.parse_extra_group("a:b.yaml:3") == ("a:b.yaml", [3])
    assert _run(["plan", "--profile", str(profile_path), "--extra-group", f"{profile_path}:1:2", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert json.dumps(doc).count("#2") >= 1  # the second group of the same device gets its own name



def test_unknown_options_get_the_commands_usage_and_lengths_take_both_spellings(profile_path, capsys):
    from accelcal.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["plan", "--profile", str(profile_path), "--bogus", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.splitlines() == ["accelcal plan: error: unrecognized arguments: --bogus 3",
                                                        "usage: accelcal plan --help lists every option"]
    # a value of the wrong type: the error and where the options are, not the 19-line usage block before them
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--profile", str(profile_path), "--model", "llama3-8b", "--engine", "vllm", "--isl", "8",
              "--osl", "8", "--concurrency", "abc"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.splitlines() == [
        "accelcal predict: error: argument --concurrency: invalid int value: 'abc'",
        "usage: accelcal predict --help lists every option"]
    # plan and predict name the request lengths differently; each takes the other's spelling too
    assert main(["plan", "--profile", str(profile_path), "--isl", "512", "--osl", "32", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["workload"]["prompt_len"] == 512 and doc["workload"]["output_len"] == 32

def test_planner_runs_without_torch(profile_path):
    code = (
        "import sys, argparse\n"
        "import accelcal.planner, accelcal.planner.search, accelcal.planner.export, accelcal.planner.report\n"
        "from accelcal.planner import cli\n"
        "p = argparse.ArgumentParser(); s = p.add_subparsers(); cli.register(s, None)\n"
        f"a = p.parse_args(['plan', '--profile', {str(profile_path)!r}, '--model', 'mixtral-8x7b', '--nodes', '2'])\n"
        "assert a.func(a) == 0\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print('TORCH', bad)\n"
        "sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "TORCH []" in r.stdout


def test_profile_without_the_model_dtype_plans_in_the_profiles_dtype(tmp_path, capsys):
    d = h100_like()
    d["compute"] = {"fp32": dict(d["compute"]["bf16"], peak_flop_per_s=60.0e12)}
    d["attention"] = {"fp32": d["attention"]["bf16"]}
    path = tmp_path / "fp32.yaml"
    Profile.from_dict(d).save(path)
    assert _run(["plan", "--profile", str(path), "--model", "tiny", "--format", "json"]) == 0
    cap = capsys.readouterr()
    assert "has no bf16 compute data" in cap.err and "planning tiny in fp32" in cap.err
    assert json.loads(cap.out)["model"]["weight_dtype"] == "fp32"
    with pytest.raises(ValueError, match=r"--dtype bf16: profile .* has compute data for \['fp32'\] only"):
        _run(["plan", "--profile", str(path), "--model", "tiny", "--dtype", "bf16"])


def test_targets_and_request_rate_are_checked(profile_path, capsys):
    assert _run(["plan", "--profile", str(profile_path), "--model", "llama3-8b", "--tpot", "1e-6",
                 "--request-rate", "1e9", "--format", "json"]) == 4  # layouts fit, none meets the targets
    cap = capsys.readouterr()
    assert "no plan meets the targets" in cap.err
    g = json.loads(cap.out)["groups"][0]
    best = g["ranked"][0]
    assert not best["meets_targets"]
    assert any(m.startswith("TPOT") and "> target 1e-06 s" in m for m in best["misses"])
    assert any("req/s < offered 1e+09 req/s" in m for m in best["misses"])
    assert g["notes"] and g["notes"][0].startswith("no plan meets the targets")


def test_plan_counts_add_up_with_expert_layouts_refused(capsys):
    # Mixtral's 8 experts cannot spread over EP 16: those refusals count as evaluated layouts, so the summary's
    # feasible + rejected equals its evaluated (it said 145 evaluated: 16 feasible, 134 rejected)
    from accelcal.cli import main

    rc = main(["plan", "--profile", "profiles/nvidia-h100.yaml", "--interconnect",
               "profiles/interconnect/h100-nvswitch-4of8.yaml", "--nodes", "2", "--devices-per-node", "8",
               "--model", "mixtral-8x7b", "--top", "1", "--format", "json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    group = data["groups"][0]
    assert group["candidates_evaluated"] == group["feasible"] + len(group["rejected"]) == 150
    assert sum("num_experts(8) % ep(16)" in r["reason"] for r in group["rejected"]) == 5


def test_plan_says_when_fp32_gemms_beat_the_models_16_bit_dtype(tmp_path, capsys):
    import yaml

    d = yaml.safe_load(Profile.load(ROOT / "profiles" / "cpu-amd-epyc-2core.yaml").to_yaml())
    # a CPU without native bf16 units: the same fp32 fit, every bf16 rate and measured point 20x slower
    bf16 = d["compute"]["bf16"]
    bf16["peak_flop_per_s"] /= 20
    bf16["memory_bandwidth_bytes_per_s"] /= 20
    bf16["points"] = [[m, n, k, t * 20] for m, n, k, t in bf16["points"]]
    slow = tmp_path / "no-bf16-units.yaml"
    Profile.from_dict(d).save(slow)
    prof = Profile.load(slow)
    t16, t32 = (prof.gemm_time_s(2048, 14336, 4096, dt).time_s for dt in ("bf16", "fp32"))
    assert t16 > 1.5 * t32
    base = ["plan", "--profile", str(slow), "--model", "llama3-8b", "--devices-per-node", "2", "--prompt-len", "2048"]
    assert _run(base) == 0
    err = capsys.readouterr().err
    assert (f"runs fp32 GEMMs x{t16 / t32:.3g} faster than bf16 at llama3-8b's MLP shape (M 2048, N 14336, K 4096"
            in err and "planning in bf16, the checkpoint's dtype; --dtype fp32 plans it upcast" in err)
    # the shipped profile runs bf16 faster: no note; nor when the user chose the dtype
    assert _run(["plan", "--profile", str(ROOT / "profiles" / "cpu-amd-epyc-2core.yaml"), "--model", "llama3-8b",
                 "--devices-per-node", "2"]) == 0
    assert "fp32 GEMMs" not in capsys.readouterr().err
    _run(base + ["--dtype", "bf16"])
    assert "fp32 GEMMs" not in capsys.readouterr().err
