"""Grouped expert GEMMs: measured by the kernel suite, kept in the profile, and the ratio to the stacked-GEMM
estimate the planner costs a MoE layer's grouped kernel with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from accelcal.calibrate.profile import Profile
from accelcal.kernels.cases import SweepContext
from accelcal.kernels.device import resolve_device
from accelcal.kernels.grouped_gemm import make_grouped_run, run_grouped_gemm
from accelcal.kernels.shapes import GemmShape, GroupedGemmCase, grouped_cases, suite_preset
from accelcal.results import ResultSet

ROOT = Path(__file__).resolve().parents[1]
H100 = ROOT / "profiles" / "nvidia-h100.yaml"


def test_a_grouped_run_multiplies_each_experts_tokens_by_its_own_weight():
    """Each expert's m rows times its own weight (nn.Linear layout, [N, K]), checked against per-expert matmuls of
    the very inputs the run drew (the same seed draws them again); n != k, so an untransposed weight fails."""
    case = GroupedGemmCase(3, 4, GemmShape("t", 8, 16))
    torch.manual_seed(0)
    run = make_grouped_run(resolve_device("cpu"), case, sets=2)
    torch.manual_seed(0)
    xs, ws = torch.randn(12, 16, dtype=torch.bfloat16), torch.randn(3, 8, 16, dtype=torch.bfloat16)
    ref = torch.cat([xs[4 * e:4 * e + 4].float() @ ws[e].float().t() for e in range(3)])
    for i in (0, 1):  # both rotated sets hold the same values at their own addresses
        y = run(i).float()
        assert tuple(y.shape) == (12, 8) and torch.allclose(y, ref, rtol=2e-2, atol=2e-1)


def test_a_gpu_without_a_grouped_kernel_is_a_recorded_reason(monkeypatch):
    from accelcal.kernels import grouped_gemm

    class Dev:
        type = "cuda"

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _d=None: (8, 0))
    monkeypatch.setattr(torch.version, "hip", None, raising=False)
    assert "compute capability 8.x torch._grouped_mm loops over per-expert matmuls" in \
        grouped_gemm.loop_fallback_reason(Dev())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _d=None: (9, 0))
    assert grouped_gemm.loop_fallback_reason(Dev()) == ""
    assert grouped_gemm.loop_fallback_reason(resolve_device("cpu")) == ""


def test_the_sweep_records_flop_bytes_and_skips_other_dtypes():
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"), timing="quick", progress=None)
    cases = grouped_cases(("qwen3-30b-a3b",), (4,), (1, 8), divisor=8)
    run_grouped_gemm(ctx, cases, dtypes=("bf16", "fp32"))
    df = ctx.results.frame()
    ok = df[(df["figure"] == "device") & (df["status"] == "ok")]
    assert len(ok) == len(cases) == 4
    r = ok.iloc[0]
    e, m, n, k = int(r["experts"]), int(r["m"]), int(r["n"]), int(r["k"])
    assert (e, n, k) == (4, 1536 // 8, 2048 // 8) and r["flop"] == e * 2 * m * n * k
    assert r["bytes"] == e * (m * k + n * k + m * n) * 2
    skipped = df[df["status"] != "ok"]
    assert len(skipped) == 4 and skipped["reason"].str.contains(
        "fp32: grouped GEMMs are timed in \\['bf16'\\] only").all()


def test_presets_time_moe_expert_shapes_on_accelerators_and_cpus():
    gpu = suite_preset("quick", "cuda").grouped_cases
    assert {c.shape.name for c in gpu} >= {"qwen3-30b-a3b.expert_gate_up", "deepseek-v3.expert_down"}
    assert {c.m for c in gpu} == {1, 8, 32, 128, 512} and {c.experts for c in gpu} == {8, 32}
    assert suite_preset("quick", "cpu").grouped_cases and not suite_preset("smoke", "cpu").grouped_cases


def _with_grouped(ratio_by_m: dict[int, float]) -> Profile:
    p = Profile.load(str(H100))
    e = p.compute["bf16"]
    e.grouped_points = [[8, m, 1536, 2048, r * p.gemm_time_s(m, 8 * 1536, 2048, "bf16").time_s]
                        for m, r in ratio_by_m.items()]
    return p


def test_the_ratio_is_measured_over_the_stacked_estimate_interpolated_in_log_m_and_held_at_the_ends():
    p = _with_grouped({1: 2.0, 64: 3.0})
    e = p.compute["bf16"]
    assert e.grouped_ratio(1, 2, 2) == pytest.approx(2.0) and e.grouped_ratio(64, 2, 2) == pytest.approx(3.0)
    assert e.grouped_ratio(8, 2, 2) == pytest.approx(2.5)  # log 8 is halfway between log 1 and log 64
    assert e.grouped_ratio(4096, 2, 2) == pytest.approx(3.0)
    stacked = p.gemm_time_s(8, 16 * 1536, 2048, "bf16").time_s
    est = p.grouped_gemm_time_s(16, 8, 1536, 2048, "bf16")
    assert est.time_s == pytest.approx(2.5 * stacked) and est.source == "compute.bf16.grouped_points"
    assert "x 2.5, the measured grouped / stacked ratio at 8 tokens per expert" in est.detail
    held = p.grouped_gemm_time_s(16, 4096, 1536, 2048, "bf16")
    assert held.extrapolated and "held at the measured range's end, 1..64" in held.detail
    assert "(measured with up to 8 experts in a call)" in held.detail  # 16 experts asked, 8 measured
    inside = p.grouped_gemm_time_s(8, 8, 1536, 2048, "bf16")
    assert "experts in a call" not in inside.detail and "held at" not in inside.detail
    plain = Profile.load(str(H100))
    assert plain.grouped_gemm_time_s(16, 8, 1536, 2048, "bf16").time_s == stacked  # none measured: as before


def test_grouped_points_survive_a_profile_round_trip_and_bad_ones_are_named(tmp_path):
    import yaml

    p = _with_grouped({1: 2.0, 64: 3.0})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(p.to_dict()))
    back = Profile.load(str(path))
    assert back.compute["bf16"].grouped_points == p.compute["bf16"].grouped_points
    d = p.to_dict()
    d["compute"]["bf16"]["grouped_points"][0] = [8, 1, 1536, 2048]
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match=r"compute\.bf16\.grouped_points\[0\]: expected \[experts, m, n, k, time_s\]"):
        Profile.load(str(path))
    d["compute"]["bf16"]["grouped_points"] = {}  # not a list: named, not taken as none
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ValueError, match=r"compute\.bf16\.grouped_points: expected a list"):
        Profile.load(str(path))


def test_the_planner_costs_a_moe_layers_grouped_kernels_with_the_measured_ratio():
    from accelcal.models import ModelConfig
    from accelcal.planner.cost import Coster
    from accelcal.planner.dag import build_layer_dag
    from accelcal.planner.parallelism import Parallelism
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.step_cost import StepCoster, replica_parallelism

    m = ModelConfig.from_name("qwen3-30b-a3b")
    dag = build_layer_dag(m, "prefill", 1, 2048, 2048, Parallelism(tp=1))
    plain, slow = Coster(Profile.load(str(H100)), dtype="bf16"), Coster(_with_grouped({1: 3.0, 4096: 3.0}), dtype="bf16")
    for node in dag.nodes:  # the grouped expert GEMMs three times dearer, every other node the same
        a, b = plain.cost_node(node, 2), slow.cost_node(node, 2)
        assert b.device_s == pytest.approx(a.device_s * (3.0 if node.op == "grouped_gemm" else 1.0), rel=1e-12)
    assert any(n.op == "grouped_gemm" for n in dag.nodes)
    s_plain = StepCoster(Profile.load(str(H100)), m, replica_parallelism(1, 1, 1, 1), EnginePreset.from_name("vllm"))
    s_slow = StepCoster(_with_grouped({1: 3.0, 4096: 3.0}), m, replica_parallelism(1, 1, 1, 1),
                        EnginePreset.from_name("vllm"))
    assert any("has no grouped-kernel measurement" in n and "benchmarks/serving_error_breakdown.py" in n
               for n in s_plain.notes)
    assert any("measured grouped / stacked ratio (3..3 over 1..4096 tokens per expert" in n for n in s_slow.notes)
    # fp8 weights: bf16's ratio stands in (fp8 grouped kernels are not timed), and says so
    fp8 = _with_grouped({1: 3.0, 4096: 3.0}).grouped_gemm_time_s(8, 64, 1536, 2048, "fp8_e4m3")
    base = Profile.load(str(H100)).grouped_gemm_time_s(8, 64, 1536, 2048, "fp8_e4m3")
    assert fp8.time_s == pytest.approx(3.0 * base.time_s) and "bf16's, standing in" in fp8.detail
    s_fp8 = StepCoster(_with_grouped({1: 3.0, 4096: 3.0}), m, replica_parallelism(1, 1, 1, 1),
                       EnginePreset.from_name("vllm"), "fp8_e4m3")
    assert any("bf16's stand in for fp8_e4m3" in n for n in s_fp8.notes)


def test_a_bandwidth_what_if_keeps_the_grouped_ratio_and_compare_sees_lost_grouped_points():
    from accelcal.calibrate.compare import missing_in_new

    p = _with_grouped({1: 2.0, 64: 3.0})
    for f in (0.5, 2.0):
        q = p.with_bandwidth_scale(f)
        assert q.compute["bf16"].grouped_ratio(8, 2, 2) == pytest.approx(2.5, rel=1e-9)
    assert missing_in_new(p, Profile.load(str(H100))) == ["compute.bf16.grouped_points"]
    assert missing_in_new(Profile.load(str(H100)), p) == []


def test_the_fit_keeps_the_measured_grouped_cases_beside_the_gemm_fit():
    from accelcal.calibrate.fit import fit_profile

    raw = ROOT / "profiles" / "cpu-amd-epyc-2core-raw" / "kernels.csv"
    k = pd.read_csv(raw)
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"), timing="quick", progress=None)
    run_grouped_gemm(ctx, grouped_cases(("qwen3-30b-a3b",), (4,), (1, 16), divisor=8))
    g = ctx.results.frame()
    both = pd.concat([k, g[g["op"] == "grouped_gemm"]], ignore_index=True)
    import json

    env = json.loads((raw.parent / "kernels.env.json").read_text())
    notes: list[str] = []
    fitted = fit_profile(both, None, env, "test", notes=notes)
    pts = fitted.compute["bf16"].grouped_points
    assert len(pts) == 4 and sorted({p[1] for p in pts}) == [1.0, 16.0]
    assert any(n.startswith("grouped gemm bf16: 4 cases, measured / stacked-GEMM estimate") for n in notes)
