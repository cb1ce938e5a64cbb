"""Engine all-reduce kernels: a published latency table imported with its kernel name, kernel-aware
collective queries, and engine presets routing their tensor-parallel all-reduces to their own kernel."""

from __future__ import annotations

import pytest

from accelcal.calibrate.compose import compose
from accelcal.calibrate.nccl_import import import_profile
from accelcal.calibrate.profile import Profile
from accelcal.collectives.nccl_tests import NcclTestsError
from accelcal.models import ModelConfig
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.step_cost import StepCoster, replica_parallelism

from planner_profiles import h100_like

HEADER = "kernel,op,group_size,dtype,size_bytes,time_s\n"


def _table(tmp_path, body: str, name="table.csv"):
    p = tmp_path / name
    p.write_text("# a published table, transcribed\n" + HEADER + body)
    return p


def test_latency_table_imports_kernel_entries_that_only_kernel_queries_see(tmp_path):
    # latency 5 us + S / 100 GB/s, exactly: the fit must recover it
    rows = "".join(f"my_ar,all_reduce,4,bf16,{s},{5e-6 + s / 100e9!r}\n" for s in (2048, 65536, 1 << 20, 4 << 20))
    rows += "".join(f",all_reduce,4,bf16,{s},{25e-6 + s / 200e9!r}\n" for s in (2048, 65536, 1 << 20, 4 << 20, 64 << 20))
    prof = import_profile([str(_table(tmp_path, rows))], name="t", citations=["https://example.org/table"],
                          out=str(tmp_path / "t.yaml"), fabric="nvswitch")
    back = Profile.load(tmp_path / "t.yaml")
    assert back.identity.source == "published" and {c.kernel for c in back.collectives} == {"my_ar", None}
    mine = back.collective_time_s("all_reduce", 1 << 20, 4, kernel="my_ar")
    assert mine.time_s == pytest.approx(5e-6 + (1 << 20) / 100e9, rel=0.02) and "my_ar kernel" in mine.detail
    lib = back.collective_time_s("all_reduce", 1 << 20, 4)
    assert lib.time_s == pytest.approx(25e-6 + (1 << 20) / 200e9, rel=0.02)
    other = back.collective_time_s("all_reduce", 1 << 20, 4, kernel="unknown_ar")
    assert other.time_s == lib.time_s and "kernel-not-measured" in other.flags
    assert prof.to_dict()["collectives"] == back.to_dict()["collectives"]


@pytest.mark.parametrize("body, message", [
    ("My-AR,all_reduce,4,bf16,2048,1e-5\n", "lower-case letters"),
    ("x,all_squeeze,4,bf16,2048,1e-5\n", "op 'all_squeeze'"),
    ("x,all_reduce,4,int3,2048,1e-5\n", "dtype 'int3'"),
    ("x,all_reduce,four,bf16,2048,1e-5\n", "must be integers"),
    ("x,all_reduce,4,bf16,2048,-1\n", "time_s > 0"),
    ("x,all_reduce,4,bf16,2048\n", "expected 6 columns"),
    ("", "no rows"),
])
def test_bad_latency_table_names_file_and_line(tmp_path, body, message):
    from accelcal.collectives.latency_table import read_latency_table

    path = _table(tmp_path, body)
    with pytest.raises(NcclTestsError, match=message) as exc:
        read_latency_table(str(path))
    assert str(path) in str(exc.value)


def _coster(engine, ic):
    prof = compose(Profile.from_dict(h100_like()), ic)
    model = ModelConfig.from_name("qwen3-32b")
    return StepCoster(prof, model, replica_parallelism(8, 1, 1, 8), engine)


def test_engine_routes_tp_all_reduce_to_its_kernel_up_to_its_limit():
    ic = Profile.load("profiles/interconnect/h100-nvswitch-4of8.yaml")
    nccl = EnginePreset.from_name("vllm").with_overrides({"tp_all_reduce_kernel": ""}, "test")
    own = EnginePreset.from_name("vllm")
    assert own.tp_all_reduce_kernel == "vllm_custom_ar" and own.sources["tp_all_reduce_kernel"]
    hidden = ModelConfig.from_name("qwen3-32b").hidden_size
    small = 16 * hidden * 2  # a decode step of 16 sequences: one bf16 activation row each
    a = _coster(nccl, ic)._costers[True].collective("all_reduce", small, 8, "intra_node")
    b = _coster(own, ic)._costers[True].collective("all_reduce", small, 8, "intra_node")
    assert b.time_s == pytest.approx(ic.collective_time_s("all_reduce", small, 8, kernel="vllm_custom_ar").time_s)
    assert a.time_s == pytest.approx(ic.collective_time_s("all_reduce", small, 8).time_s) and b.time_s < a.time_s
    # a prefill's all-reduce above the kernel's 8 MiB goes to NCCL; TensorRT-LLM also stops at 128 tokens
    big = 4096 * hidden * 2
    assert _coster(own, ic)._costers[False].collective("all_reduce", big, 8, "intra_node").time_s == pytest.approx(
        ic.collective_time_s("all_reduce", big, 8).time_s)
    trt = _coster(EnginePreset.from_name("trtllm"), ic)._costers[True]
    assert trt.ar_kernel == "trtllm_custom_ar" and trt.ar_kernel_max_bytes == 128 * hidden * 2
    # the decode step gets cheaper by the difference, nothing else changes
    da, db = _coster(nccl, ic).breakdown(16, 1024.0), _coster(own, ic).breakdown(16, 1024.0)
    assert db["communication"] < da["communication"] and db["memory"] == da["memory"]


def test_a_latency_table_with_a_wrong_header_says_so(tmp_path):
    p = tmp_path / "cols.csv"
    p.write_text("# transcribed\nkernel,op,group_size,size_bytes,time_s\nx,all_reduce,4,2048,1e-5\n")
    with pytest.raises(NcclTestsError, match=r"cols.csv:2: a latency table's first line .* in this order"):
        import_profile([str(p)], name="t")


def test_predict_says_which_all_reduce_and_when_the_kernel_is_missing():
    ic = Profile.load("profiles/interconnect/h100-nvswitch-4of8.yaml")
    pcie = Profile.load("profiles/interconnect/pcie-rtx4090-8.yaml")
    own = EnginePreset.from_name("sglang")
    assert any("sglang's own kernel vllm_custom_ar" in n for n in _coster(own, ic).notes)
    missing = _coster(own, pcie).notes
    assert any("kernel-not-measured" in n and "tp_all_reduce_kernel=" in n for n in missing)
    # `tp_all_reduce_kernel=` (nothing after '=') is the collective library, and says nothing
    from accelcal.planner.serving.cli import parse_engine_args

    nccl = own.with_overrides(parse_engine_args(["tp_all_reduce_kernel="]), "test")
    assert nccl.tp_all_reduce_kernel == "" and not any("all-reduce" in n for n in _coster(nccl, ic).notes)


def test_a_decode_all_reduce_below_the_measured_sizes_is_flagged():
    # the 8-rank nccl-tests log behind h100-nvswitch-8 starts at 128 MiB: its latency is a large-message intercept
    big_only = Profile.load("profiles/interconnect/h100-nvswitch-8.yaml")
    nccl = EnginePreset.from_name("vllm").with_overrides({"tp_all_reduce_kernel": ""}, "test")
    coster = _coster(nccl, big_only)
    # 8192 x below the smallest message measured (SMALL_MESSAGE_WARN_FACTOR = 64): a warning, not a note
    flagged = [n for n in coster.warnings if "one decode token" in n]
    assert len(flagged) == 1 and "extrapolated" in flagged[0] and "outside the measured range" in flagged[0], coster.warnings
    assert not any("one decode token" in n for n in coster.notes)
    # the 4-of-8 profile measured small messages: nothing to flag
    small = _coster(nccl, Profile.load("profiles/interconnect/h100-nvswitch-4of8.yaml"))
    assert not any("one decode token" in n for n in small.notes + small.warnings)


def test_exports_describe_the_fabric_from_library_entries_only():
    import copy

    from accelcal.calibrate.export import export_configurator
    from accelcal.calibrate.export_aiconfigurator import _nccl_rows

    ic = Profile.load("profiles/interconnect/h100-nvswitch-4of8.yaml")
    plain = copy.deepcopy(ic)
    plain.collectives = [c for c in plain.collectives if c.kernel is None]
    assert len(plain.collectives) < len(ic.collectives)
    full, lib = compose(Profile.from_dict(h100_like()), ic), compose(Profile.from_dict(h100_like()), plain)
    assert export_configurator(full) == export_configurator(lib)
    assert _nccl_rows(full) == _nccl_rows(lib)


def test_engine_kernel_queries_keep_the_costers_checks():
    # An interconnect without the engine's kernel and without a latency for its library all-reduce: the kernel
    # path falls back to the library's entry and goes through the Coster's own checks (here: no 0 s latency).
    import copy

    from accelcal.calibrate.profile import MissingMeasurement

    ic = copy.deepcopy(Profile.load("profiles/interconnect/h100-nvswitch-4of8.yaml"))
    ic.collectives = [c for c in ic.collectives if c.kernel is None]
    for c in ic.collectives:
        for p in c.pieces:
            p.latency_s = None
    coster = _coster(EnginePreset.from_name("vllm"), ic)._costers[True]
    coster.assume_zero_latency = False  # as the planner's Coster runs without --assume-zero-latency
    with pytest.raises(MissingMeasurement, match="refusing to cost it at 0 s"):
        coster.collective("all_reduce", 16 * 5120 * 2, 8, "intra_node")
