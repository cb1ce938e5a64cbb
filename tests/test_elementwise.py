"""The eager elementwise groups: measured as the layers run them, fitted, and used by the planner."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from accelcal.calibrate.fit import fit_profile
from accelcal.calibrate.profile import MissingMeasurement, Profile, ProfileError
from accelcal.calibrate.synthetic import synth_env, synth_kernels
from accelcal.models.implementation import Implementation

TRUE_LATENCY_S = {"norm": 12e-6, "rope": 9e-6}
TRUE_BW = {"norm": 2.0e11, "rope": 6.0e10}


def _with_elementwise(kern: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for group in TRUE_LATENCY_S:
        for elems in (1 << 10, 1 << 13, 1 << 16, 1 << 19, 1 << 22):
            nbytes = Implementation.from_name("torch-eager").norm.bytes_per_element(2) * elems \
                if group == "norm" else Implementation.from_name("torch-eager").rope.bytes_per_element(2) * elems
            rows.append(dict(suite="kernels", op="elementwise", case=f"{group}_{elems}_bf16", dtype="bf16",
                             figure="device", method="graph", status="ok", reason="", n_samples=9,
                             median_s=TRUE_LATENCY_S[group] + nbytes / TRUE_BW[group], bytes=nbytes,
                             group=group, elements=elems))
    return pd.concat([kern, pd.DataFrame(rows)], ignore_index=True)


def test_fit_recovers_each_groups_latency_and_bandwidth_and_round_trips(tmp_path):
    p = fit_profile(_with_elementwise(synth_kernels()), None, synth_env(), "pytest")
    for group in TRUE_LATENCY_S:
        e = p.elementwise["bf16"][group]
        assert e.bandwidth_bytes_per_s == pytest.approx(TRUE_BW[group], rel=0.01)
        assert e.latency_s == pytest.approx(TRUE_LATENCY_S[group], rel=0.05)
    path = tmp_path / "p.yaml"
    p.save(path)
    q = Profile.load(path)
    assert q.elementwise["bf16"]["rope"].bandwidth_bytes_per_s == p.elementwise["bf16"]["rope"].bandwidth_bytes_per_s
    nbytes = 1e8
    assert q.elementwise_time_s("norm", nbytes, "bf16").time_s == pytest.approx(
        TRUE_LATENCY_S["norm"] + nbytes / TRUE_BW["norm"], rel=0.01)
    assert q.elementwise_time_s("norm", nbytes, "bf16").source == "elementwise.bf16.norm"


def test_missing_group_is_a_missing_measurement_and_bad_keys_name_the_path(tmp_path):
    p = fit_profile(_with_elementwise(synth_kernels()), None, synth_env(), "pytest")
    with pytest.raises(MissingMeasurement, match=r"no elementwise data for 'act_mul' in bf16"):
        p.elementwise_time_s("act_mul", 1e6, "bf16")
    with pytest.raises(ValueError, match=r"unknown group 'gelu'"):
        p.elementwise_time_s("gelu", 1e6, "bf16")
    d = p.to_dict()
    d["elementwise"]["bf16"]["normm"] = d["elementwise"]["bf16"].pop("norm")
    with pytest.raises(ProfileError, match=r"elementwise\.bf16.*unknown key\(s\) \['normm'\]"):
        Profile.from_dict(d, origin="bad.yaml")


def test_planner_costs_torch_eager_groups_from_the_measurement_and_fused_ones_as_copies():
    from accelcal.planner.predict import predict_layer_time_s

    p = fit_profile(_with_elementwise(synth_kernels()), None, synth_env(), "pytest")
    # synth profiles are CPU (serialised) profiles in fp32 and bf16; plan in bf16
    eager = predict_layer_time_s(p, "tiny", "prefill", 2, 64, 64, implementation="torch-eager")
    by = {n.name: n for n in eager.nodes}
    norm = by["attn_norm"]
    assert norm.source == "elementwise.bf16.norm" and norm.self_timed
    assert norm.device_s == pytest.approx(p.elementwise_time_s("norm", norm.params["nbytes"], "bf16").time_s)
    assert norm.launch_s == 0.0  # its 9 dispatches are inside the measured figure
    assert by["act_mul"].source == "memory.copy"  # not measured in this profile: a copy of the same bytes
    assert by["act_mul"].launch_s > 0
    fused = predict_layer_time_s(p, "tiny", "prefill", 2, 64, 64, implementation="fused")
    assert {n.name: n for n in fused.nodes}["attn_norm"].source == "memory.copy"
    # without the section the eager norm falls back to the copy pattern
    bare = copy.deepcopy(p)
    bare.elementwise = {}
    again = predict_layer_time_s(bare, "tiny", "prefill", 2, 64, 64, implementation="torch-eager")
    assert {n.name: n for n in again.nodes}["attn_norm"].source == "memory.copy"


def test_suite_times_each_group_with_the_traffic_model_bytes():
    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.elementwise import elementwise_elements, run_elementwise
    from accelcal.kernels.shapes import ModelDims
    from accelcal.kernels.timing import TimingConfig
    from accelcal.results import ResultSet

    dims = ModelDims("t", hidden=64, intermediate=96, heads=4, kv_heads=2, source="test")
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"),
                              timing=TimingConfig(warmup_s=0.0, budget_s=0.002, min_reps=3, max_reps=3, queue_len=2),
                              progress=None)
    run_elementwise(ctx, dims, tokens=(1, 8), dtypes=("fp32", "bf16", "fp8_e4m3"))
    df = ctx.results.frame()
    impl = Implementation.from_name("torch-eager")
    dev = df[(df["figure"] == "device") & (df["status"] == "ok")]
    assert sorted(dev["group"].unique()) == ["act_mul", "norm", "residual_add", "rope"]
    assert len(dev) == 4 * 2 * 2
    for _, r in dev.iterrows():
        el = 4 if r["dtype"] == "fp32" else 2
        elems = elementwise_elements(r["group"], dims, int(r["tokens"]))
        assert r["elements"] == elems
        assert r["bytes"] == pytest.approx(getattr(impl, r["group"]).bytes_per_element(el) * elems)
        assert r["median_s"] > 0
    assert elementwise_elements("rope", dims, 8) == 8 * (4 + 2) * 16
    skipped = df[df["status"] == "skipped"]
    assert set(skipped["dtype"]) == {"fp8_e4m3"} and skipped["reason"].str.contains("fp32/bf16/fp16").all()
    with pytest.raises(ValueError, match="unknown elementwise group 'gelu'"):
        run_elementwise(ctx, dims, tokens=(1,), dtypes=("fp32",), groups=("gelu",))


def test_layer_and_suite_run_the_same_ops():
    import torch

    from accelcal.kernels import elementwise as ew
    from accelcal.validate import layers

    # one definition: the layers use the suite's functions, not copies of them
    assert layers.rms_norm is ew.rms_norm and layers.apply_rope is ew.apply_rope and layers.silu_mul is ew.silu_mul
    gu = torch.randn(3, 10)
    assert torch.allclose(ew.silu_mul(gu), torch.nn.functional.silu(gu[:, :5]) * gu[:, 5:])
