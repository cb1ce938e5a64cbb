"""Collectives under faults and bad input: bounded time, a message naming the cause, no result file."""

import os
import socket
import subprocess
import sys
import time

import pytest

from accelcal.collectives.distenv import free_port
from accelcal.collectives.launch import SweepError, run_sweep

SMALL = dict(preset="smoke", sizes=[8, 1000], ops=["all_reduce", "all_gather"], dtypes=["fp32", "bf16"], progress=None)
# Cases run in order all_reduce fp32 8, fp32 1000, bf16 8, bf16 1000, all_gather ...: case 3 is mid-sweep.


def _no_output(out):
    assert not out.exists() or not [p.name for p in out.iterdir()], list(out.iterdir())


def _sweep_fails(monkeypatch, tmp_path, fault, bound_s, **kw):
    monkeypatch.setenv("ACCELCAL_FAULT", fault)
    out = tmp_path / "out"
    t0 = time.monotonic()
    with pytest.raises(SweepError) as ei:
        run_sweep(2, out_dir=out, **{**SMALL, **kw})
    elapsed = time.monotonic() - t0
    assert elapsed < bound_s, f"took {elapsed:.1f} s"
    _no_output(out)
    return str(ei.value)


def test_rank_killed_mid_sweep(monkeypatch, tmp_path):
    msg = _sweep_fails(monkeypatch, tmp_path, "kill:rank1:case3", 30, pg_timeout_s=10, timeout_s=60)
    assert "First failure: rank 1 died: killed by signal SIGKILL" in msg
    assert "rank 0 exited with code 1: lost the connection to another rank" in msg and "case 3" in msg


def test_rank_sleeping_past_the_timeout(monkeypatch, tmp_path):
    msg = _sweep_fails(monkeypatch, tmp_path, "sleep:rank1:case3", 30, pg_timeout_s=3, timeout_s=60)
    assert "First failure: rank 0 exited with code 1: timed out after the 3 s process-group timeout" in msg
    assert "pre-flight of case 3" in msg and "rank 1: stopped by the launcher" in msg


def test_hard_deadline_kills_every_rank(monkeypatch, tmp_path):
    # The process-group timeout is longer than the deadline: only the outer deadline can end this.
    msg = _sweep_fails(monkeypatch, tmp_path, "sleep:rank1:case1", 25, pg_timeout_s=120, timeout_s=12)
    assert "hard deadline of 12 s passed with rank(s) [0, 1] still running" in msg


def test_mismatched_size_on_one_rank(monkeypatch, tmp_path):
    msg = _sweep_fails(monkeypatch, tmp_path, "mismatch:rank1:case3", 30, pg_timeout_s=10, timeout_s=60)
    assert "case mismatch before case 3 (all_reduce bf16 1000 B): ranks disagree on count: rank 0=500, rank 1=1001" in msg
    # Every rank names it, not just one.
    assert msg.count("case mismatch") == 2


def test_wrong_result_is_a_failed_row_not_a_number(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCELCAL_FAULT", "corrupt:rank1:case2")
    df = run_sweep(2, out_dir=tmp_path, pg_timeout_s=10, timeout_s=60, **SMALL)
    bad = df[df["status"] == "failed"]
    assert set(bad["op"]) == {"all_reduce"} and set(bad["dtype"]) == {"bf16"} and set(bad["requested_bytes"]) == {8}
    assert bad["median_s"].isna().all() and bad["reason"].str.contains("wrong result on rank").all()
    assert (df[df["status"] != "failed"]["status"] == "ok").all()


def test_port_already_taken_launcher(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        with pytest.raises(ValueError, match=rf"port {port} \(--port, or MASTER_PORT\) is already in use"):
            run_sweep(2, out_dir=tmp_path / "out", master_port=port, **SMALL)
    assert not (tmp_path / "out").exists()  # refused before the --out folder is made, not even an empty one


def test_a_sweep_that_skips_every_case_leaves_an_earlier_run_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "collectives.csv").write_text("earlier\n")
    # gloo has no fp8 all_reduce: every case is a recorded skip, nothing is measured
    with pytest.raises(SweepError, match=r"nothing measured: 2 case\(s\), every one skipped \(gloo does not support "
                                         r"all_reduce on fp8_e4m3.*; .*out is left as it was"):
        run_sweep(2, out_dir=out, preset="smoke", sizes=[8], ops=["all_reduce"], dtypes=["fp8_e4m3"], progress=None)
    assert (out / "collectives.csv").read_text() == "earlier\n" and [p.name for p in out.iterdir()] == ["collectives.csv"]


def _worker(env_over, tmp_path, timeout=60):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                          "MASTER_ADDR", "MASTER_PORT", "ACCELCAL_FAULT")}
    env.update(env_over)
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "accelcal.collectives.worker", "--preset", "smoke", "--sizes", "8",
                        "--ops", "all_reduce", "--dtypes", "fp32", "--out", str(tmp_path / "out"), "--pg-timeout", "5"],
                       env=env, capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


def test_port_already_taken_worker_rank0(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        p, dt = _worker({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                         "MASTER_PORT": str(port)}, tmp_path)
    assert p.returncode == 2 and f"port {port} (--port, or MASTER_PORT) is already in use" in p.stderr and dt < 30
    _no_output(tmp_path / "out")


@pytest.mark.parametrize("env, expect", [
    ({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}, "RANK=2 is out of range for WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "LOCAL_RANK is not set"),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "5", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=5 is out of range"),
])
def test_bad_rank_environment_fails_fast(tmp_path, env, expect):
    p, dt = _worker({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), **env}, tmp_path)
    assert p.returncode == 2 and expect in p.stderr and dt < 20, p.stderr


def test_two_torchrun_agents_as_two_nodes(tmp_path):
    # torchrun as this interpreter's module: a `torchrun` on PATH may belong to another Python (a venv made
    # with system site packages has none of its own), which cannot import accelcal.
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    port = free_port()
    out = tmp_path / "out"
    cmd = [*torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "accelcal.collectives.worker", "--preset", "smoke",
           "--sizes", "8,4096", "--ops", "all_reduce,all_to_all,send_recv", "--dtypes", "fp32",
           "--out", str(out), "--pg-timeout", "20", "--deadline", "90"]
    env = {k: v for k, v in os.environ.items() if k != "ACCELCAL_FAULT"}
    agents = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        outs = [a.communicate(timeout=120)[0] for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
    assert [a.returncode for a in agents] == [0, 0], outs
    from accelcal.results import read_results
    import json

    df = read_results([out / "collectives.csv"])
    ok = df[df["status"] == "ok"]
    assert len(ok) == 2 * 3 * 2  # sizes x ops x modes
    assert set(ok["scope"]) == {"inter_node"} and set(ok["nodes"]) == {2} and set(ok["world_size"]) == {2}
    env_json = json.loads((out / "collectives.env.json").read_text())
    assert (env_json["nodes"], env_json["local_world_size"], env_json["launcher"]) == (2, 1, "torchrun")
