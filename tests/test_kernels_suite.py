"""Kernel suite on the CPU: rotation, skip records, result schema, a tiny real run, CLI errors."""

import json

import pandas as pd
import pytest
import torch

from accelcal.cli import main
from accelcal.kernels import gemm as gemm_mod
from accelcal.kernels.cases import SweepContext
from accelcal.kernels.device import resolve_device
from accelcal.kernels.gemm import make_gemm_run, matmul_mode, run_gemm
from accelcal.kernels.memory import make_memory_run, run_memory
from accelcal.kernels.shapes import AttentionCase, GemmShape, SuitePreset
from accelcal.kernels.suite import parse_list, run_suite, summary_table
from accelcal.results import CORE_COLUMNS, ResultSet, read_results

CPU = resolve_device("cpu")

TINY = SuitePreset(
    name="tiny-test",
    timing="quick",
    dtypes=("fp32", "tf32", "bf16"),
    gemm_shapes=(GemmShape("tiny.qkv", 96, 64), GemmShape("square64", 64, 64, square=True)),
    gemm_ms=(1, 16, 17),
    square_ms=(64,),
    memory_sizes_bytes=(4096, 65536),
    attention_cases=(AttentionCase("prefill", 1, 4, 2, 16, 32, 32), AttentionCase("decode", 2, 4, 2, 16, 1, 64)),
    attention_dtypes=("fp32",),
    case_budget_s=2.0,
    overhead_queue_len=10,
)


def _ctx(**kw):
    return SweepContext.create(CPU, ResultSet("kernels"), timing="quick", progress=None, **kw)


def test_gemm_run_rotates_sets_and_uses_random_inputs():
    run = make_gemm_run(CPU, "fp32", 8, 16, 32, sets=3)
    outs = [run(i) for i in range(4)]
    # each set writes its own output buffer, set 0 again at i = 3; the sets are copies of one random set
    assert len({o.data_ptr() for o in outs[:3]}) == 3 and outs[3].data_ptr() == outs[0].data_ptr()
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[1], outs[2])
    assert all(o.abs().sum() > 0 for o in outs)  # never zeros
    assert outs[0].std() > 0  # random, not a constant
    ref_x = make_gemm_run(CPU, "bf16", 4, 4, 4, sets=1)(0)
    assert ref_x.dtype == torch.bfloat16


def test_memory_run_rotates_sets():
    run = make_memory_run(CPU, "copy", 4096, sets=2)
    a, b, a2 = run(0), run(1), run(2)
    assert a.data_ptr() == a2.data_ptr() != b.data_ptr()  # set 0, set 1, set 0 again
    assert torch.equal(a, b) and a.std() > 0  # copies of one random set


def test_rotation_sized_against_cache():
    ctx = _ctx()
    ctx.cache_bytes = 1 << 20
    assert ctx.fit_sets(64 << 10)[0] == 32  # 2 x 1 MiB / 64 KiB
    assert ctx.fit_sets(4 << 20)[0] == 2  # at least two sets when they fit


def test_suite_measures_every_rotated_set(monkeypatch):
    seen: list[int] = []
    real = gemm_mod.make_gemm_run

    def spy(device, dtype, m, n, k, sets):
        run = real(device, dtype, m, n, k, sets)
        if m != 8:  # the speed probe before the sweep
            return run
        assert sets >= 2

        def wrapped(i):
            seen.append(i % sets)
            return run(i)

        return wrapped

    monkeypatch.setattr(gemm_mod, "make_gemm_run", spy)
    ctx = _ctx()
    run_gemm(ctx, [GemmShape("t", 32, 32)], ms=(8,), dtypes=("fp32",))
    assert len(set(seen)) >= 2
    assert ctx.results.frame()["status"].tolist() == ["ok", "ok"]


def test_tf32_on_cpu_is_a_recorded_skip_and_sweep_goes_on():
    ctx = _ctx()
    run_gemm(ctx, [GemmShape("t", 32, 32)], ms=(4,), dtypes=("tf32", "fp32"))
    df = ctx.results.frame()
    skip = df[df["dtype"] == "tf32"]
    assert skip["status"].tolist() == ["skipped"] and "CUDA" in skip["reason"].iloc[0]
    assert skip[["m", "n", "k"]].iloc[0].tolist() == [4, 32, 32]
    assert (df[df["dtype"] == "fp32"]["status"] == "ok").sum() == 2


def test_matmul_mode_restores_tf32_flag():
    before = torch.backends.cuda.matmul.allow_tf32
    with matmul_mode("tf32"):
        assert torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.backends.cuda.matmul.allow_tf32 == before
    with matmul_mode("fp32"):
        assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_out_of_memory_is_a_recorded_skip(monkeypatch):
    def oom(device, dtype, m, n, k, sets):
        if m == 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return make_gemm_run(device, dtype, m, n, k, sets)

    monkeypatch.setattr(gemm_mod, "make_gemm_run", oom)
    ctx = _ctx()
    run_gemm(ctx, [GemmShape("t", 32, 32)], ms=(1, 16, 17), dtypes=("fp32",))
    df = ctx.results.frame()
    bad = df[df["m"] == 16]
    assert bad["status"].tolist() == ["skipped"]
    assert bad["reason"].iloc[0].startswith("out of memory")
    assert (df[df["m"] != 16]["status"] == "ok").sum() == 4  # the sweep went on


def test_case_that_does_not_fit_in_free_memory_is_skipped(monkeypatch):
    ctx = _ctx()
    monkeypatch.setattr(ctx, "current_free_bytes", lambda: 100 << 10)  # 100 KiB free
    run_memory(ctx, sizes_bytes=(4096, 1 << 20), ops=("copy",))
    df = ctx.results.frame()
    assert df[df["size_bytes"] == 4096]["status"].eq("ok").all()
    big = df[df["size_bytes"] == 1 << 20]
    assert big["status"].tolist() == ["skipped"] and "free memory" in big["reason"].iloc[0]


def test_case_over_time_budget_is_skipped_with_arithmetic(monkeypatch):
    monkeypatch.setattr(gemm_mod, "probe_gemm_rate", lambda device, dtype: 1e6)  # a 1 MFLOP/s device
    ctx = _ctx(case_budget_s=0.5)
    # m=64: 32 calls x 524288 flop / 1e6 flop/s = 16.8 s > 0.5 s; m=1: 0.26 s, runs.
    run_gemm(ctx, [GemmShape("t", 64, 64)], ms=(64, 1), dtypes=("fp32",))
    df = ctx.results.frame()
    assert df[df["m"] == 64]["status"].tolist() == ["skipped"]
    assert df[df["m"] == 1]["status"].tolist() == ["ok", "ok"]
    reason = df[df["m"] == 64]["reason"].iloc[0]
    assert "calls x" in reason and "per-case budget 0.5 s" in reason


def test_tiny_suite_real_run_schema_and_files(tmp_path):
    lines: list[str] = []
    rs = run_suite("cpu", preset=TINY, progress=lines.append)
    df = rs.frame()
    assert list(df.columns[: len(CORE_COLUMNS)]) == list(CORE_COLUMNS)
    ok = df[df["status"] == "ok"]
    assert set(ok["figure"]) == {"device", "eager"}
    assert set(df["op"]) == {"gemm", "copy", "read", "write", "launch_eager", "launch_sync", "sync", "graph_kernel",
                             "eager_dispatch", "attn_prefill", "attn_decode"}
    g = ok[(ok["op"] == "gemm") & (ok["figure"] == "device")]
    # 2 shapes: tiny.qkv x 3 M + square64 x 1 M, for fp32 and bf16 (tf32 skipped on CPU).
    assert len(g) == 8 and set(g["dtype"]) == {"fp32", "bf16"}
    row = g[(g["shape"] == "tiny.qkv") & (g["m"] == 17) & (g["dtype"] == "bf16")].iloc[0]
    assert row["flop"] == 2 * 17 * 96 * 64 and row["bytes"] == (17 * 64 + 64 * 96 + 17 * 96) * 2
    assert row["weight_bytes"] == 96 * 64 * 2
    assert row["flop_per_s"] == pytest.approx(row["flop"] / row["median_s"])
    assert row["weight_bytes_per_s"] == pytest.approx(row["weight_bytes"] / row["median_s"])
    assert (g["median_s"] > 0).all() and (g["n_samples"] >= 5).all()
    assert set(g["method"]) == {"host-queue"}
    copy = ok[(ok["op"] == "copy") & (ok["size_bytes"] == 65536)].iloc[0]
    assert copy["bytes"] == 2 * 65536
    attn = ok[ok["op"] == "attn_prefill"].iloc[0]
    assert bool(attn["causal"]) and attn["q_len"] == 32 and attn["kv_heads"] == 2
    assert df[df["op"] == "graph_kernel"]["status"].tolist() == ["skipped"]
    assert df[df["dtype"] == "tf32"]["status"].eq("skipped").all()
    assert any(line.startswith("[gemm 1/") for line in lines)
    assert any(line.startswith("[attention ") for line in lines)
    table = summary_table(rs)
    assert "TFLOP/s" in table and "GB/s" in table and "gemm" in table

    paths = rs.write(tmp_path, stem="kernels")
    back = read_results([paths["csv"]])
    assert len(back) == len(df) and "size_bytes" in back.columns
    doc = json.loads(paths["json"].read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    b0 = doc["benchmarks"][0]
    assert {"group", "name", "fullname", "params", "stats"} <= set(b0)
    assert {"min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "data"} <= set(b0["stats"])
    assert len(doc["benchmarks"]) == len(ok)
    env = json.loads(paths["env"].read_text())
    assert env["device"] == "cpu" and env["suite_preset"] == "tiny-test" and env["method_version"] >= 1
    if "parquet" in paths:
        assert len(pd.read_parquet(paths["parquet"])) == len(df)


def test_parse_list_names_the_choices():
    assert parse_list("gemm, memory", ("gemm", "memory"), "ops") == ["gemm", "memory"]
    assert parse_list(None, ("gemm",), "ops") is None
    with pytest.raises(ValueError, match="choose from gemm,memory"):
        parse_list("gemm,flops", ("gemm", "memory"), "ops")
    with pytest.raises(ValueError, match="unknown value"):
        run_suite("cpu", preset=TINY, ops="gemm", dtypes="int8", progress=None)


def test_cli_unknown_device_lists_available(capsys):
    rc = main(["bench", "kernels", "--device", "cuda:9", "--ops", "overhead"])
    assert rc == 2
    assert "available: cpu" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["--ops", "gemm,flops"], "gemm,memory,overhead,attention"),
    (["--dtypes", "int8"], "fp32,tf32,bf16,fp16,fp8_e4m3"),
    (["--quick", "--full"], "not allowed"),
    (["--bogus"], "unrecognized"),
])
def test_cli_bad_arguments_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "kernels", *argv])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_cli_writes_results(tmp_path, capsys):
    rc = main(["bench", "kernels", "--device", "cpu", "--ops", "overhead", "--quiet", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "launch_eager" in out and "us" in out
    df = pd.read_csv(tmp_path / "kernels.csv")
    assert set(df["op"]) == {"launch_eager", "launch_sync", "sync", "graph_kernel", "eager_dispatch"}
    ok = df[df["status"] == "ok"]
    assert (ok["median_s"] > 0).all() and (ok["median_s"] < 1e-2).all()
    # The layer's own eager mix: 41 work ops of 61 dispatched (the counts the torch-eager preset and the GPU
    # validation report for a dense decode step), each dearer on the host than a bare mul_.
    d = df[df["op"] == "eager_dispatch"].iloc[0]
    assert (d["work_ops"], d["dispatched_ops"]) == (41, 61)
    assert (tmp_path / "kernels.json").exists() and (tmp_path / "kernels.env.json").exists()


def test_attention_gqa_fallback_matches_native():
    from accelcal.kernels.attention import make_attention_run

    case = AttentionCase("prefill", 1, 4, 2, 8, 16, 16)
    torch.manual_seed(0)
    native = make_attention_run(CPU, case, "fp32", 1, "native")(0)
    torch.manual_seed(0)
    fallback = make_attention_run(CPU, case, "fp32", 1, "repeat_interleave")(0)
    assert native.shape == (1, 4, 16, 8)
    assert torch.allclose(native, fallback, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        make_attention_run(CPU, AttentionCase("decode", 1, 4, 3, 8, 1, 16), "fp32", 1, "native")


def test_graph_device_figures_of_inputs_under_twice_the_cache_say_so(monkeypatch):
    from accelcal.kernels import cases
    from accelcal.kernels.cases import graph_replay_note

    # 5 captured calls of a 4 MiB set re-read 20 MiB every replay: under twice a 50 MiB L2.
    note = graph_replay_note("graph", 5, 4 << 20, 50 << 20)
    assert "same 5 input sets" in note and "20.0 MiB" in note and "50 MiB cache" in note
    assert graph_replay_note("graph", 5, 32 << 20, 50 << 20) == ""  # 160 MiB: past twice the cache
    assert graph_replay_note("host-queue", 5, 4 << 20, 50 << 20) == ""  # a queue rotates every set
    assert graph_replay_note("graph", 5, None, 50 << 20) == ""

    ctx = _ctx()
    ctx.cache_bytes = 50 << 20
    real = cases.time_op

    def as_graph(run, device, cfg):
        import dataclasses
        return dataclasses.replace(real(run, device, cfg), device_method="graph")

    monkeypatch.setattr(cases, "time_op", as_graph)
    rows = ctx.measure("memory_read", "read_4MiB", {"size_bytes": 4 << 20}, "fp32",
                       lambda: make_memory_run(CPU, "read", 4 << 20, 2), flop=None, bytes_moved=4 << 20)
    assert rows and all("graph replays re-read the same" in r["reason"] for r in rows)


def test_result_files_keep_counts_and_shapes_whole(tmp_path):
    from accelcal.kernels.timing import Stats
    from accelcal.results import ResultSet

    rs = ResultSet(suite="kernels", env={"device_type": "cpu"})
    rs.add_stats(op="gemm", case="a", params={"m": 1}, dtype="fp32", figure="device", method="host",
                 stats=Stats.from_samples([1e-5] * 50))
    rs.add_skip(op="gemm", case="b", params={"m": 16}, dtype="tf32", reason="no tf32 path")
    rs.write(tmp_path, "k")
    text = (tmp_path / "k.csv").read_text()
    assert ",50," in text and "50.0" not in text  # a skipped row's empty count no longer turns the column float
    df = pd.read_csv(tmp_path / "k.csv")
    assert df["m"].tolist() == [1, 16] and df["median_s"].iloc[0] == pytest.approx(1e-5)
