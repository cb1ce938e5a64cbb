"""Collectives end to end on gloo: the correctness matrix at world 2 and 3 (one launch each)."""

import json
import time

import pandas as pd
import pytest

from accelcal.cli import main as accelcal_main
from accelcal.collectives.launch import run_sweep
from accelcal.results import read_results

SIX = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv", "send_recv_pingpong")
FACTOR = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
          "reduce_scatter": lambda n: (n - 1) / n, "all_to_all": lambda n: (n - 1) / n,
          "broadcast": lambda n: 1.0, "send_recv": lambda n: 1.0, "send_recv_pingpong": lambda n: 1.0}
# gloo rejects float8 for every collective that interprets the data; p2p just moves bytes.
GLOO_NO_FP8 = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast")


def _check_matrix(df: pd.DataFrame, world: int) -> None:
    assert set(df["suite"]) == {"collectives"} and set(df["figure"].dropna()) <= {"max_over_ranks", ""}
    main = df[df["dtype"].isin(["fp32", "bf16", "fp16"])]
    bad = main[main["status"] != "ok"]
    assert bad.empty, bad[["op", "case", "status", "reason"]].to_string()
    for op in SIX:
        for dt in ("fp32", "bf16", "fp16"):
            rows = main[(main["op"] == op) & (main["dtype"] == dt)]
            assert set(rows["mode"]) == {"pipelined", "blocking"}, (op, dt)
    ok = df[df["status"] == "ok"]
    assert (ok["figure"] == "max_over_ranks").all()
    assert (ok["median_s"] > 0).all() and (ok["n_samples"] >= 3).all()
    for _, r in ok.iterrows():
        n = r["group_size"]
        assert r["busbw_factor"] == pytest.approx(FACTOR[r["op"]](n))
        assert r["algbw_bytes_per_s"] == pytest.approx(r["size_bytes"] / r["median_s"])
        assert r["busbw_bytes_per_s"] == pytest.approx(r["algbw_bytes_per_s"] * r["busbw_factor"])
        assert r["bytes"] == r["size_bytes"] and r["world_size"] == world and r["nodes"] == 1
        assert r["scope"] == "intra_node" and r["backend"] == "gloo"
    assert set(ok[ok["op"].str.startswith("send_recv")]["group_size"]) == {2}
    assert set(ok[ok["op"] == "all_reduce"]["group_size"]) == ({2} if world == 2 else {2, 3})
    fp8 = df[df["dtype"] == "fp8_e4m3"]
    for op in GLOO_NO_FP8:
        rows = fp8[fp8["op"] == op]
        assert len(rows) and (rows["status"] == "skipped").all(), op
        assert rows["reason"].str.contains("gloo does not support").all()


def test_matrix_world2_with_nondivisible_sizes(tmp_path):
    lines = []
    t0 = time.monotonic()
    df = run_sweep(2, preset="smoke", out_dir=tmp_path, sizes=[8, 1001, 4096], pg_timeout_s=20, timeout_s=90,
                   progress=lines.append)
    assert time.monotonic() - t0 < 90
    _check_matrix(df, 2)
    # 1001 B rounds down to what divides: fp32 all_gather moves 2 x 125 x 4 = 1000 B.
    ag = df[(df["op"] == "all_gather") & (df["dtype"] == "fp32") & (df["requested_bytes"] == 1001)]
    assert set(ag["size_bytes"]) == {1000} and set(ag["count"]) == {250}
    # Progress is shown, and the files are exactly what was returned.
    assert any(l.startswith("[1/") for l in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collectives.csv", "collectives.env.json",
                                                          "collectives.json", "collectives.parquet"]
    assert len(read_results([tmp_path / "collectives.csv"])) == len(df)
    # The "wrote" line names the final files (which exist), never the deleted staging folder.
    wrote = [l for l in lines if "wrote" in l]
    assert len(wrote) == 1 and "staging" not in wrote[0], wrote
    assert str(tmp_path / "collectives.csv") in wrote[0] and str(tmp_path / "collectives.env.json") in wrote[0]
    env = json.loads((tmp_path / "collectives.env.json").read_text())
    assert (env["backend"], env["world_size"], env["nodes"], env["local_world_size"]) == ("gloo", 2, 1, 2)
    # provenance: the launching process's command, not the internal worker's or its deleted staging folder
    assert "staging" not in env["command"] and "worker" not in env["command"], env["command"]
    bench = json.loads((tmp_path / "collectives.json").read_text())
    assert bench["benchmarks"] and all(len(b["stats"]["data"]) == b["stats"]["rounds"] for b in bench["benchmarks"])


def test_matrix_world3_through_the_cli(tmp_path, capsys):
    rc = accelcal_main(["bench", "collectives", "--nproc", "3", "--preset", "smoke", "--sizes", "8,1000",
                        "--out", str(tmp_path), "--pg-timeout", "20", "--timeout", "120"])
    out = capsys.readouterr().out
    assert rc == 0, out
    df = read_results([tmp_path / "collectives.csv"])
    _check_matrix(df, 3)
    # 1000 B over 3 ranks: all_to_all fp32 moves 3 x 83 x 4 = 996 B, and says so.
    a2a = df[(df["op"] == "all_to_all") & (df["dtype"] == "fp32") & (df["group_size"] == 3) & (df["requested_bytes"] == 1000)]
    assert set(a2a["size_bytes"]) == {996} and set(a2a["count"]) == {249}
    assert "records" in out


def test_world1_runs_every_group_op_and_no_p2p(tmp_path):
    # World size 1 is the path the nccl single-GPU run takes (in-memory store, no port).
    df = run_sweep(1, preset="smoke", out_dir=tmp_path, sizes=[4096], dtypes=["fp32"], pg_timeout_s=20,
                   timeout_s=60, progress=None)
    ok = df[df["status"] == "ok"]
    assert set(ok["op"]) == {"all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast"}
    assert set(ok["group_size"]) == {1} and len(ok) == 10
    ar = ok[ok["op"] == "all_reduce"]
    assert (ar["busbw_factor"] == 0).all() and (ar["busbw_bytes_per_s"] == 0).all()
    assert (ok["algbw_bytes_per_s"] > 0).all()


def test_cli_inside_torchrun_runs_in_process(tmp_path):
    import os
    import subprocess
    import sys

    from accelcal.collectives.distenv import free_port

    # torchrun as this interpreter's module: a `torchrun` on PATH may belong to another Python (a venv made
    # with system site packages has none of its own), which cannot import accelcal.
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*torchrun, "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "accelcal", "bench", "collectives", "--preset", "smoke",
           "--sizes", "8", "--ops", "all_reduce,send_recv", "--dtypes", "fp32", "--out", str(tmp_path),
           "--pg-timeout", "20", "--timeout", "60"]
    env = {k: v for k, v in os.environ.items() if k != "ACCELCAL_FAULT"}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("records (4 ok)") == 1  # only rank 0 reports
    df = read_results([tmp_path / "collectives.csv"])
    assert set(df["status"]) == {"ok"} and set(df["world_size"]) == {2} and set(df["op"]) == {"all_reduce", "send_recv"}
