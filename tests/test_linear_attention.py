"""Hybrid models with Gated DeltaNet linear-attention layers (Qwen3-Next, Qwen3.5): config, weights, state, cost."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.dag import build_layer_dag
from accelcal.planner.memory import device_memory, kv_bytes_per_token, linear_state_bytes_per_seq
from accelcal.planner.parallelism import Parallelism
from accelcal.planner.workload import Workload
from test_hf_config import _write as write_config  # one config.json writer for the tests

ROOT = Path(__file__).resolve().parents[1]
H200 = str(ROOT / "profiles" / "nvidia-h200.yaml")
NVSWITCH = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")


def _text(**over) -> dict:
    """A small Qwen3.5-MoE text config: 8 layers, three linear to one full, no intermediate_size (all MoE)."""
    cfg = {"model_type": "qwen3_5_moe_text", "hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 8,
           "num_key_value_heads": 2, "head_dim": 64, "attn_output_gate": True,
           "layer_types": ["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 3 + ["full_attention"],
           "linear_num_key_heads": 4, "linear_num_value_heads": 8, "linear_key_head_dim": 32,
           "linear_value_head_dim": 32, "linear_conv_kernel_dim": 4, "num_experts": 16, "num_experts_per_tok": 4,
           "moe_intermediate_size": 64, "shared_expert_intermediate_size": 64, "vocab_size": 1000,
           "dtype": "bfloat16", "mamba_ssm_dtype": "float32"}
    cfg.update(over)
    return cfg


def _wrapped(**over) -> dict:
    return {"architectures": ["Qwen3_5MoeForConditionalGeneration"], "model_type": "qwen3_5_moe",
            "text_config": _text(**over), "vision_config": {"hidden_size": 32}}


def _write(tmp_path, cfg) -> str:
    return str(write_config(tmp_path, cfg, "mini-qwen35"))


def test_a_qwen35_moe_checkpoint_reads_through_its_wrapper_with_linear_layers(tmp_path):
    m = ModelConfig.resolve(_write(tmp_path, _wrapped()))
    assert (m.layers, m.linear_layers, m.full_attention_layers) == (8, 6, 2)
    assert (m.linear_key_heads, m.linear_value_heads, m.linear_key_head_dim, m.linear_value_head_dim,
            m.linear_conv_kernel) == (4, 8, 32, 32, 4)
    assert m.attn_output_gate and m.qk_norm == "per_head" and m.linear_state_dtype == "fp32"
    assert (m.num_experts, m.top_k, m.expert_ffn_size, m.shared_experts) == (16, 4, 64, 1)
    assert m.ffn_size == 64 and "no intermediate_size" in m.source and "vision tower" in m.source


def test_qwen3_next_without_layer_types_takes_every_fourth_layer_full(tmp_path):
    cfg = dict(_text(), architectures=["Qwen3NextForCausalLM"], intermediate_size=512, full_attention_interval=4)
    del cfg["layer_types"], cfg["mamba_ssm_dtype"]
    m = ModelConfig.resolve(_write(tmp_path, cfg))
    assert (m.linear_layers, m.full_attention_layers, m.linear_state_dtype) == (6, 2, "fp32")
    assert "every 4th layer full attention" in m.source


def test_a_dense_qwen35_checkpoint_keeps_its_mlp(tmp_path):
    text = {k: v for k, v in _text(model_type="qwen3_5_text", intermediate_size=512).items()
            if not k.startswith(("num_experts", "moe_", "shared_expert"))}
    m = ModelConfig.resolve(_write(tmp_path, {"architectures": ["Qwen3_5ForConditionalGeneration"],
                                              "text_config": text}))
    assert not m.is_moe and m.ffn_size == 512 and m.linear_layers == 6


@pytest.mark.parametrize("over, says", [
    ({"mamba_ssm_dtype": "int8"}, "mamba_ssm_dtype = 'int8'; expected one of ['float32', 'bfloat16', 'float16']"),
    ({"linear_num_value_heads": 6}, "linear_value_heads(6) % linear_key_heads(4) = 2"),
    ({"layer_types": ["linear_attention"] * 8}, "8 of 8 layers are linear_attention; a hybrid model needs both kinds"),
    ({"linear_num_key_heads": None}, "missing key 'linear_num_key_heads'"),
    ({"layer_types": ["linear_attention", "mamba"] * 4}, "layer_types[1] = 'mamba' (and 3 more)"),
])
def test_bad_hybrid_configs_name_the_file_and_key(tmp_path, over, says):
    with pytest.raises(ValueError) as exc:
        ModelConfig.resolve(_write(tmp_path, _wrapped(**over)))
    assert says in str(exc.value) and "config.json" in str(exc.value)


def test_model_fields_are_checked_together():
    m = ModelConfig.from_name("qwen3.5-397b-a17b")
    with pytest.raises(ValueError, match=r"linear_layers\(45\) needs linear_key_heads"):
        dataclasses.replace(m, linear_key_heads=0)
    with pytest.raises(ValueError, match="describe Gated DeltaNet layers and need linear_layers > 0"):
        dataclasses.replace(m, linear_layers=0)
    with pytest.raises(ValueError, match=r"must leave at least one full-attention layer"):
        dataclasses.replace(m, linear_layers=60)
    with pytest.raises(ValueError, match=r"--tp 32: qwen3.5-397b-a17b has Gated DeltaNet layers with 16 key heads and 16 % 32 = 16; .*Gated DeltaNet key heads, MLP evenly.*one of \[1, 2, 4, 8, 16\]"):
        m.require_tp_divides_heads(32)


def test_the_qwen35_397b_preset_counts_its_published_parameters():
    m = ModelConfig.from_name("qwen3.5-397b-a17b")
    total = m.weight_bytes() / 2  # bf16
    # 397B in all with the vision tower, 17B active (the model's name and card); the text model counted here
    assert total == pytest.approx(397e9, rel=0.005) and total < 397e9
    active = m.layers * (m.mixer_params() + (m.top_k + m.shared_experts) * m.expert_params()
                         + m.hidden_size * m.num_experts + 2 * m.hidden_size) + m.embedding_params()
    assert active == pytest.approx(17e9, rel=0.03)  # "A17B", a rounded figure: 17.35B with both embedding matrices
    # the gated query projection: 32 heads x 256 for the queries and as many for the gate, 2 KV heads
    assert m.attention_params() == 4096 * (2 * 32 + 2 * 2) * 256 + 32 * 256 * 4096
    # in_proj_qkvz 4096 x (2 x 2048 + 2 x 8192), in_proj_ba 4096 x 128, out_proj 8192 x 4096, conv 12288 x 4,
    # A_log and dt_bias (64 each), the gated norm (128)
    assert m.linear_attention_params() == 4096 * 20480 + 4096 * 128 + 8192 * 4096 + 12288 * 4 + 128 + 128


def test_only_the_full_attention_layers_cache_kv_and_each_sequence_keeps_a_state():
    m = ModelConfig.from_name("qwen3.5-397b-a17b")
    # 15 layers x K and V x 2 KV heads x 256 x 2 bytes; at TP 8 each rank keeps one (replicated) KV head
    assert m.kv_bytes_per_token() == 15 * 2 * 2 * 256 * 2
    assert kv_bytes_per_token(m, 8, 1, 1) == 15 * 2 * 1 * 256
    # per layer and rank at TP 8: the convolution's last 3 inputs of (2 x 2048 + 8192) / 8 channels in bf16, and
    # 64 / 8 value heads' 128 x 128 fp32 states
    assert m.linear_state_elems(8) == (1536 * 3, 8 * 128 * 128)
    assert m.linear_state_bytes(8) == 1536 * 3 * 2 + 8 * 128 * 128 * 4 == 533504
    assert linear_state_bytes_per_seq(m, 8, 1) == 45 * 533504
    # two stages of 30 layers: the busiest (8 of the 15 full-attention layers, as kv_bytes_per_token counts) holds 22
    # linear ones, not the 23 of the other stage on top (one stage never holds more than its 30 layers)
    assert linear_state_bytes_per_seq(m, 8, 2) == 22 * 533504
    assert linear_state_bytes_per_seq(m, 8, 4) == (15 - 4) * 533504
    assert m.linear_state_bytes(8) == dataclasses.replace(m, linear_state_dtype="bf16").linear_state_bytes(8) + 8 * 128 * 128 * 2
    mem = device_memory(m, Workload(prompt_len=1000, output_len=24, batch=4), Parallelism(tp=8, ep=8))
    assert mem.kv_cache_bytes == 4 * (1024 * kv_bytes_per_token(m, 8, 1, 2) + 45 * 533504)


def test_the_mean_layer_weighs_softmax_and_linear_attention_by_their_share_of_the_layers():
    m = ModelConfig.from_name("qwen3.5-397b-a17b")
    dag = build_layer_dag(m, "decode", 64, 1, 2048, Parallelism(tp=8, ep=8))
    nodes = {n.name: n.p for n in dag.nodes}
    assert nodes["qkv"]["layer_share"] == nodes["o_proj"]["layer_share"] == 0.25
    assert nodes["attention"]["spans"] == ((2048, 0.25, 0),) and "layer_share" not in nodes["attention"]
    assert nodes["qkv"]["n"] == (4 + 4 + 2) * 256  # 4 query heads, their gates, K and V of the replicated head
    for name in ("linear_in_qkvz", "linear_in_ba", "linear_recurrence", "linear_gated_norm", "linear_out"):
        assert nodes[name]["layer_share"] == 0.75
    assert (nodes["linear_in_qkvz"]["n"], nodes["linear_out"]["k"]) == ((2 * 2048 + 2 * 8192) // 8, 8192 // 8)
    assert "layer_share" not in nodes["tp_attn_all_reduce"] and "layer_share" not in nodes["router"]
    # a decode step reads and writes every sequence's state once per layer
    flop, nbytes = m.linear_recurrence_work(64, 1, 8)
    assert nodes["linear_recurrence"]["nbytes"] == nbytes and nbytes > 64 * 2 * 8 * 128 * 128 * 4
    assert flop == pytest.approx(6 * 64 * 8 * 128 * 128 + 2 * 64 * 12288 // 8 * 4)


def test_the_recurrence_is_costed_per_call_and_grows_with_the_batch():
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.step_cost import StepCoster, replica_parallelism

    prof = Profile.load(H200)
    m = ModelConfig.from_name("qwen3.5-397b-a17b")
    sc = StepCoster(prof, m, replica_parallelism(8, 1, 1, 8, ep=8), EnginePreset.from_name("sglang"))
    sc8 = sc._attn("decode", 8, 1, 2048, False)
    sc64 = sc._attn("decode", 64, 1, 2048, False)
    # the state traffic scales with the sequences: 45 layers' states read and written
    state_s = sc._costers[False].roofline(*m.linear_recurrence_work(64, 1, 8), "bf16").time_s
    assert sc64 > sc8 and state_s > 0 and sc64 >= 0.75 * state_s
    assert any("45 of 60 layers run Gated DeltaNet" in n for n in sc.notes)


def test_sglang_splits_its_state_pool_by_ratio_and_caps_the_running_requests(capsys):
    args = ["predict", "--profile", H200, "--interconnect", NVSWITCH, "--model", "qwen3.5-397b-a17b", "--tp", "8",
            "--ep", "8", "--engine", "sglang", "--weight-dtype", "fp8_e4m3", "--concurrency", "32", "--isl", "256",
            "--osl", "32", "--num-requests", "64", "--format", "json"]
    assert main(args) == 0
    base = json.loads(capsys.readouterr().out)["memory"]
    assert main(args + ["--engine-arg", "linear_state_memory_ratio=0.004"]) == 0
    out = json.loads(capsys.readouterr().out)
    mem, state = out["memory"], base["linear_state_bytes_per_seq"]
    assert state == 45 * 533504 and mem["linear_state_blocks_per_seq"] == 0
    # SGLang handle_max_mamba_cache: the state pool is ratio / (1 + ratio) of what the weights leave, in whole
    # states, and the running requests are capped at its states // 3 (MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO)
    left = base["kv_pool_bytes"] + base["linear_state_pool_bytes"]
    slots = int(left * 0.004 / 1.004 // state)
    assert mem["linear_state_pool_bytes"] == slots * state and mem["linear_state_max_seqs"] == slots // 3
    assert 0 < slots // 3 < 32 and mem["kv_pool_bytes"] == pytest.approx(left - slots * state)
    assert out["max_concurrent_sequences"] <= slots // 3


def test_vllm_holds_each_sequences_state_in_the_pools_blocks():
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.kv import Infeasible, kv_budget

    m = ModelConfig.from_name("qwen3.5-397b-a17b")
    eng = EnginePreset.from_name("vllm")
    kv = kv_budget(m, eng, 8, 1, 141e9, "fp8_e4m3", "fp8_e4m3", ep=8)
    per_block = kv.kv_bytes_per_token * eng.block_size_tokens
    assert kv.state_blocks_per_seq == math.ceil(45 * 533504 / per_block) and kv.max_state_seqs == 0
    assert kv.blocks_for(1) == 1 + kv.state_blocks_per_seq
    tiny = dataclasses.replace(kv, blocks=kv.state_blocks_per_seq)
    with pytest.raises(Infeasible, match="linear-attention state"):
        tiny.check_request(100, 10)


def test_validate_refuses_linear_attention_before_touching_a_device():
    from accelcal.validate.runner import _models

    with pytest.raises(ValueError, match=r"Gated DeltaNet linear-attention layers \(linear_layers\) and gated attention"):
        _models(["qwen3.5-397b-a17b"])


def test_the_model_gemm_sweep_covers_the_gated_query_and_the_linear_projections():
    from accelcal.kernels.model_shapes import model_gemm_shapes

    shapes, notes = model_gemm_shapes(["qwen3.5-397b-a17b"], [2, 8, 16])
    got = {s.name: (s.n, s.k) for s in shapes}
    assert got["qwen3.5-397b-a17b.qkv/tp2"] == ((16 + 16 + 2) * 256, 4096)
    assert got["qwen3.5-397b-a17b.linear_in_qkvz/tp2"] == ((2 * 2048 + 2 * 8192) // 2, 4096)
    assert got["qwen3.5-397b-a17b.linear_in_ba/tp2"] == (64, 4096) and not notes
    # past its 2 KV heads TP replicates them, as the planner does: TP 8 and 16 are swept too
    assert got["qwen3.5-397b-a17b.qkv/tp16"] == ((2 + 2 + 2) * 256, 4096)
    assert got["qwen3.5-397b-a17b.linear_in_qkvz/tp16"] == ((2 * 2048 + 2 * 8192) // 16, 4096)
    _, refused = model_gemm_shapes(["qwen3-32b"], [3])  # 8 KV heads and TP 3 divide neither way
    assert refused and "skipped" in refused[0]


@pytest.mark.parametrize("name, billions", [("qwen3.5-122b-a10b", 122), ("qwen3.5-35b-a3b", 35), ("qwen3.5-27b", 27)])
def test_the_other_qwen35_presets_count_their_published_sizes(name, billions):
    m = ModelConfig.from_name(name)
    # the checkpoints' names count the vision tower too (a few hundred million weights), the presets the text model
    assert m.weight_bytes() / 2 == pytest.approx(billions * 1e9, rel=0.015)
    assert m.linear_layers == 3 * m.full_attention_layers and m.attn_output_gate


def test_a_config_without_head_dim_takes_qwen3_nexts_default(tmp_path):
    text = _text()
    del text["head_dim"]
    m = ModelConfig.resolve(_write(tmp_path, dict(_wrapped(), text_config=text)))
    assert m.head_dim == 256 and "no head_dim: 256" in m.source  # not hidden_size / heads = 32


def test_the_state_pool_says_when_it_holds_back_the_clients(capsys):
    args = ["predict", "--profile", str(ROOT / "profiles" / "nvidia-h100.yaml"), "--model", "qwen3.5-35b-a3b",
            "--engine", "sglang", "--concurrency", "16", "--isl", "256", "--osl", "16", "--num-requests", "32",
            "--format", "json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    cap = out["memory"]["linear_state_max_seqs"]
    assert 0 < cap < 16 and out["max_concurrent_sequences"] <= cap
    assert any(f"runs at most {cap} requests at once per replica" in n and "fewer than the 16 clients" in n
               for n in out["notes"])


def test_a_request_too_long_for_the_pool_counts_its_state_blocks_apart():
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.kv import Infeasible, kv_budget

    m = ModelConfig.from_name("qwen3.5-397b-a17b")
    kv = kv_budget(m, EnginePreset.from_name("vllm"), 8, 1, 141e9, "fp8_e4m3", "fp8_e4m3", ep=8)
    kv = dataclasses.replace(kv, blocks=kv.state_blocks_per_seq + 10)
    with pytest.raises(Infeasible) as e:
        kv.check_request(16 * 11, 0)  # 11 blocks of 16 tokens
    assert (f"needs {11 + kv.state_blocks_per_seq} KV blocks" in str(e.value)
            and f"= 11 blocks, + its linear-attention state" in str(e.value))
