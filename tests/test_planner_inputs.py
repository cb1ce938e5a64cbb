"""Planner inputs: presets, bad input messages, missing measurements, no feasible plan."""

from __future__ import annotations

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.planner.cluster import Cluster
from accelcal.models import ModelConfig, preset_names
from accelcal.planner.predict import predict_layer_time_s
from accelcal.planner.search import NoFeasiblePlan, plan
from accelcal.planner.workload import Workload

from planner_profiles import h100_like

W = Workload(prompt_len=1024, output_len=256, batch=8)


def test_presets_load_with_published_parameter_counts():
    assert set(preset_names()) >= {"tiny", "tiny-moe", "llama3-8b", "llama3-70b", "llama3.1-405b", "mixtral-8x7b",
                                   "deepseek-moe"}
    params = {n: ModelConfig.from_name(n).weight_bytes() / 2 for n in preset_names()}
    # published totals: 8.03B, 70.6B, 405.9B, 46.7B, 16.4B (bf16: 2 bytes per parameter)
    assert params["llama3-8b"] == pytest.approx(8.03e9, rel=0.01)
    assert params["llama3-70b"] == pytest.approx(70.6e9, rel=0.01)
    assert params["llama3.1-405b"] == pytest.approx(405.9e9, rel=0.01)
    assert params["mixtral-8x7b"] == pytest.approx(46.7e9, rel=0.01)
    assert params["deepseek-moe"] == pytest.approx(16.4e9, rel=0.01)  # layer 0 dense (dense_layers: 1)
    for n in preset_names():
        assert ModelConfig.from_name(n).source


def test_unknown_model_lists_the_presets():
    with pytest.raises(ValueError) as e:
        ModelConfig.from_name("llama9")
    for n in ("llama3-8b", "mixtral-8x7b", "deepseek-moe", "tiny"):
        assert n in str(e.value)


def test_model_yaml_unknown_key_and_bad_value(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("name: x\nlayers: 2\nhidden_size: 64\nheads: 4\nkv_heads: 3\nhead_dim: 16\nffn_size: 128\n"
                 "vocab_size: 100\n")
    with pytest.raises(ValueError, match=r"heads\(4\) % kv_heads\(3\) = 1"):
        ModelConfig.from_yaml(f)
    f.write_text("name: x\nlayers: 2\nhidden: 64\n")
    with pytest.raises(ValueError, match=r"unknown model key\(s\) \['hidden'\]"):
        ModelConfig.from_yaml(f)
    f.write_text("name: x\nlayers: 2\nhidden_size: 64\nheads: 4\nkv_heads: 2\nhead_dim: 16\nffn_size: 128\n"
                 "vocab_size: 100\n")
    assert ModelConfig.resolve(str(f)).kv_heads == 2


def test_divisibility_rejections_show_the_arithmetic():
    res = plan("llama3-70b", Cluster.homogeneous(Profile.from_dict(h100_like()), nodes=2), W)
    reasons = {(r.tp, r.pp, r.ep): r.reason for r in res.rejected}
    assert reasons[(3, 1, 1)].startswith("tp 3: 64 attention heads and 64 % 3 = 1: the layers must split evenly")
    assert reasons[(1, 3, 1)].startswith("layers(80) % pp(3) = 2: 80/3 = 26.67 layers per stage")
    moe = plan("mixtral-8x7b", Cluster.homogeneous(Profile.from_dict(h100_like()), nodes=2), W)
    ep = [r for r in moe.rejected if r.ep == 16]
    assert ep and ep[0].reason.startswith("num_experts(8) % ep(16) = 8: 8/16 = 0.5 experts per rank")


def test_missing_inter_node_collectives_say_what_is_missing():
    d = h100_like()
    d["collectives"] = [c for c in d["collectives"] if c["scope"] == "intra_node"]
    res = plan("llama3-8b", Cluster.homogeneous(Profile.from_dict(d), nodes=2), W)
    assert all(c.scopes["tp"] == c.scopes["pp"] == c.scopes["sp"] == "intra_node" for c in res.ranked)
    miss = [r for r in res.rejected if r.constraint == "measurement"]
    assert miss and "inter_node" in miss[0].reason and "cannot answer" in miss[0].reason


def test_unmeasured_group_size_is_extrapolated_and_flagged():
    d = h100_like()
    d["collectives"] = [c for c in d["collectives"] if c["group_size"] in (2, 8)]
    res = plan("llama3-70b", Cluster.homogeneous(Profile.from_dict(d)), W)
    tp4 = next(c for c in res.ranked if c.tp == 4)
    assert any("ring-model" in x for x in tp4.extrapolated)


def test_no_feasible_plan_names_the_constraint_and_the_excess():
    with pytest.raises(NoFeasiblePlan) as e:
        plan("llama3.1-405b", Cluster.homogeneous(Profile.from_dict(h100_like()), devices_per_node=4), W)
    msg = str(e.value)
    assert "memory failed" in msg and "over by" in msg and "closest TP4 PP1" in msg
    assert isinstance(e.value, ValueError)


def test_profile_without_collectives_says_how_to_measure_them():
    d = h100_like()
    d["collectives"] = []  # measured on one device
    with pytest.raises(NoFeasiblePlan) as e:
        plan("llama3-70b", Cluster.homogeneous(Profile.from_dict(d), devices_per_node=8), W)
    msg = str(e.value)
    assert "need measurements the profile lacks" in msg
    assert "no collective measurements at all" in msg and "run_bench.sh --nproc 8" in msg


def test_predict_rejects_bad_tp_and_phase():
    p = Profile.from_dict(h100_like())
    with pytest.raises(ValueError, match=r"llama3-8b has 32 attention heads and 32 % 3 = 2"):
        predict_layer_time_s(p, "llama3-8b", "decode", 1, 1, 128, tp=3)
    with pytest.raises(ValueError, match="phase"):
        predict_layer_time_s(p, "llama3-8b", "train", 1, 1, 128)
    with pytest.raises(ValueError, match=r"kv_len\(4\) < q_len\(8\)"):
        predict_layer_time_s(p, "llama3-8b", "prefill", 1, 8, 4)


def test_workload_validation():
    with pytest.raises(ValueError, match="prompt_len must be an integer >= 1"):
        Workload(prompt_len=0)
    with pytest.raises(ValueError, match="tpot_s must be a number > 0"):
        Workload(tpot_s=-1.0)
