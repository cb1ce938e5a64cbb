"""Collectives: pure unit tests (no process group): factors, sizes, groups, env validation, checks."""

import socket

import pytest
import torch

from accelcal.collectives import distenv
from accelcal.collectives.harness import ELSIZE, GroupSpec, parse_fault, plan_cases, plan_groups
from accelcal.collectives.ops import OPS, GroupCtx, get_op
from accelcal.collectives.ops.base import compare, pattern
from accelcal.collectives.options import SweepOptions
from accelcal.collectives.presets import pow2_sizes, sweep_sizes
from accelcal.collectives.worker import resolve_backend


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 16])
def test_busbw_factors_follow_nccl_tests(n):
    assert get_op("all_reduce").busbw_factor(n) == pytest.approx(2 * (n - 1) / n)
    for name in ("all_gather", "reduce_scatter", "all_to_all"):
        assert get_op(name).busbw_factor(n) == pytest.approx((n - 1) / n)
    for name in ("broadcast", "send_recv", "send_recv_pingpong"):
        assert get_op(name).busbw_factor(n) == 1.0
    assert get_op("all_reduce").busbw_factor(8) == 1.75


def test_every_op_has_an_explained_factor():
    assert set(OPS) == {"all_reduce", "all_gather", "reduce_scatter", "all_to_all", "broadcast", "send_recv",
                        "send_recv_pingpong"}
    for op in OPS.values():
        doc = __import__(type(op).__module__, fromlist=["x"]).__doc__
        assert "factor" in doc.lower() and doc.lstrip().splitlines()[0]


def test_non_divisible_sizes_are_rounded_and_bytes_recorded():
    ag = get_op("all_gather")
    count = ag.count_for(1000, n=3, elsize=4)  # 1000 // (4*3) = 83 per rank
    assert count == 249 and ag.bytes_moved(count, 4) == 996
    a2a = get_op("all_to_all")
    assert a2a.count_for(1001, 2, 2) == 500 and a2a.bytes_moved(500, 2) == 1000
    # Below one element per rank: one element each, the bytes really moved grow.
    assert get_op("reduce_scatter").count_for(8, n=4, elsize=4) == 4
    assert get_op("all_reduce").count_for(10, n=3, elsize=4) == 2  # per-rank buffer: no divisibility needed
    with pytest.raises(ValueError, match="size_bytes"):
        ag.count_for(0, 2, 4)


def test_plan_cases_records_real_bytes_and_pairs_only_for_p2p():
    groups = [GroupSpec((0, 1), "intra_node"), GroupSpec((0, 1, 2), "intra_node")]
    cases = plan_cases(("all_to_all", "send_recv"), ("fp32",), (1000,), groups)
    by = {(c.op, groups[c.group_id].size): c for c in cases}
    assert set(by) == {("all_to_all", 2), ("send_recv", 2), ("all_to_all", 3)}
    c = by[("all_to_all", 3)]
    assert (c.requested_bytes, c.size_bytes, c.count) == (1000, 996, 249)
    assert [c.index for c in cases] == list(range(len(cases)))


def test_plan_groups_scope_and_power_of_two_sizes():
    assert plan_groups(3, [0, 0, 0]) == [GroupSpec((0, 1), "intra_node"), GroupSpec((0, 1, 2), "intra_node")]
    two_nodes = plan_groups(2, [0, 1])
    assert two_nodes == [GroupSpec((0, 1), "inter_node")]
    g16 = plan_groups(16, [r // 8 for r in range(16)])
    shapes = [(g.size, g.scope) for g in g16]
    assert shapes == [(2, "intra_node"), (2, "inter_node"), (4, "intra_node"), (4, "inter_node"),
                      (8, "intra_node"), (8, "inter_node"), (16, "inter_node")]
    assert g16[1].ranks == (0, 8)
    single = plan_groups(8, [0] * 8)
    assert [g.size for g in single] == [2, 4, 8] and all(g.scope == "intra_node" for g in single)


def _env(**kw):
    base = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    base.update({k: v for k, v in kw.items() if v is not None})
    for k, v in kw.items():
        if v is None:
            base.pop(k)
    return base


def test_distenv_reads_torchrun_and_slurm_layouts():
    d = distenv.from_environ(_env(RANK="3", WORLD_SIZE="4", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", GROUP_RANK="1"))
    assert (d.rank, d.world_size, d.local_rank, d.node_rank, d.nodes) == (3, 4, 1, 1, 2)
    s = distenv.from_environ({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NNODES": "2",
                              "SLURM_NODEID": "1", "MASTER_ADDR": "node1", "MASTER_PORT": "29500"})
    assert (s.rank, s.world_size, s.local_world_size, s.node_rank, s.nodes, s.launcher) == (5, 8, 4, 1, 2, "slurm")


@pytest.mark.parametrize("env, pattern_", [
    (_env(RANK="2"), r"RANK=2 is out of range for WORLD_SIZE=2 \(valid ranks are 0\.\.1\)"),
    (_env(LOCAL_RANK=None), "LOCAL_RANK is not set"),
    (_env(LOCAL_RANK="2"), r"LOCAL_RANK=2 is out of range for LOCAL_WORLD_SIZE=2"),
    (_env(LOCAL_RANK="x"), "LOCAL_RANK='x' is not an integer"),
    (_env(WORLD_SIZE="3", LOCAL_WORLD_SIZE="2"), r"WORLD_SIZE=3 is not a multiple of LOCAL_WORLD_SIZE=2 \(3 % 2 = 1\)"),
    (_env(MASTER_PORT="70000"), "MASTER_PORT=70000 is not a TCP port"),
    (_env(MASTER_ADDR=None), "MASTER_ADDR is not set"),
    ({}, "RANK is not set"),
])
def test_distenv_errors_name_the_variable(env, pattern_):
    with pytest.raises(distenv.DistEnvError, match=pattern_):
        distenv.from_environ(env)


def test_distenv_checks_local_rank_against_devices():
    with pytest.raises(distenv.DistEnvError, match=r"LOCAL_RANK=1 needs device 1, but only 1 device"):
        distenv.from_environ(_env(LOCAL_RANK="1"), device_count=1)


def test_busy_port_is_a_named_error_and_loopback_bind():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        assert distenv.port_in_use(port)
        with pytest.raises(distenv.DistEnvError, match=rf"port {port} \(--port, or MASTER_PORT\) is already in use"):
            distenv.bind_listen_socket("127.0.0.1", port)
    s = distenv.bind_listen_socket("localhost", 0)
    try:
        assert s.getsockname()[0] == "127.0.0.1"  # single-node rendezvous never listens on other interfaces
    finally:
        s.close()


def test_pattern_check_catches_wrong_values():
    exp = pattern(0, 0, 6) + pattern(1, 0, 6)
    assert compare(exp.clone(), exp, torch.float32, "x") is None
    assert compare(exp.to(torch.bfloat16), exp, torch.bfloat16, "x") is None
    bad = exp.clone()
    bad[4] += 1
    msg = compare(bad, exp, torch.float32, "all_reduce sum")
    assert "element 4" in msg and "1 of 6" in msg
    # Chunks from different ranks differ, so a gather in the wrong order is caught.
    assert not torch.equal(pattern(0, 0, 4), pattern(1, 0, 4))
    assert compare(torch.full((3,), float("nan")), torch.ones(3), torch.float16, "y") is not None


def test_op_check_on_a_fake_single_rank_group():
    # A 1-rank "group" needs no process group for the check logic: build, skip run, check.
    g = GroupCtx(None, (0,), 0)
    op = get_op("all_gather")
    bufs = op.make_buffers(4, g, torch.float32, torch.device("cpu"), "pattern")
    bufs["out"].copy_(bufs["inp"])
    assert op.check(bufs, g, 4, torch.float32) is None
    bufs["out"].zero_()
    assert "all_gather output" in op.check(bufs, g, 4, torch.float32)


def test_presets_options_and_backend_parsing():
    assert pow2_sizes(8, 64, 2) == (8, 16, 32, 64)
    assert sweep_sizes("quick", "cpu")[-1] <= 4 << 20
    assert sweep_sizes("quick", "cuda")[-1] == 256 << 20 and sweep_sizes("quick", "cuda")[0] == 8
    with pytest.raises(ValueError, match="min-bytes"):
        sweep_sizes("quick", "cpu", min_bytes=100, max_bytes=10)
    with pytest.raises(ValueError, match=r"unknown ops \['all_reduce_x'\]"):
        SweepOptions(ops=("all_reduce_x",))
    with pytest.raises(ValueError, match="unknown collectives preset"):
        SweepOptions(preset="fast")
    # the messages name the options a user typed, not only the fields
    with pytest.raises(ValueError, match=r"--pg-timeout \(pg_timeout_s\) must be > 0 seconds, got 0"):
        SweepOptions(pg_timeout_s=0)
    with pytest.raises(ValueError, match=r"--timeout \(deadline_s, the whole sweep's deadline\) must be > 0"):
        SweepOptions(deadline_s=0.0)
    o = SweepOptions(sizes_bytes=(8, 1024), ops=("all_reduce",), dtypes=("bf16",), pg_timeout_s=5)
    assert SweepOptions.from_argv(o.to_argv()) == SweepOptions(**{**o.__dict__, "deadline_s": o.deadline()})
    assert resolve_backend("cpu:gloo,cuda:nccl", "cpu") == "gloo"
    assert resolve_backend(None, "cpu") == "gloo"
    with pytest.raises(ValueError, match="names no backend for device type 'xpu'"):
        resolve_backend("cpu:gloo", "xpu")


def test_fault_spec_parsing():
    f = parse_fault("sleep:rank1:case3:2.5")
    assert (f.kind, f.rank, f.case, f.seconds) == ("sleep", 1, 3, 2.5)
    assert parse_fault("") is None
    with pytest.raises(ValueError, match="ACCELCAL_FAULT"):
        parse_fault("explode:rank1:case3")


def test_elsize_table():
    assert ELSIZE == {"fp32": 4, "bf16": 2, "fp16": 2, "fp8_e4m3": 1}


def test_bench_collectives_help_lists_the_ops_it_measures(capsys):
    from accelcal.cli import main
    from accelcal.collectives.ops import OPS

    with pytest.raises(SystemExit) as done:
        main(["bench", "collectives", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help text
    assert done.value.code == 0 and all(name in out for name in OPS)
    # the torch-free list the help and the sweep read is the harness's own
    from accelcal.collectives.presets import OPS as NAMES
    assert tuple(OPS) == NAMES
