"""accelcal export --format aiconfigurator: system YAML keys, perf tables, aiconfigurator's own loader."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import yaml

from accelcal.calibrate import cli as calcli
from accelcal.calibrate.export_aiconfigurator import (AIC_COMM_OPS, NCCL_ELEMENT_BYTES, export_aiconfigurator,
                                                      system_name)
from accelcal.calibrate.profile import Profile

pq = pytest.importorskip("pyarrow.parquet", reason="the aiconfigurator tables are Parquet (pyarrow, measure extra)")

ROOT = Path(__file__).resolve().parents[1]
H200 = ROOT / "profiles" / "nvidia-h200.yaml"
H200_DS = ROOT / "profiles" / "datasheet" / "h200-sxm.yaml"
CPU = ROOT / "profiles" / "cpu-amd-epyc-2core.yaml"
FIXTURE = Path(__file__).parent / "data" / "aiconfigurator" / "h200_sxm.yaml"

GEMM_COLUMNS = {"framework", "version", "device", "op_name", "kernel_source", "gemm_dtype", "m", "n", "k", "latency"}
ATTN_COLUMNS = {"framework", "version", "device", "op_name", "kernel_source", "batch_size", "isl", "num_heads",
                "num_key_value_heads", "head_dim", "beam_width", "attn_dtype", "kv_cache_dtype", "step",
                "window_size", "latency"}
NCCL_COLUMNS = {"framework", "version", "device", "op_name", "kernel_source", "nccl_dtype", "num_gpus",
                "message_size", "latency"}
"""Columns of aiconfigurator 0.12.0's systems/data/h200_sxm/{gemm,attention,comm/nccl}/.../*.parquet."""


@pytest.fixture(scope="module")
def h200(tmp_path_factory):
    out = tmp_path_factory.mktemp("aic")
    res = export_aiconfigurator(Profile.load(H200), out, profile_path=H200, datasheet=Profile.load(H200_DS),
                                fill_from=FIXTURE)
    return res


def _table(res, suffix: str):
    path = next(p for p in res.tables if p.endswith(suffix))
    return pq.read_table(res.systems_dir / path).to_pylist()


def test_system_yaml_uses_only_aiconfigurator_keys(h200):
    ref = yaml.safe_load(FIXTURE.read_text())
    spec = yaml.safe_load((h200.systems_dir / f"{h200.system}.yaml").read_text())
    assert set(spec) <= set(ref), set(spec) - set(ref)
    for sect in ("gpu", "node", "misc"):
        assert set(spec[sect]) <= set(ref[sect]), f"{sect}: not aiconfigurator keys: {set(spec[sect]) - set(ref[sect])}"
    # required by system_spec.rs (no serde default), present once the unmeasured ones are filled
    assert {"mem_bw"} <= set(spec["gpu"]) and {"num_gpus_per_node", "intra_node_bw", "inter_node_bw"} <= set(spec["node"])
    assert (h200.systems_dir / spec["data_dir"]).is_dir()


def test_system_values_come_from_profile_env_and_datasheet(h200):
    spec = h200.spec
    p, ds = Profile.load(H200), Profile.load(H200_DS)
    env = json.loads((H200.parent / "nvidia-h200-raw" / "kernels.env.json").read_text())
    assert spec["gpu"]["mem_capacity"] == env["device_memory_total_bytes"] and isinstance(spec["gpu"]["mem_capacity"], int)
    assert spec["gpu"]["sm_version"] == 90 and env["device_capability"] == "9.0"
    assert spec["gpu"]["power"] == 700.0 and env["gpu_power_limit"].startswith("700")
    assert spec["misc"]["nccl_version"] == env["nccl_version"]
    assert spec["gpu"]["bfloat16_tc_flops"] == int(ds.compute["bf16"].peak_flop_per_s)
    assert spec["gpu"]["fp8_tc_flops"] == int(ds.compute["fp8_e4m3"].peak_flop_per_s)
    # the measured derating is applied once: mem_bw (peak) x factor = a measured bandwidth
    effective = spec["gpu"]["mem_bw"] * spec["gpu"]["mem_bw_empirical_scaling_factor"]
    assert spec["gpu"]["mem_bw"] == int(ds.memory["read"].bandwidth_bytes_per_s)
    assert any(effective == pytest.approx(e.bandwidth_bytes_per_s, rel=1e-5) for e in p.memory.values())
    # the unmeasured fields were copied from the fixture and each copy is reported
    assert spec["node"]["inter_node_bw"] == 50000000000
    assert any("inter_node_bw" in w and str(FIXTURE) in w for w in h200.warnings)
    assert "misc.nccl_mem" in h200.provenance and "copied from" in h200.provenance["misc.nccl_mem"]


def test_without_datasheet_the_factor_is_one_and_gaps_are_warned(tmp_path):
    p = Profile.load(H200)
    res = export_aiconfigurator(p, tmp_path, profile_path=H200)
    assert res.spec["gpu"]["mem_bw_empirical_scaling_factor"] == 1.0
    assert res.spec["gpu"]["bfloat16_tc_flops"] == int(p.compute["bf16"].peak_flop_per_s)
    assert "inter_node_bw" not in res.spec["node"]
    assert any("node.inter_node_bw left out" in w and "--fill-from" in w for w in res.warnings)


def test_gemm_table_holds_measured_points_on_a_full_grid(h200):
    rows = _table(h200, "gemm_perf.parquet")
    assert GEMM_COLUMNS <= set(rows[0]) and rows[0]["op_name"] == "gemm"
    p = Profile.load(H200)
    by_key = {(r["gemm_dtype"], r["m"], r["n"], r["k"]): r for r in rows}
    repeats: dict = {}
    for m, n, k, t in p.compute["bf16"].points:
        repeats.setdefault((int(m), int(n), int(k)), []).append(t)
    for (m, n, k), ts in repeats.items():  # a shape two presets share was measured twice: the median
        r = by_key[("bfloat16", m, n, k)]
        assert r["accelcal_source"] == "measured" and r["latency"] == pytest.approx(statistics.median(ts) * 1e3)  # ms
    bf = [r for r in rows if r["gemm_dtype"] == "bfloat16"]
    dims = [len({r[c] for r in bf}) for c in ("m", "n", "k")]
    assert len(bf) == dims[0] * dims[1] * dims[2], "aiconfigurator interpolates on a full m x n x k grid"
    fit = next(r for r in bf if r["accelcal_source"] == "fit")
    assert fit["latency"] == pytest.approx(p.gemm_time_s(fit["m"], fit["n"], fit["k"], "bf16").time_s * 1e3)


def test_attention_tables_carry_the_raw_cases(h200):
    ctx, gen = _table(h200, "context_attention_perf.parquet"), _table(h200, "generation_attention_perf.parquet")
    assert ATTN_COLUMNS <= set(ctx[0]) and ATTN_COLUMNS <= set(gen[0])
    assert {r["op_name"] for r in ctx} == {"context_attention"} and {r["op_name"] for r in gen} == {"generation_attention"}
    import csv
    raw = [r for r in csv.DictReader(open(H200.parent / "nvidia-h200-raw" / "kernels.csv"))
           if r["op"] == "attn_decode" and r["figure"] == "device"]
    r0 = raw[0]
    b, kvl = int(float(r0["batch"])), int(float(r0["kv_len"]))
    hit = [r for r in gen if (r["batch_size"], r["step"], r["num_heads"], r["num_key_value_heads"], r["head_dim"]) ==
           (b, kvl - 1, int(float(r0["heads"])), int(float(r0["kv_heads"])), int(float(r0["head_dim"])))]
    assert len(hit) == 1 and hit[0]["accelcal_source"] == "measured"
    assert hit[0]["latency"] == pytest.approx(float(r0["median_s"]) * 1e3)
    # every whole-prompt prefill case measured is a context row (chunks after cached context are not)
    whole = [r for r in csv.DictReader(open(H200.parent / "nvidia-h200-raw" / "kernels.csv"))
             if r["op"] == "attn_prefill" and r["figure"] == "device" and r["q_len"] == r["kv_len"]]
    assert len(whole) == 20 and sum(r["accelcal_source"] == "measured" for r in ctx) == len(whole)
    meta = yaml.safe_load(next((h200.systems_dir / "data").rglob("attention/*/*/collection_meta.yaml")).read_text())
    assert meta["schema_version"] == 1 and meta["tables"]["context_attention_perf"]["status"] == "partial"
    assert meta["accelcal"]["rows"]["generation_attention_perf"]["measured"] == len(raw)


def test_nccl_table_from_collective_fits_only_with_an_nccl_version(tmp_path):
    p = Profile.load(CPU)
    res = export_aiconfigurator(p, tmp_path / "gloo", profile_path=CPU)
    assert not any("nccl_perf" in t for t in res.tables)
    assert any("no NCCL version" in w for w in res.warnings)
    p2 = dataclasses.replace(p, identity=dataclasses.replace(p.identity, versions={**p.identity.versions, "nccl": "2.99.1"}))
    res = export_aiconfigurator(p2, tmp_path / "nccl")
    rows = _table(res, "comm/nccl/2.99.1/nccl_perf.parquet")
    assert NCCL_COLUMNS <= set(rows[0]) and {r["op_name"] for r in rows} <= set(AIC_COMM_OPS.values())
    assert "alltoall" in {r["op_name"] for r in rows}
    r = next(r for r in rows if r["op_name"] == "all_reduce" and r["message_size"] == 2 ** 20)
    want = p2.collective_time_s("all_reduce", 2 ** 20 * NCCL_ELEMENT_BYTES, 2).time_s * 1e3
    assert r["num_gpus"] == 2 and r["latency"] == pytest.approx(want)


def test_cli_needs_out_and_writes_the_tree(tmp_path, capsys):
    assert calcli_run(["export", str(H200), "--format", "aiconfigurator"]) == 2
    assert "--out DIR" in capsys.readouterr().err
    out = tmp_path / "aic"
    assert calcli_run(["export", str(H200), "--format", "aiconfigurator", "--out", str(out),
                       "--datasheet", str(H200_DS), "--fill-from", str(FIXTURE)]) == 0
    text = capsys.readouterr().out
    name = system_name(Profile.load(H200))
    assert (out / "systems" / f"{name}.yaml").is_file() and f"--system {name}" in text
    assert yaml.safe_load((out / "accelcal_export.yaml").read_text())["system"] == name
    # a second export into the same folder would leave the first unlisted: refused without --force
    with pytest.raises(ValueError, match=r"already holds an export .*accelcal_export.yaml.*pass --force"):
        calcli_run(["export", str(H200), "--format", "aiconfigurator", "--out", str(out)])
    # without the fields aiconfigurator requires, no ready-to-run command: what is missing and how to give it
    assert calcli_run(["export", str(H200), "--format", "aiconfigurator", "--out", str(out), "--force"]) == 0
    text = capsys.readouterr().out
    assert "use: aiconfigurator" not in text and "not loadable by aiconfigurator yet" in text
    assert "node.inter_node_bw" in text and "--fill-from" in text
    with pytest.raises(FileNotFoundError, match=r"--fill-from .* nothere.yaml does not exist"):
        calcli_run(["export", str(H200), "--format", "aiconfigurator", "--out", str(tmp_path / "b"),
                    "--fill-from", "nothere.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("foo: [1, 2\n")
    with pytest.raises(ValueError, match=r"--fill-from .*bad.yaml: line 2 column 1: not valid YAML"):
        calcli_run(["export", str(H200), "--format", "aiconfigurator", "--out", str(tmp_path / "c"),
                    "--fill-from", str(bad)])
    with pytest.raises(ValueError, match=r"--fill-from .* is a directory; expected a regular file"):
        calcli_run(["export", str(H200), "--format", "aiconfigurator", "--out", str(tmp_path / "d"),
                    "--fill-from", str(tmp_path)])
    assert not (tmp_path / "c" / "accelcal_export.yaml").exists()


def calcli_run(argv):
    import argparse

    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    calcli.register(sub, sub.add_parser("bench").add_subparsers())
    args = ap.parse_args(argv)
    return args.func(args)


def test_aiconfigurator_loads_the_export(h200):
    pytest.importorskip("aiconfigurator_core", reason="aiconfigurator is not installed (pip install aiconfigurator); "
                                                      "this checks the export against its own loader")
    from aiconfigurator_core.sdk import perf_database as pdb

    db = pdb.get_database(h200.system, h200.backend, h200.version, systems_paths=[str(h200.systems_dir)])
    assert db is not None, f"aiconfigurator found no database for {h200.system}/{h200.backend}/{h200.version}"
    assert db.system_spec["gpu"]["mem_capacity"] == h200.spec["gpu"]["mem_capacity"]
    modes = db.supported_quant_mode  # parses each table with aiconfigurator's reader
    assert set(modes["gemm"]) == {"bfloat16", "fp8"}
    assert modes["context_attention"] == ["bfloat16"] and modes["generation_attention"] == ["bfloat16"]


def test_fill_from_must_be_an_aiconfigurator_system_yaml_with_bandwidths_in_bytes_per_s(tmp_path):
    with pytest.raises(ValueError, match=r"--fill-from .*nvidia-h200.yaml: not an aiconfigurator system YAML .*; it "
                                         r"is an accelerator profile"):
        export_aiconfigurator(Profile.load(H200), tmp_path / "a", profile_path=H200, fill_from=H200)
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu:\n  mem_bw: 4800000000000\nnode:\n  intra_node_bw: 1\n  inter_node_bw: 50000000000\n")
    with pytest.raises(ValueError, match=r"node.intra_node_bw = 1; expected bytes per second"):
        export_aiconfigurator(Profile.load(H200), tmp_path / "b", profile_path=H200, fill_from=bad)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_export_composes_the_fabric_from_interconnect_profiles(tmp_path, capsys):
    # every shipped GPU profile measures one device: its NCCL tables and node bandwidths come from a fabric's
    nvs = ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml"
    ib = ROOT / "profiles" / "interconnect" / "h100-2x8-ib-ndr400.yaml"
    h100 = ROOT / "profiles" / "nvidia-h100.yaml"
    out = tmp_path / "aic"
    assert calcli_run(["export", str(h100), "--format", "aiconfigurator", "--interconnect", str(nvs),
                       "--out", str(out)]) == 0
    assert "nccl_perf.parquet" in capsys.readouterr().out
    alone = tmp_path / "alone"
    assert calcli_run(["export", str(h100), "--format", "aiconfigurator", "--out", str(alone)]) == 0
    assert "nccl_perf" not in capsys.readouterr().out
    assert calcli_run(["export", str(h100), "--interconnect", str(nvs), "--inter-node-profile", str(ib)]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    composed = Profile.load(nvs)
    busbw = [c for c in composed.collectives if c.op == "all_reduce" and not c.kernel]
    assert cfg["source_profile"] == "nvidia-h100+h100-nvswitch-4of8+h100-2x8-ib-ndr400"
    assert cfg["node"]["num_gpus_per_node"] == composed.identity.devices_per_node
    assert cfg["node"]["intra_node_bw_bytes_per_s"] > 1e11 and cfg["node"]["inter_node_bw_bytes_per_s"] > 1e10
    assert busbw  # the intra-node bandwidth above is one of the fabric's all-reduce fits, not the device profile's
    # across nodes one device's share of the network (as configurators define inter_node_bw), not the 16-rank
    # all-reduce's bus bandwidth (the whole node's network, ~470 GB/s with NCCL's NVLS tree): the planner's derived
    # send_recv, below the node's own fabric
    ib_prof = Profile.load(ib)
    t = ib_prof.collective_time_s("send_recv", 1 << 30, 2, "inter_node").time_s
    assert cfg["node"]["inter_node_bw_bytes_per_s"] == pytest.approx((1 << 30) / t, rel=1e-9)
    assert cfg["node"]["inter_node_bw_bytes_per_s"] < cfg["node"]["intra_node_bw_bytes_per_s"] / 4
    assert "send_recv of 1073741824 B over 2 ranks" in cfg["provenance"]["inter_node_bw_bytes_per_s"]
    # the node fields are the published logs', and say so; the parts list each source
    assert cfg["provenance"]["intra_node_bw_bytes_per_s"].startswith("published (h100-nvswitch-4of8): ")
    assert cfg["provenance"]["inter_node_bw_bytes_per_s"].startswith("published (h100-2x8-ib-ndr400): ")
    assert [(x["role"], x["source"]) for x in cfg["parts"]] == [("device", "measured"), ("intra-node", "published"),
                                                                ("inter-node", "published")]


def test_a_composed_fabric_is_exported_under_its_own_source_and_nccl_version(tmp_path):
    """The intra-node fits of a published log are not the device profile's measurements: the node bandwidths,
    the devices per node and the NCCL table name that part, its source and its NCCL version."""
    from accelcal.calibrate.compose import compose

    nvs = Profile.load(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")
    h100 = ROOT / "profiles" / "nvidia-h100.yaml"
    res = export_aiconfigurator(compose(Profile.load(h100), nvs), tmp_path, profile_path=h100)
    prov = res.provenance
    assert prov["node.intra_node_bw"].startswith("published (h100-nvswitch-4of8): ")
    assert prov["node.num_gpus_per_node"].startswith("devices_per_node of h100-nvswitch-4of8 (published")
    [meta_path] = (tmp_path / "systems" / "data").rglob("comm/nccl/*/collection_meta.yaml")
    assert meta_path.parent.name == nvs.identity.versions["nccl"] == "2.29.2"  # not the device run's 2.28.9
    meta = yaml.safe_load(meta_path.read_text())["accelcal"]
    assert (meta["source"], meta["collectives_from"], meta["versions"]["nccl"]) == ("published", "h100-nvswitch-4of8",
                                                                                   "2.29.2")
    assert "command" not in meta and "raw_data" not in meta  # the device run's, not the log's
    # aiconfigurator finds that folder by the system YAML's misc.nccl_version: the same value
    assert res.spec["misc"]["nccl_version"] == "2.29.2"
    assert prov["misc.nccl_version"].startswith("published (h100-nvswitch-4of8): the NCCL its collectives ran on")
    # its engine all-reduce fits exist; the warning says they are not exported, not that none were measured
    assert any("engine all-reduce fits (trtllm_custom_ar, vllm_custom_ar, from h100-nvswitch-4of8) are not exported"
               in w for w in res.warnings)


def test_a_failed_export_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    import accelcal.calibrate.export_aiconfigurator as aic

    calls = []

    def fail_second(path, rows, common):
        calls.append(path)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", str(path))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"table")

    monkeypatch.setattr(aic, "_write_table", fail_second)
    out = tmp_path / "aic"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    with pytest.raises(PermissionError):
        export_aiconfigurator(Profile.load(H200), out, profile_path=H200)
    assert len(calls) == 2 and sorted(p.name for p in out.iterdir()) == ["keep.txt"]
