"""Published MoE op tables (calibrate/moe_table.py, moe_import.py) and their use by the serving costing
(planner/serving/moe_op.py): interpolation, the file's round trip and errors, the import, and what predict / plan
do with ``--moe-table``."""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from accelcal.calibrate.moe_table import MoeOpEntry, MoeOpTable, moe_weight_kind, table_from_rows
from accelcal.calibrate.profile import Profile
from accelcal.calibrate.profile.errors import ProfileError
from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.parallelism import Parallelism
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.moe_op import MOE_OP_NODES, EngineMoeOp, pick_table
from accelcal.planner.serving.step_cost import StepCoster, StepCostError

ROOT = Path(__file__).resolve().parents[1]
H100 = str(ROOT / "profiles" / "nvidia-h100.yaml")
NVSWITCH = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")
DEVICE = "NVIDIA H100 80GB HBM3"
MODEL = "qwen3-30b-a3b"  # hidden 2048, expert ffn 768, top-8 of 128
TOKENS = [1, 16, 256, 4096]
SLOW_S = [50e-6, 80e-6, 400e-6, 5e-3]  # a made-up op, slower than the H100 profile's GEMMs at every size


def _entry(**kw) -> MoeOpEntry:
    base = dict(weights="bf16", kernel="k", hidden_size=2048, expert_ffn_size=768, top_k=8, experts=128, moe_tp=1,
                moe_ep=1, distribution="balanced", tokens=tuple(TOKENS), time_s=tuple(SLOW_S))
    base.update(kw)
    return MoeOpEntry(**base)


def _table(entries=None, engine="vllm", device=DEVICE) -> MoeOpTable:
    return MoeOpTable(device, engine, "0.0-test", ["test: made-up numbers"], entries or [_entry()], origin="test.yaml")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_queries_interpolate_log_log_hold_below_and_scale_with_tokens_above():
    e = _entry()
    assert e.at(16) == (80e-6, False, "collected at 16 tokens")
    t, out, how = e.at(64)  # halfway between 16 and 256 in log tokens: the geometric mean of their times
    assert t == pytest.approx(math.sqrt(80e-6 * 400e-6)) and not out and "log-log" in how
    assert e.at(1)[0] == 50e-6 and not e.at(1)[1]
    t, out, how = e.at(8192)  # twice the largest: twice its time, flagged
    assert t == pytest.approx(10e-3) and out and "x 2" in how
    est = _table().time_s("bf16", 2048, 768, 8, 128, 1, 1, 8192)
    assert "extrapolated" in est.flags and "published" in est.flags and est.time_s == pytest.approx(10e-3)
    assert _table().time_s("bf16", 2048, 768, 8, 128, 2, 1, 16) is None  # no such layout


def test_a_query_prefers_balanced_routing_over_power_law():
    skewed = _entry(distribution="power_law_1.01", time_s=tuple(2 * t for t in SLOW_S))
    t = _table([skewed, _entry()])
    assert t.time_s("bf16", 2048, 768, 8, 128, 1, 1, 16).time_s == 80e-6
    assert "balanced routing" in t.time_s("bf16", 2048, 768, 8, 128, 1, 1, 16).detail


def test_weight_kinds_of_models():
    assert moe_weight_kind("fp8_e4m3", "block") == "fp8_e4m3_block"
    assert moe_weight_kind("fp8_e4m3", "per_tensor") == "fp8_e4m3"
    assert moe_weight_kind("bf16", "per_tensor", "mxfp4") == "mxfp4"
    assert moe_weight_kind("bf16", "per_tensor", "int4_g32") == "int4"


def test_file_round_trip_one_line_per_entry(tmp_path):
    p = tmp_path / "t.yaml"
    t = _table([_entry(), _entry(moe_tp=2, time_s=(1e-5, 2e-5, 3e-5, 4e-5))])
    t.save(p)
    text = p.read_text()
    assert text.count("\n- {") == 2  # each entry on one line
    back = MoeOpTable.load(p)
    assert back.entries == t.entries and back.engine == "vllm" and back.device == DEVICE
    assert back.time_s("bf16", 2048, 768, 8, 128, 2, 1, 256).time_s == 3e-5


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(kind="profile"), "not a MoE op table: it has kind 'profile'; expected kind: 'moe_op_table'"),
    (lambda d: d.pop("kind"), "not a MoE op table: it has no kind key (a profile?)"),
    (lambda d: d.update(citations=[]), "citations: expected a non-empty list"),
    (lambda d: d.update(source="measured"), "source 'measured', expected 'published'"),
    (lambda d: d["entries"][0].update(weights="fp4"), "entries[0].weights: expected one of"),
    (lambda d: d["entries"][0].update(tokens=[16, 1, 256, 4096]), "entries[0].tokens: expected strictly ascending"),
    (lambda d: d["entries"][0].update(time_s=[1e-5, -1.0, 1e-4, 1e-3]), "entries[0].time_s: expected seconds"),
    (lambda d: d["entries"][0].update(top_k=200), "top_k 200 > experts 128"),
    (lambda d: d["entries"].append(dict(d["entries"][0])), "two entries for bf16 hidden 2048"),
])
def test_bad_files_name_the_key(edit, message):
    d = _table().to_dict()
    edit(d)
    with pytest.raises(ProfileError) as exc:
        MoeOpTable.from_dict(d, "bad.yaml")
    assert message in str(exc.value) and "bad.yaml" in str(exc.value)


def _rows(**kw) -> list[dict]:
    rows = []
    for n, ms in zip(TOKENS, [0.05, 0.08, 0.4, 5.0]):
        r = dict(framework="VLLM", version="0.0-test", device=DEVICE, moe_dtype="bfloat16", num_tokens=n, hidden_size=2048,
                 inter_size=768, topk=8, num_experts=128, moe_tp_size=1, moe_ep_size=1, distribution="balanced",
                 latency=ms, kernel_source="vllm_fused_moe")
        r.update(kw)
        rows.append(r)
    return rows


def test_rows_become_entries_in_seconds_repeats_at_their_median():
    rows = _rows() + [dict(_rows()[1], latency=0.10), dict(_rows()[1], latency=0.30)] + _rows(moe_dtype="nvfp4")
    t, notes = table_from_rows(rows, DEVICE, "vllm", "0.0-test", ["c"])
    assert len(t.entries) == 1 and t.entries[0].tokens == tuple(TOKENS)
    assert t.entries[0].time_s[1] == pytest.approx(0.10e-3)  # median of 0.08, 0.10, 0.30 ms
    assert t.entries[0].time_s[3] == pytest.approx(5e-3)
    assert any("skipped 4 row(s) of moe_dtype nvfp4" in n for n in notes)
    assert any("1 case(s) collected more than once" in n for n in notes)


def test_import_cli_writes_keeps_a_models_shapes_and_refuses_what_it_cannot_read(tmp_path, capsys):
    src = tmp_path / "moe_perf.csv"
    pd.DataFrame(_rows() + _rows(hidden_size=4096, inter_size=1536) + _rows(moe_ep_size=2)).to_csv(src, index=False)
    out = tmp_path / "t.yaml"
    args = ["import", "moe-table", str(src), "--engine", "vllm", "--citation", "https://example.org/x",
            "--model", MODEL, "--moe-ep", "1", "--out", str(out)]
    rc, stdout, _ = _run(capsys, *args)
    assert rc == 0 and "wrote" in stdout and "1 entries" in stdout
    t = MoeOpTable.load(out)
    assert [(e.hidden_size, e.moe_ep) for e in t.entries] == [(2048, 1)]
    assert t.citations == ["https://example.org/x"] and "moe_perf.csv" in t.raw_sha256
    assert shlex.split(t.command)[:3] == ["accelcal", "import", "moe-table"]
    before = out.read_text()
    rc, _, err = _run(capsys, *args)  # exists, no --force: refused, the file untouched
    assert rc == 2 and "exists; pass --force" in err and out.read_text() == before
    bad = tmp_path / "bad.csv"
    pd.DataFrame(_rows()).drop(columns=["topk"]).to_csv(bad, index=False)
    rc, _, err = _run(capsys, "import", "moe-table", str(bad), "--engine", "vllm", "--citation", "c", "--out",
                      str(tmp_path / "b.yaml"))
    assert rc == 2 and "columns ['topk'] missing" in err
    rc, _, err = _run(capsys, "import", "moe-table", str(src), "--engine", "vllm", "--citation", "c", "--model",
                      "llama3-8b", "--out", str(tmp_path / "c.yaml"))
    assert rc == 2 and "is dense" in err
    for argv, message in (
            (["--engine", "sglang"], "--engine sglang: "),  # the file's framework column says vLLM
            (["--engine", "vllm", "--citation", " "], "not an empty string"),
            (["--engine", "vllm", "--out", str(tmp_path)], "is a directory; expected a YAML file name")):
        full = ["import", "moe-table", str(src), "--citation", "c", "--out", str(tmp_path / "d.yaml"), *argv]
        rc, _, err = _run(capsys, *full)
        assert rc == 2 and message in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "d.yaml").exists()
    for edit, message in ((dict(latency="abc"), "row 1: latency 'abc', expected a positive time in ms"),
                          (dict(num_tokens=8.5), "row 1: num_tokens 8.5, expected an integer >= 1")):
        rows = _rows()
        rows[0].update(edit)
        with pytest.raises(ProfileError, match=re.escape(message)):
            table_from_rows(rows, DEVICE, "vllm", "t", ["c"], origin="x.csv")


def test_import_refuses_a_unit_slip_its_own_output_as_input_and_outputs_it_must_not_replace(tmp_path, capsys):
    import shutil

    out = tmp_path / "t.yaml"
    # seconds, then microseconds, in the ms column; the last row as long as the shipped tables' longest (~60 ms)
    for scale, shown in ((1e-3, "got 5e-08"), (1e3, "got 60.0:")):
        src = tmp_path / f"slip{scale:g}.csv"
        rows = _rows()
        rows[-1]["latency"] = 60.0
        pd.DataFrame([dict(r, latency=r["latency"] * scale) for r in rows]).to_csv(src, index=False)
        rc, _, err = _run(capsys, "import", "moe-table", str(src), "--engine", "vllm", "--citation", "c", "--out",
                          str(out))
        assert rc == 2 and "time_s: expected seconds in [1e-06, 10)" in err and "a unit slip" in err, err
        assert shown in err and not out.exists()
    src = tmp_path / "moe_perf.csv"
    pd.DataFrame(_rows()).to_csv(src, index=False)
    base = ["import", "moe-table", "--engine", "vllm", "--citation", "c", "--force"]
    rc, _, err = _run(capsys, *base, str(src), "--out", str(tmp_path / "t.csv"))
    assert rc == 2 and "expected a table path ending in .yaml" in err
    rc, _, err = _run(capsys, *base, str(src), "--out", str(src))
    assert rc == 2 and "expected a table path ending in .yaml" in err and src.read_text().startswith("framework")
    device = tmp_path / "node.yaml"
    shutil.copy(H100, device)
    rc, _, err = _run(capsys, *base, str(src), "--out", str(device))
    assert rc == 2 and "is a device profile" in err and device.read_bytes() == Path(H100).read_bytes()
    assert _run(capsys, *base, str(src), "--out", str(out))[0] == 0
    rc, _, err = _run(capsys, *base, str(out), "--out", str(tmp_path / "again.yaml"))
    assert rc == 2 and "is a MoE op table accelcal already wrote (YAML)" in err


def _coster(table, engine="vllm", tp=1, ep=1, profile=None):
    prof = profile or Profile.load(H100)
    m = ModelConfig.resolve(MODEL)
    return StepCoster(prof, m, Parallelism(tp=tp, ep=ep), EnginePreset.from_name(engine), "bf16", "bf16",
                      moe_table=table)


def test_the_table_replaces_the_moe_op_nodes_and_nothing_else():
    plain, tabled = _coster(None), _coster(_table())
    for tokens in (16, 64, 4096):
        a, b = plain.costed_layer(tokens), tabled.costed_layer(tokens)
        op = sum(n.device_s for n in b.nodes if n.name in MOE_OP_NODES)
        assert op == pytest.approx(_table().time_s("bf16", 2048, 768, 8, 128, 1, 1, tokens).time_s)
        rest_a = {n.name: n.device_s for n in a.nodes if n.name not in MOE_OP_NODES}
        rest_b = {n.name: n.device_s for n in b.nodes if n.name not in MOE_OP_NODES}
        assert rest_a == rest_b and "router" in rest_b  # the router GEMM stays the profile's
        assert b.device_s == pytest.approx(sum(rest_b.values()) + op)
        assert b.kernels == a.kernels  # the op's launches still counted
    assert tabled.step_s(0, 0.0, ((4096, 4096),)) > plain.step_s(0, 0.0, ((4096, 4096),))
    assert any("vllm 0.0-test's own k" in n and "published, not measured here" in n for n in tabled.notes)
    assert not any("grouped expert GEMM" in n for n in tabled.notes)  # the profile's grouped note is not the answer


def test_a_table_of_another_engine_or_device_is_refused_a_missing_shape_noted():
    with pytest.raises(StepCostError, match="is sglang's MoE op; this prediction runs vllm"):
        _coster(_table(engine="sglang"))
    with pytest.raises(StepCostError, match="was collected on NVIDIA H200"):
        _coster(_table(device="NVIDIA H200"))
    with pytest.raises(StepCostError, match="was collected on NVIDIA H100 PCIe"):  # one model, another board
        _coster(_table(device="NVIDIA H100 PCIe"))
    sc = _coster(_table([_entry(moe_tp=2)]))  # only a TP-2 split in the table: TP 1 keeps the profile's estimate
    assert not sc.moe_op.active
    assert any("has no bf16 entry" in n and "(moe_tp, moe_ep) (2, 1)" in n for n in sc.notes)
    ep = EngineMoeOp.resolve(_table(), Profile.load(H100), ModelConfig.resolve(MODEL), Parallelism(tp=2, ep=2),
                             EnginePreset.from_name("vllm"), "bf16", "per_tensor")
    assert not ep.active and "not used at EP 2" in ep.note
    with pytest.raises(ValueError, match="none is vllm's MoE op"):
        pick_table([_table(engine="sglang")], "vllm")
    assert pick_table([_table(engine="sglang")], "vllm", strict=False) is None


def test_predict_and_plan_take_moe_tables(tmp_path, capsys):
    path = tmp_path / "vllm.yaml"
    _table().save(path)
    base = ["predict", "--profile", H100, "--model", MODEL, "--engine", "vllm", "--concurrency", "2", "--isl", "2048",
            "--osl", "8", "--format", "json"]
    rc, out, _ = _run(capsys, *base)
    rc2, out2, _ = _run(capsys, *base, "--moe-table", str(path))
    assert rc == rc2 == 0
    plain, tabled = json.loads(out), json.loads(out2)
    assert tabled["ttft_mean_s"] > plain["ttft_mean_s"]  # the made-up op is slower than the profile's GEMMs
    assert any("published, not measured here" in n for n in tabled["notes"])
    # another release of the engine than the table's: said, and costed with the table all the same
    rc3, out3, _ = _run(capsys, *base, "--moe-table", str(path), "--engine-version", "0.12.0")
    release = [n for n in json.loads(out3)["notes"] if "published for vllm 0.0-test, while this prediction runs "
               "vllm 0.12.0: the op's time is 0.0-test's" in n]
    assert rc3 == 0 and len(release) == 1
    assert not any("while this prediction runs" in n for n in tabled["notes"])  # no release asked: nothing to say
    other = tmp_path / "sglang.yaml"
    _table(engine="sglang").save(other)
    rc, _, err = _run(capsys, *base, "--moe-table", str(other))
    assert rc == 2 and "none is vllm's MoE op" in err
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", MODEL, "--moe-table", str(path))
    assert rc == 2 and "--moe-table: option(s) of the serving search" in err
    rc, out, err = _run(capsys, "plan", "--profile", H100, "--model", MODEL, "--engine", "vllm,sglang",
                        "--concurrency", "2", "--prompt-len", "512", "--output-len", "8", "--moe-table", str(path))
    assert rc == 0, err
    line = next(ln for ln in out.splitlines() if "accelcal predict" in ln)
    assert ("--moe-table " + str(path) in line) == ("--engine vllm" in line)
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", MODEL, "--engine", "sglang", "--concurrency",
                      "2", "--prompt-len", "512", "--output-len", "8", "--moe-table", str(path))
    assert rc == 2 and "not an engine of this search (sglang)" in err


def test_shipped_tables_load_cite_their_source_and_answer_a_preset():
    paths = sorted((ROOT / "profiles" / "engine-kernels").glob("*.yaml"))
    assert len(paths) == 6
    for p in paths:
        t = MoeOpTable.load(p)
        assert t.source == "published" and "github.com/ai-dynamo/aiconfigurator/blob/" in t.citations[0]
        assert all(e.moe_ep == 1 for e in t.entries)
    t = MoeOpTable.load(ROOT / "profiles" / "engine-kernels" / "h100-vllm-0.14.0-moe.yaml")
    m = ModelConfig.resolve("qwen3-235b-a22b")
    est = t.time_s("fp8_e4m3_block", m.hidden_size, m.expert_ffn_size, m.top_k, m.num_experts, 4, 1, 4096)
    assert est is not None and 1e-5 < est.time_s < 1e-1


def test_the_ops_kernels_are_not_charged_again_in_a_cuda_graph():
    plain, tabled = _coster(None), _coster(_table())
    a, b = plain.costed_layer(16, graphs=True), tabled.costed_layer(16, graphs=True)
    per_kernel = plain._costers[True].launch_per_kernel_s
    covered = sum(n.kernels for n in a.nodes if n.name in MOE_OP_NODES)
    assert covered >= 4 and per_kernel > 0
    # the published op was timed with its kernels' launches in a graph: replay adds nothing more for them
    assert a.launch_s - b.launch_s == pytest.approx(covered * per_kernel)


def test_predict_notes_a_dense_model_an_extrapolation_and_names_the_table_in_json(tmp_path, capsys):
    path = tmp_path / "vllm.yaml"
    _table().save(path)
    rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                      "--concurrency", "2", "--isl", "256", "--osl", "8", "--moe-table", str(path), "--format", "json")
    assert rc == 0 and any("not used: llama3-8b is dense" in n for n in json.loads(out)["notes"])
    rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", MODEL, "--engine", "vllm", "--concurrency",
                      "1", "--isl", "6000", "--osl", "4", "--moe-table", str(path), "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["inputs"]["moe_table"] == str(path)
    assert any("past the 4096 tokens" in n and "extrapolated" in n for n in d["notes"])
    again = str(path.parent / "." / path.name)  # one file, spelled twice: read once
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--model", MODEL, "--engine", "vllm", "--concurrency", "1",
                      "--isl", "256", "--osl", "4", "--moe-table", str(path), "--moe-table", again)
    assert rc == 0, err


def test_plan_refuses_another_devices_table_up_front(tmp_path, capsys):
    path = tmp_path / "h200.yaml"
    _table(device="NVIDIA H200").save(path)
    for engines in ("vllm", "vllm,sglang"):
        rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", MODEL, "--engine", engines, "--concurrency",
                          "2", "--prompt-len", "512", "--output-len", "8", "--moe-table", str(path))
        assert rc == 2 and "was collected on NVIDIA H200" in err, (engines, err)
    other = tmp_path / "sglang-h200.yaml"
    _table(engine="sglang", device="NVIDIA H200").save(other)
    good = tmp_path / "vllm.yaml"
    _table().save(good)
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--model", MODEL, "--engine", "vllm", "--concurrency", "1",
                      "--isl", "256", "--osl", "4", "--moe-table", str(good), "--moe-table", str(other))
    assert rc == 2 and "sglang-h200.yaml: was collected on NVIDIA H200" in err


def test_predict_notes_a_table_of_another_engine_given_beside_its_own(tmp_path, capsys):
    mine, other = tmp_path / "vllm.yaml", tmp_path / "sglang.yaml"
    _table().save(mine)
    _table(engine="sglang").save(other)
    rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", MODEL, "--engine", "vllm", "--concurrency", "2",
                      "--isl", "256", "--osl", "4", "--format", "json", "--moe-table", str(mine), "--moe-table", str(other))
    notes = json.loads(out)["notes"]
    assert rc == 0 and f"--moe-table: {other} (sglang) not used: this run is vllm's" in notes
