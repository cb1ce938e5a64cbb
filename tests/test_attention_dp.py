"""Attention data parallelism: a MoE model's EP group spanning data-parallel replicas (SGLang --enable-dp-attention,
vLLM DP + EP, TensorRT-LLM enable_attention_dp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.dag import DagOptions, build_layer_dag
from accelcal.planner.memory import stage_weight_bytes
from accelcal.planner.parallelism import Parallelism
from accelcal.planner.serving.step_cost import replica_parallelism

ROOT = Path(__file__).resolve().parents[1]
H200 = str(ROOT / "profiles" / "nvidia-h200.yaml")
NVSWITCH = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")


def test_an_ep_group_may_span_replicas_whose_count_divides_dp():
    p = replica_parallelism(1, 1, 8, 8, ep=8)
    assert (p.tp, p.dp, p.ep, p.ep_scope) == (1, 8, 8, "intra_node")
    assert replica_parallelism(2, 1, 4, 8, ep=4).ep == 4  # two replicas of TP2 share their experts
    assert replica_parallelism(4, 1, 4, 4, ep=16).ep_scope == "inter_node"  # 16 devices over 4-device nodes
    with pytest.raises(ValueError, match=r"--ep 6: --ep 6 with --tp 2 spreads the experts over 3 replicas, so --dp "
                                         r"must be a multiple of 3 .* here one of \[1, 2, 4, 8\]"):
        replica_parallelism(2, 1, 4, 8, ep=6)
    with pytest.raises(ValueError, match=r"--ep 3: --ep 3 neither divides --tp 2 nor is a multiple of it"):
        replica_parallelism(2, 1, 4, 8, ep=3)
    with pytest.raises(ValueError, match=r"e\.g\. --tp 1 --dp 4 --ep 4\), got --dp 2"):
        replica_parallelism(1, 1, 2, 8, ep=4)


def test_gathered_experts_see_every_replicas_tokens():
    m = ModelConfig.from_name("deepseek-v3")
    tok, h, el = 16, m.hidden_size, m.weight_bytes_per_elem
    dag = build_layer_dag(m, "decode", tok, 1, 1024, Parallelism(tp=1, dp=8, ep=8), options=DagOptions(ep_comm="all_reduce"))
    nodes = {n.name: n.p for n in dag.nodes}
    # each of 8 replicas' 16 tokens gathered (S = every rank's part), experts on the pairs routed to this rank's 32
    assert (nodes["dp_moe_all_gather"]["nbytes"], nodes["dp_moe_all_gather"]["group_size"]) == (8 * tok * h * el, 8)
    assert (nodes["dp_moe_reduce_scatter"]["nbytes"], nodes["dp_moe_reduce_scatter"]["group_size"]) == (8 * tok * h * el, 8)
    routed = nodes["experts_gate_up"]
    assert routed["count"] <= m.num_experts // 8 and routed["n"] == 2 * m.expert_ffn_size
    assert "tp_mlp_all_reduce" not in nodes and "tp_moe_all_gather" not in nodes
    # the EP group of the replica's own TP ranks (ep = tp) gathers nothing
    same = {n.name for n in build_layer_dag(m, "decode", tok, 1, 1024, Parallelism(tp=8, ep=8),
                                            options=DagOptions(ep_comm="all_reduce")).nodes}
    assert "dp_moe_all_gather" not in same and "tp_mlp_all_reduce" in same


def test_predict_runs_attention_dp_with_each_replicas_experts_share(capsys):
    args = ["predict", "--profile", H200, "--interconnect", NVSWITCH, "--model", "deepseek-v3", "--tp", "1", "--dp", "8",
            "--ep", "8", "--engine", "sglang", "--weight-dtype", "fp8_e4m3", "--concurrency", "32", "--isl", "512",
            "--osl", "32", "--num-requests", "64", "--format", "json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    m = ModelConfig.from_name("deepseek-v3")
    assert out["feasible"] and out["layout"]["devices"] == 8 and out["max_concurrent_sequences"] <= 4
    # every device holds all the attention and dense layers and 1/8 of the experts
    want = stage_weight_bytes(m, 1, 1, 8, 1, 2)
    assert out["memory"]["weights_bytes"] == pytest.approx(want)
    assert want < stage_weight_bytes(m, 1, 1, 1, 1, 2) / 6
    assert any("attention data-parallel: each EP group of 8 devices spans 8 replicas of TP1, each with its own requests "
               "and KV pool, their tokens all-gathered" in n for n in out["notes"])
    assert main(args[:args.index("--dp")] + ["--dp", "4"] + args[args.index("--dp") + 2:]) == 2
    assert "--ep 8" in capsys.readouterr().err


def test_sglang_runs_attention_dp_with_its_own_chunk_admission_and_reserve(capsys):
    """SGLang --enable-dp-attention (server_args.py): the chunk is divided over dp_size, schedule_conservativeness x
    0.3 scales new_token_ratio, and the reserved memory counts tp_size = the whole group and the DP padding."""
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.kv import kv_budget, sglang_reserved_mib

    sglang, _ = EnginePreset.from_name("sglang").for_version("")
    dp8, notes = sglang.for_layout(1, 1, attention_dp=8)
    assert dp8.step_tokens == 8192 // 8 and dp8.token_budget == 8192  # the reserve rule reads the undivided chunk
    assert dp8.new_token_ratio_init == pytest.approx(0.21) and dp8.new_token_ratio_min == pytest.approx(0.03)
    assert max(dp8.cuda_graph_sizes) == 512  # tp_size = 1 x 8 >= 4
    assert any("8192 // 8 = 1024 tokens per step" in n for n in notes)
    with pytest.raises(ValueError, match="for_layout applied twice"):
        dp8.for_layout(1, 1, attention_dp=8)
    vllm, _ = EnginePreset.from_name("vllm").for_version("")  # no such rule: each replica keeps its budget
    assert vllm.for_layout(1, 1, attention_dp=8)[0].step_tokens == vllm.step_tokens
    # 0.5.3 on, 141 GiB, tp_size 8, dp_size 8: 512 + 8192 x 1.5 + 512 x 2 + 8 / 8 x 1024 + 512 x 8 x 3
    # + 512 x 8 x 1.5 (cuda_graph_max_bs > 300) = 33280 MiB, against 14848 MiB for TP 8 alone
    assert sglang_reserved_mib(sglang, 141 * 1024, 1, 1, 8) == 33280
    assert sglang_reserved_mib(sglang, 141 * 1024, 8, 1, 1) == 14848
    # 0.5.1: (9.5 + 8 / 2) GiB + 4 GiB with attention DP on an 80 GiB GPU
    old, _ = EnginePreset.from_name("sglang").for_version("0.5.1.post1")
    assert sglang_reserved_mib(old, 80 * 1024, 2, 1, 4) == pytest.approx(17.5 * 1024)
    # kv_budget takes the replicas from the layout (EP 8 over TP 1 replicas): mem_fraction_static from 33280 MiB
    m = ModelConfig.from_name("deepseek-v3")
    cap = 141 * 1024 ** 3
    kv = kv_budget(m, dp8, 1, 1, cap, "fp8_e4m3", "bf16", ep=8)
    assert f"{round((141 * 1024 - 33280) / (141 * 1024), 3):.3f}" in kv.rule and "0.770" in kv.rule
    assert kv.kv_pool_bytes == pytest.approx(0.770 * cap - kv.weights_bytes)


def test_the_serving_search_offers_attention_dp_for_moe_models_only():
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.search import search_serving

    prof, _, _ = combine_profiles(Profile.load(H200), Profile.load(NVSWITCH))
    moe = search_serving(prof, "qwen3-30b-a3b", 4, ["vllm"], [16], 512, 64, top=40)
    labels = {c.label for c in moe.ranked}
    assert any("TP1 PP1 DP4 EP4" in lab for lab in labels) and any("TP2 PP1 DP2 EP4" in lab for lab in labels)
    dense = search_serving(prof, "qwen3-32b", 4, ["vllm"], [16], 512, 64, top=40)
    assert dense.ranked and not any(" EP" in c.label for c in dense.ranked)


def test_the_search_says_where_the_lockstep_is_modelled_for_its_attention_dp_rows():
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.search import search_serving

    prof, _, _ = combine_profiles(Profile.load(H200), Profile.load(NVSWITCH))
    res = search_serving(prof, "qwen3-30b-a3b", 4, ["vllm"], [16], 512, 64, top=40)
    dp = next(c for c in res.ranked if c.ep > c.tp)
    # simulated together in lockstep; the steady state (the search's first pass) costs each replica alone
    assert any("simulated together in lockstep" in n and "costs each replica alone" in n
               for n in dp.detail["coster"].notes)


def test_a_tp_degree_the_linear_heads_refuse_is_left_out_of_the_suggestions():
    m = ModelConfig.from_name("qwen3.5-27b")  # 24 attention heads, 16 Gated DeltaNet key heads
    with pytest.raises(ValueError, match=r"--tp 16: .* one of \[1, 2, 4, 8\]"):
        m.require_tp_divides_heads(16)
    with pytest.raises(ValueError, match=r"--tp 12: .*16 key heads and 16 % 12 = 4.* one of \[1, 2, 4, 8\]"):
        m.require_tp_divides_heads(12)


def test_ep_must_split_the_experts_evenly_and_pp_widens_the_group():
    with pytest.raises(ValueError, match=r"--ep 6: 8 experts do not spread evenly over 6 devices \(8 % 6 = 2\).* here "
                                         r"one of \[1, 2\]"):
        replica_parallelism(1, 1, 6, 8, ep=6, experts=8)
    # TP1 x PP2 replicas: the EP group of one stage across 8 replicas spans 16 devices, two 8-device nodes
    assert replica_parallelism(1, 2, 8, 8, ep=8).ep_scope == "inter_node"
    assert replica_parallelism(1, 1, 8, 8, ep=8).ep_scope == "intra_node"
    assert replica_parallelism(8, 2, 1, 8, ep=8).ep_scope == "intra_node"  # EP inside one stage's TP group


def test_a_device_buffers_its_own_pairs_or_the_gathered_tokens_not_the_whole_groups():
    from accelcal.planner.memory import device_memory
    from accelcal.planner.workload import Workload

    m = ModelConfig.from_name("deepseek-v3")
    h, el, tok = m.hidden_size, m.weight_bytes_per_elem, 8192
    mem = device_memory(m, Workload(prompt_len=tok, output_len=1, batch=1), Parallelism(tp=1, dp=8, ep=8))
    # top-8 routing: 8 pairs per token leave the device, and 8 replicas' tokens are gathered; the larger, sent and
    # received
    assert mem.comm_buffer_bytes == 2 * max(m.top_k * tok * h * el, 8 * tok * h * el)
    same = device_memory(m, Workload(prompt_len=tok, output_len=1, batch=1), Parallelism(tp=8, ep=8))
    assert same.comm_buffer_bytes == 2 * m.top_k * tok * h * el  # EP inside the TP group: as before


def test_a_tp_that_cannot_split_the_heads_is_bad_input_before_any_memory_arithmetic(capsys):
    args = ["predict", "--profile", str(ROOT / "profiles" / "nvidia-h100.yaml"), "--model", "qwen3.5-122b-a10b", "--tp",
            "3", "--engine", "sglang", "--concurrency", "4", "--isl", "256", "--osl", "16"]
    assert main(args) == 2
    assert "32 % 3 = 2" in capsys.readouterr().err


def test_a_longer_concurrency_sweep_keeps_the_attention_dp_pass():
    """Clustering evidence from a missed re-check applies to rows with as many clients per replica or more: a TP4
    replica's C512 miss says nothing of a DP8 layout's 32 clients per replica (a new user's case, where the longer
    sweep had dropped the simulated pass)."""
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.search import ServingTargets, search_serving

    prof, _, _ = combine_profiles(Profile.load(str(ROOT / "profiles" / "nvidia-h100.yaml")), Profile.load(NVSWITCH))
    t = ServingTargets(ttft_s=1.0, tpot_s=0.03)
    short = search_serving(prof, "qwen3-30b-a3b", 8, ["sglang"], [1, 2, 4, 8, 16, 32, 64, 128, 256], 2048, 512, t)
    longer = search_serving(prof, "qwen3-30b-a3b", 8, ["sglang"], [64, 128, 256, 512, 1024], 2048, 512, t)
    assert short.best.checked_by != "steady" and not short.best.misses
    assert longer.best.label == short.best.label


@pytest.mark.parametrize("fabric, warned", [("h100-nvswitch-8.yaml", True), ("h100-nvswitch-4of8.yaml", False)])
def test_ep_collectives_below_every_measured_message_are_warned_of(capsys, fabric, warned):
    args = ["predict", "--profile", H200, "--interconnect", str(ROOT / "profiles" / "interconnect" / fabric), "--model",
            "deepseek-v3", "--tp", "1", "--dp", "8", "--ep", "8", "--engine", "sglang", "--weight-dtype", "fp8_e4m3",
            "--concurrency", "16", "--isl", "256", "--osl", "8", "--num-requests", "16", "--format", "json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    # one token's 7168 bf16 values from each of 8 replicas; the 8-GPU log starts at 128 MiB, the 4-GPU one far lower
    hit = [w for w in out["warnings"] if w.startswith("attention data-parallel: a decode step's MoE collective (114688 B")]
    assert bool(hit) == warned


def test_the_search_rejects_an_ep_degree_the_experts_do_not_split_over_and_goes_on():
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.search import search_serving

    prof, _, _ = combine_profiles(Profile.load(H200), Profile.load(NVSWITCH))
    res = search_serving(prof, "mixtral-8x7b", 6, ["vllm"], [8], 256, 16)  # 8 experts over 6 devices: no EP6
    assert res.ranked and not any(c.ep == 6 for c in res.ranked)
    assert any("EP6: --ep 6: 8 experts do not spread evenly over 6 devices" in r for r in res.rejected)
