"""Experts split TP x EP inside one TP group (TensorRT-LLM moe_tp_size x moe_ep_size, SGLang --ep-size below --tp),
and where the shared experts live."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.dag import DagOptions, build_layer_dag
from accelcal.planner.memory import layer_routed_expert_elems, layer_weight_elems, stage_weight_bytes
from accelcal.planner.parallelism import Parallelism, expert_tp
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.predict import predict_serving
from accelcal.planner.serving.search import search_serving
from accelcal.planner.serving.step_cost import replica_parallelism, require_engine_ep

ROOT = Path(__file__).resolve().parents[1]
H100 = str(ROOT / "profiles" / "nvidia-h100.yaml")
NVSWITCH = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")


def test_each_expert_is_split_tp_over_ep_ways():
    assert [expert_tp(8, ep) for ep in (1, 2, 4, 8, 16, 64)] == [8, 4, 2, 1, 1, 1]
    assert Parallelism(tp=4, ep=2).expert_tp == 2 and Parallelism(tp=1, dp=8, ep=8).expert_tp == 1


def test_a_device_holds_the_same_expert_bytes_however_the_tp_group_splits_them():
    m = ModelConfig.from_name("qwen3-235b-a22b")  # 128 experts, 1536 wide, hidden 4096
    per_expert = 3 * m.hidden_size * m.expert_ffn_size
    # TP8: 1/8 of every expert; EP2 x TP4: 64 experts, a quarter each; EP8: 16 whole experts; all 16 experts' worth
    for ep in (1, 2, 4, 8):
        assert layer_routed_expert_elems(m, 8, ep) == 16 * per_expert
    assert layer_routed_expert_elems(m, 4, 2) == (128 // 2) * 3 * m.hidden_size * (m.expert_ffn_size // 2)


def test_the_grouped_gemms_run_the_groups_pairs_on_a_slice_of_each_expert():
    m = ModelConfig.from_name("qwen3-235b-a22b")
    tok = 512
    opts = DagOptions(ep_comm="all_reduce", moe_imbalance=1.0)
    nodes = {n.name: n.p for n in build_layer_dag(m, "prefill", 1, tok, tok, Parallelism(tp=4, ep=2),
                                                  options=opts).nodes}
    up, down = nodes["experts_gate_up"], nodes["experts_down"]
    # half the experts (64) per group, each 768 wide on a rank; the pairs routed to the group: 512 x 8 / 2
    assert (up["n"], up["k"], down["n"], down["k"]) == (2 * 768, m.hidden_size, m.hidden_size, 768)
    assert up["count"] <= 64 and up["m"] * up["count"] >= tok * m.top_k // 2
    # one TP all-reduce sums the slices and the groups; no all-to-all
    assert nodes["tp_mlp_all_reduce"]["group_size"] == 4
    assert not any(k.startswith("ep_") for k in nodes)
    # the same layer with whole experts over all 4 ranks: 32 experts, full width
    whole = {n.name: n.p for n in build_layer_dag(m, "prefill", 1, tok, tok, Parallelism(tp=4, ep=4),
                                                  options=opts).nodes}
    assert whole["experts_gate_up"]["n"] == 2 * m.expert_ffn_size and whole["experts_gate_up"]["count"] <= 32


def test_an_all_to_all_cannot_split_experts_below_tp():
    m = ModelConfig.from_name("qwen3-235b-a22b")
    with pytest.raises(ValueError, match=r"EP 2 below TP 4 \(experts split TP2 x EP2\) needs an all-reduce"):
        build_layer_dag(m, "decode", 8, 1, 256, Parallelism(tp=4, ep=2), options=DagOptions(ep_comm="all_to_all"))


def test_an_ep_degree_must_divide_tp_or_be_a_multiple_of_it():
    assert replica_parallelism(4, 1, 1, 8, ep=2, experts=128).ep == 2
    with pytest.raises(ValueError, match=r"--ep 3 neither divides --tp 4 nor is a multiple of it.* here one of "
                                         r"\[1, 2, 4\]"):
        replica_parallelism(4, 1, 1, 8, ep=3, experts=120)
    # the layout's own fault first, whatever the expert count
    with pytest.raises(ValueError, match=r"--ep 3: --ep 3 neither divides --tp 4"):
        replica_parallelism(4, 1, 1, 8, ep=3, experts=128)


def test_engines_say_whether_they_split_experts_below_tp():
    runs = {name: EnginePreset.from_name(name).ep_below_tp for name in ("trtllm", "sglang", "vllm", "static")}
    assert runs == {"trtllm": True, "sglang": True, "vllm": False, "static": False}
    assert "sglang 0.5.8.post1 and 0.5.9 wheels" in EnginePreset.from_name("sglang").sources["ep_below_tp"]
    require_engine_ep(EnginePreset.from_name("trtllm"), 4, 2)
    require_engine_ep(EnginePreset.from_name("vllm"), 4, 4)  # EP over the whole TP group: vLLM runs it
    with pytest.raises(ValueError, match=r"--ep 2 with --tp 4: vllm does not split the experts TP2 x EP2"):
        require_engine_ep(EnginePreset.from_name("vllm"), 4, 2)


def test_predict_runs_a_tp_x_ep_split_and_refuses_it_for_vllm(capsys):
    args = ["predict", "--profile", H100, "--interconnect", NVSWITCH, "--model", "qwen3-235b-a22b", "--tp", "4",
            "--ep", "2", "--engine", "trtllm", "--weight-dtype", "fp8_e4m3", "--concurrency", "8", "--isl", "512",
            "--osl", "16", "--num-requests", "16", "--format", "json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    m = ModelConfig.from_name("qwen3-235b-a22b")
    assert out["feasible"] and out["layout"]["ep"] == 2
    assert out["memory"]["weights_bytes"] == pytest.approx(stage_weight_bytes(m, 4, 1, 1, 1, 2, "all_reduce"))
    assert any("experts split TP2 x EP2: each of 2 groups of 2 ranks holds 64 experts" in n for n in out["notes"])
    whole = args[:args.index("--ep")] + ["--ep", "4"] + args[args.index("--ep") + 2:]
    assert main(whole) == 0
    assert any("experts spread over the TP group: 32 whole experts on each of 4 ranks" in n
               for n in json.loads(capsys.readouterr().out)["notes"])
    vllm = args[:args.index("--engine")] + ["--engine", "vllm"] + args[args.index("--engine") + 2:]
    assert main(vllm) == 2
    assert "vllm does not split the experts TP2 x EP2" in capsys.readouterr().err


def test_shared_experts_are_tp_split_where_every_rank_holds_every_token():
    m = ModelConfig.from_name("deepseek-v3")  # one shared expert per MoE layer
    shared = 3 * m.hidden_size * m.expert_ffn_size
    a2a = layer_weight_elems(m, 8, 8, "moe", "all_to_all")
    ar = layer_weight_elems(m, 8, 8, "moe", "all_reduce")
    # all-to-all: each rank runs the shared expert on its own 1/8 of the tokens (a whole copy); all-reduce: every
    # rank holds every token and the shared expert is TP-split like the rest of the layer (the DAG's branches)
    assert a2a - ar == shared - shared // 8
    assert layer_weight_elems(m, 8, 1, "moe", "all_to_all") == layer_weight_elems(m, 8, 1, "moe", "all_reduce")
    sf = {n.name: n.p for n in build_layer_dag(m, "decode", 8, 1, 256, Parallelism(tp=8, ep=8),
                                               options=DagOptions(ep_comm="all_reduce")).nodes}["shared_gate_up"]
    assert sf["n"] == 2 * m.expert_ffn_size // 8


def test_experts_tp_split_over_replicas_gather_every_replicas_tokens():
    m = ModelConfig.from_name("qwen3-235b-a22b")
    tok, h, el = 16, m.hidden_size, m.weight_bytes_per_elem
    par = Parallelism(tp=1, dp=2, moe_tp=2)
    assert (par.expert_tp, par.moe_group, par.label) == (2, 2, "TP1 PP1 DP2 MoE-TP2")
    for comm in ("all_reduce", "all_to_all"):  # EP 1 moves no routed pairs, whatever the engine's EP transport
        nodes = {n.name: n.p for n in build_layer_dag(m, "decode", tok, 1, 1024, par,
                                                      options=DagOptions(ep_comm=comm, moe_imbalance=1.0)).nodes}
        # both replicas' 16 tokens gathered, every expert half-width, the sums reduce-scattered back
        assert (nodes["dp_moe_all_gather"]["nbytes"], nodes["dp_moe_all_gather"]["group_size"]) == (2 * tok * h * el, 2)
        assert (nodes["dp_moe_reduce_scatter"]["nbytes"], nodes["dp_moe_reduce_scatter"]["group_size"]) == (
            2 * tok * h * el, 2)
        up = nodes["experts_gate_up"]
        assert up["n"] == 2 * (m.expert_ffn_size // 2) and up["m"] * up["count"] >= 2 * tok * m.top_k
        assert not any(k.startswith("ep_") or k.startswith("tp_") for k in nodes)


def test_experts_tp_split_over_replicas_hold_a_share_of_every_expert():
    m = ModelConfig.from_name("qwen3-235b-a22b")
    assert layer_routed_expert_elems(m, 1, 1, moe_tp=2) == layer_routed_expert_elems(m, 2, 1)
    p = replica_parallelism(1, 1, 2, 8, 1, m.num_experts, moe_tp=2)
    assert (p.moe_tp, p.ep, p.ep_scope) == (2, 1, "intra_node")
    assert replica_parallelism(4, 1, 4, 8, 1, m.num_experts, moe_tp=16).ep_scope == "inter_node"
    assert replica_parallelism(2, 1, 2, 8, 1, m.num_experts, moe_tp=2).moe_tp == 0  # = --tp: the plain split
    with pytest.raises(ValueError, match=r"--moe-tp 6 with --tp 2 --dp 4: --moe-tp must be --tp 2 x k with k >= 2 "
                                         r"dividing --dp 4 .* here one of \[4, 8\]"):
        replica_parallelism(2, 1, 4, 8, 1, m.num_experts, moe_tp=6)
    # with EP the experts are spread, not split: --moe-tp is refused whatever its value (even --tp's)
    for moe_tp in (4, 2):
        with pytest.raises(ValueError, match=rf"--moe-tp {moe_tp} with --ep 2: .* needs --ep 1; drop --moe-tp or --ep"):
            replica_parallelism(2, 1, 2, 8, 2, m.num_experts, moe_tp=moe_tp)


def test_predict_fits_a_model_whose_experts_split_over_the_replicas(capsys):
    base = ["predict", "--profile", str(ROOT / "profiles" / "nvidia-h200.yaml"), "--interconnect", NVSWITCH, "--model",
            "qwen3-235b-a22b", "--weight-dtype", "fp8_e4m3", "--tp", "1", "--dp", "2", "--engine", "vllm",
            "--concurrency", "8", "--isl", "512", "--osl", "16", "--num-requests", "16", "--format", "json"]
    assert main(base) == 3  # two replicas of every expert: 236 GB of weights on one 141 GB device
    assert "weights + reserves do not fit" in capsys.readouterr().err
    assert main(base + ["--moe-tp", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    m = ModelConfig.from_name("qwen3-235b-a22b")
    assert out["feasible"] and out["layout"]["moe_tp"] == 2 and out["max_concurrent_sequences"] <= 4
    assert out["memory"]["weights_bytes"] == pytest.approx(stage_weight_bytes(m, 1, 1, 1, 1, 2, "all_reduce", 2))
    # by hand: one device of TP1 less half of every layer's routed experts (1 byte each in fp8)
    whole = stage_weight_bytes(m, 1, 1, 1, 1, 2, "all_reduce")
    assert out["memory"]["weights_bytes"] == pytest.approx(whole - m.moe_layers * layer_routed_expert_elems(m, 1, 1) / 2)
    assert any("attention data-parallel: the expert layers (every expert TP-split 2 ways) span 2 replicas of TP1"
               in n and "no EP transport" in n for n in out["notes"])
    dense = list(base)
    dense[dense.index("qwen3-235b-a22b")] = "qwen3-32b"
    assert main(dense + ["--moe-tp", "2"]) == 2
    assert "--moe-tp 2: qwen3-32b is a dense model" in capsys.readouterr().err


def test_an_all_reduce_ep_buffers_hidden_states_and_gathered_tokens_widen_the_experts():
    from accelcal.planner.memory import device_memory
    from accelcal.planner.workload import Workload

    m = ModelConfig.from_name("qwen3-235b-a22b")
    h, el, tok = m.hidden_size, m.weight_bytes_per_elem, 8192
    w = Workload(prompt_len=tok, output_len=1, batch=1)
    # EP over the TP group summed by an all-reduce: the largest message is the hidden states, not the routed pairs
    ar = device_memory(m, w, Parallelism(tp=8, ep=8), "all_reduce")
    a2a = device_memory(m, w, Parallelism(tp=8, ep=8), "all_to_all")
    assert ar.comm_buffer_bytes == 2 * tok * h * el
    assert a2a.comm_buffer_bytes == 2 * m.top_k * (tok // 8) * h * el * 8
    # two replicas' tokens through every expert at half width: the same expert activations per device as one
    # replica's tokens through whole-width experts at TP1 (and the gathered tokens in the buffers)
    shared = device_memory(m, w, Parallelism(tp=1, dp=2, moe_tp=2), "all_reduce")
    alone = device_memory(m, w, Parallelism(tp=1), "all_reduce")
    assert shared.activation_bytes == alone.activation_bytes
    assert shared.comm_buffer_bytes == 2 * 2 * tok * h * el


def test_a_parallelism_refuses_a_moe_tp_that_is_not_tp_times_k_with_ep_1():
    with pytest.raises(ValueError, match=r"moe_tp 2 splits every expert over tp x k devices with ep 1; got tp 4, ep 1"):
        Parallelism(tp=4, moe_tp=2)
    with pytest.raises(ValueError, match=r"got tp 2, ep 2"):
        Parallelism(tp=2, ep=2, moe_tp=4)


def test_the_serving_search_tries_every_expert_layout_its_engine_runs():
    """EP below TP where the engine runs it (sglang, trtllm; not vllm), and every expert TP-split over the attention
    data-parallel replicas (--moe-tp) beside the spread (EP = TP x DP) and the replicas apart; a dense model none."""
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.search import _expert_layouts, _simulate_candidate
    from accelcal.planner.serving.workload import ServingWorkload

    moe, dense = ModelConfig.from_name("qwen3-30b-a3b"), ModelConfig.from_name("qwen3-32b")
    sglang, vllm = EnginePreset.from_name("sglang"), EnginePreset.from_name("vllm")
    assert _expert_layouts(moe, sglang, 4, 1, 8) == [(1, 0), (4, 0), (2, 0), (8, 0), (1, 8)]
    assert _expert_layouts(moe, vllm, 4, 1, 8) == [(1, 0), (4, 0), (8, 0), (1, 8)]
    assert _expert_layouts(moe, sglang, 4, 2, 8) == [(1, 0), (4, 0), (2, 0)]  # PP: no attention DP
    assert _expert_layouts(dense, sglang, 4, 1, 8) == [(1, 0)]
    prof, _, _ = combine_profiles(Profile.load(H100), Profile.load(NVSWITCH))
    res = search_serving(prof, "qwen3-30b-a3b", 4, ["sglang", "vllm"], [16], 512, 64, top=0)  # steady rows only
    labels = {c.label for c in res.ranked}
    assert {"sglang TP4 PP1 DP1 EP2 C16", "sglang TP1 PP1 DP4 MoE-TP4 C16", "vllm TP2 PP1 DP2 MoE-TP4 C16"} <= labels
    assert not any(lab.startswith("vllm TP4 PP1 DP1 EP2") for lab in labels)
    row = next(c for c in res.ranked if c.label == "sglang TP1 PP1 DP4 MoE-TP4 C16")
    assert (row.ep, row.moe_tp) == (1, 4) and row.to_dict()["moe_tp"] == 4
    # its steady-state figures are the ones accelcal predict --method steady gives that layout and load
    pred = predict_serving(prof, "qwen3-30b-a3b", "sglang", tp=1, dp=4, moe_tp=4, concurrency=16, isl=512, osl=64,
                           method="steady")
    assert (row.ttft_s, row.tpot_s) == pytest.approx((pred.metrics.ttft_mean_s, pred.metrics.tpot_mean_s), rel=1e-9)
    # and its re-check by simulation is accelcal predict's run: the four replicas in lockstep
    _simulate_candidate(row, ServingWorkload(isl=512, osl=64, concurrency=1), "mean")
    sim = predict_serving(prof, "qwen3-30b-a3b", "sglang", tp=1, dp=4, moe_tp=4, concurrency=16, isl=512, osl=64)
    assert (row.ttft_s, row.tpot_s, row.per_device) == (sim.metrics.ttft_mean_s, sim.metrics.tpot_mean_s,
                                                        sim.metrics.output_tokens_per_s_per_device)


def test_an_expert_split_into_unequal_slices_is_refused_with_the_splits_that_fit(capsys):
    """Mixtral's 14336-wide experts do not split 6 ways (14336 % 6 = 2): no engine loads that (sglang asserts
    intermediate_size % moe_tp_size == 0), so predict refuses it and the search leaves it out."""
    from accelcal.planner.serving.step_cost import expert_split_issue

    m = ModelConfig.from_name("mixtral-8x7b")
    vllm = EnginePreset.from_name("vllm")
    issue = expert_split_issue(m, replica_parallelism(2, 1, 3, 8, 1, m.num_experts, moe_tp=6), vllm)
    assert issue.unequal and issue.layout == "--moe-tp 6"
    assert issue.reason.startswith("mixtral-8x7b's routed experts are 14336 wide and 14336 % 6 = 2")
    # 8 experts over 6 devices do not spread (no --ep 6); the splits over 2 devices fit
    assert issue.fits == ("--ep 2 (whole experts)", "--ep 1 (every expert split 2 ways)")
    assert issue.message.startswith("--moe-tp 6: mixtral-8x7b's routed experts are 14336 wide")
    assert expert_split_issue(m, replica_parallelism(2, 1, 4, 8, 1, m.num_experts, moe_tp=8), vllm) is None
    args = ["predict", "--profile", H100, "--interconnect", NVSWITCH, "--model", "mixtral-8x7b", "--tp", "2", "--dp",
            "3", "--moe-tp", "6", "--engine", "vllm", "--concurrency", "8", "--isl", "256", "--osl", "16"]
    assert main(args) == 2
    assert "14336 % 6 = 2" in capsys.readouterr().err
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles

    prof, _, _ = combine_profiles(Profile.load(H100), Profile.load(NVSWITCH))
    res = search_serving(prof, "mixtral-8x7b", 6, ["vllm"], [8], 256, 16, top=0)
    assert not any(c.moe_tp == 6 for c in res.ranked)
    assert any(r.startswith("vllm TP2 PP1 DP3 MoE-TP6: mixtral-8x7b's routed experts are 14336 wide") for r in res.rejected)


def test_block_scaled_fp8_experts_need_whole_blocks_per_device_where_the_engine_says_so(tmp_path, capsys):
    """A 1536-wide block-scaled fp8 expert split 8 ways is 192 wide per device, not whole 128-blocks: vLLM and SGLang
    refuse to load it (vllm issue 17569 for Qwen3-235B-A22B-FP8 at TP8; sglang fp8.py), TensorRT-LLM is not known to.
    predict warns and predicts the layout as asked (a published run may record it); plan leaves it out."""
    cfg = {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 1024, "num_hidden_layers": 4,
           "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 64, "intermediate_size": 4096,
           "moe_intermediate_size": 1536, "num_experts": 16, "num_experts_per_tok": 4, "decoder_sparse_step": 1,
           "mlp_only_layers": [], "vocab_size": 2048, "torch_dtype": "bfloat16", "tie_word_embeddings": False,
           "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    base = ["predict", "--profile", H100, "--interconnect", str(ROOT / "profiles" / "interconnect" /
                                                                 "h100-nvswitch-8.yaml"),
            "--model", str(path), "--concurrency", "4", "--isl", "256", "--osl", "16", "--tp", "8"]
    def warnings(*extra: str) -> list[str]:
        assert main(base + list(extra) + ["--format", "json"]) == 0
        return [w for w in json.loads(capsys.readouterr().out)["warnings"] if "192 % 128 = 64" in w]

    warned = warnings("--engine", "vllm")
    assert warned and "would be 192 wide per device, and 192 % 128 = 64: vllm loads only whole blocks" in warned[0]
    # vLLM runs whole experts or every expert split over the TP group (no EP below TP): only --ep 8 fits
    assert "layouts of the experts that fit here: --ep 8 (whole experts)" in warned[0] and "TP4 x EP2" not in warned[0]
    assert warned[0].endswith("(predicted as asked; accelcal plan leaves such layouts out)")
    sglang = warnings("--engine", "sglang")  # EP below TP: 16 experts over 2 or 4 groups, 384 / 768 wide
    assert "--ep 8 (whole experts), --ep 2 (experts split TP4 x EP2), --ep 4 (experts split TP2 x EP4)" in sglang[0]
    assert not warnings("--engine", "trtllm")  # not known to refuse
    assert not warnings("--engine", "vllm", "--ep", "8")  # whole experts: nothing split
    assert not warnings("--engine", "vllm", "--weight-dtype", "bf16")  # unquantised: no blocks
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles

    prof, _, _ = combine_profiles(Profile.load(H100), Profile.load(str(ROOT / "profiles" / "interconnect" /
                                                                       "h100-nvswitch-8.yaml")))
    res = search_serving(prof, str(path), 8, ["vllm", "trtllm"], [4], 256, 16, top=0)
    labels = {c.label for c in res.ranked}
    assert "trtllm TP8 PP1 DP1 C4" in labels and "vllm TP8 PP1 DP1 C4" not in labels
    hit = [r for r in res.rejected if r.startswith("vllm TP8 PP1 DP1: ")]
    assert hit and "192 % 128 = 64" in hit[0] and hit[0].endswith("(engine key moe_block_aligned)")


def test_block_scaled_fp8_on_a_model_stating_no_block_assumes_the_published_128_blocks(tmp_path, capsys):
    """The qwen3-235b-a22b preset is the bf16 model; --fp8-scaling block means its published FP8 checkpoint, whose
    blocks are 128 x 128 (accelcal.vocab.DEFAULT_FP8_BLOCK): 1536 / 8 = 192 is refused by vLLM (issue 17569)."""
    from accelcal.vocab import DEFAULT_FP8_BLOCK

    assert ModelConfig.from_name("qwen3-235b-a22b").weight_block_size is None and DEFAULT_FP8_BLOCK == (128, 128)
    args = ["predict", "--profile", H100, "--interconnect", str(ROOT / "profiles" / "interconnect" /
                                                                 "h100-nvswitch-8.yaml"),
            "--model", "qwen3-235b-a22b", "--weight-dtype", "fp8_e4m3", "--concurrency", "4", "--isl", "256",
            "--osl", "16", "--tp", "8", "--engine", "vllm", "--format", "json"]
    assert main(args + ["--fp8-scaling", "block"]) == 0
    warned = [w for w in json.loads(capsys.readouterr().out)["warnings"] if "192 % 128 = 64" in w]
    assert warned and "blocks of 128 x 128 (assumed: the model states no weight_block_size)" in warned[0]
    assert main(args) == 0  # per-tensor scales: no blocks to keep whole
    assert not [w for w in json.loads(capsys.readouterr().out)["warnings"] if "192 % 128" in w]


def test_a_moe_tp_equal_to_tp_is_the_plain_split_and_says_so(capsys):
    args = ["predict", "--profile", H100, "--interconnect", NVSWITCH, "--model", "qwen3-30b-a3b", "--tp", "2", "--dp",
            "2", "--engine", "vllm", "--concurrency", "4", "--isl", "128", "--osl", "8", "--format", "json"]
    assert main(args + ["--moe-tp", "2"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert same["layout"]["moe_tp"] == 0 and same["ttft_mean_s"] == plain["ttft_mean_s"]
    note = "--moe-tp 2 = --tp 2: every expert is split over the replica's own TP group"
    assert any(n.startswith(note) for n in same["notes"])


def test_an_uneven_split_over_replicas_offers_whole_experts_in_words_that_fit_tp_1():
    from accelcal.models import ModelConfig
    from accelcal.planner.parallelism import Parallelism
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.step_cost import expert_split_issue

    m = ModelConfig.from_name("mixtral-8x7b")  # experts 14336 wide: 14336 % 3 = 2
    issue = expert_split_issue(m, Parallelism(tp=1, dp=3, moe_tp=3), EnginePreset.from_name("vllm"))
    assert issue is not None and issue.unequal and "14336 % 3 = 2" in issue.message
    assert issue.fits == ("--ep 1 (whole experts in every replica)",)
    assert "taken for every engine" in issue.source
