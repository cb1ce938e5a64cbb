"""DeepSeek-V2/V3-style models: multi-head latent attention (MLA) and dense layers ahead of the MoE ones."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.cli import main
from accelcal.models import ModelConfig, preset_for_hf_id
from accelcal.planner.cost import Coster
from accelcal.planner.dag import build_layer_dag
from accelcal.planner.memory import kv_bytes_per_token, layer_weight_bytes, stage_weight_bytes
from accelcal.planner.parallelism import Parallelism
from accelcal.vocab import attention_flop_bytes
from test_hf_config import _write as write_config  # one config.json writer for the tests

ROOT = Path(__file__).resolve().parents[1]
H200 = str(ROOT / "profiles" / "nvidia-h200.yaml")
NVSWITCH = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")


def _config(**over) -> dict:
    cfg = {"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 4,
           "num_attention_heads": 8, "num_key_value_heads": 8, "kv_lora_rank": 64, "q_lora_rank": 96,
           "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32, "intermediate_size": 512,
           "moe_intermediate_size": 64, "n_routed_experts": 8, "n_shared_experts": 1, "num_experts_per_tok": 2,
           "first_k_dense_replace": 1, "moe_layer_freq": 1, "vocab_size": 1000, "torch_dtype": "bfloat16"}
    cfg.update(over)
    return cfg


def _write(tmp_path, cfg) -> str:
    return str(write_config(tmp_path, cfg, "mini-deepseek"))


def test_the_deepseek_v3_preset_counts_its_published_parameters_and_latent_cache():
    m = ModelConfig.from_name("deepseek-v3")
    # 671B parameters in the main model (DeepSeek-V3 technical report, arXiv 2412.19437, section 4.2: 671B total)
    total = m.moe_layers * m.layer_params("moe") + m.dense_layers * m.layer_params("dense") + m.embedding_params()
    assert total == pytest.approx(671e9, rel=0.002)
    assert m.weight_bytes() == total  # fp8 e4m3: one byte per weight
    # one token: 61 layers x (512 latent + 64 rotary key) x 2 bytes, whole on every TP rank
    assert m.kv_bytes_per_token() == 61 * 576 * 2
    assert kv_bytes_per_token(m, 8, 1, 2) == kv_bytes_per_token(m, 1, 1, 2) == 70272
    assert preset_for_hf_id("deepseek-ai/DeepSeek-R1") == preset_for_hf_id("deepseek-ai/DeepSeek-V3") == "deepseek-v3"


def test_attention_runs_expanded_for_prompts_and_over_the_latent_for_decodes():
    m = ModelConfig.from_name("deepseek-v3")
    pre, dec = m.attention_shape("prefill", 8), m.attention_shape("decode", 8)
    assert (pre.heads, pre.kv_heads, pre.head_dim, pre.v_head_dim, pre.shared_kv) == (16, 16, 192, 128, False)
    assert (dec.heads, dec.kv_heads, dec.head_dim, dec.v_head_dim, dec.shared_kv) == (16, 1, 576, 512, True)
    q = ModelConfig.from_name("qwen3-32b").attention_shape("decode", 2)
    assert (q.heads, q.kv_heads, q.head_dim, q.v_head_dim, q.shared_kv) == (32, 4, 128, 128, False)


def test_attention_work_with_narrower_values_and_one_latent_for_keys_and_values():
    # standard call: 4 FLOP per (pair, head, dim); Q, O, K, V each read or written once
    flop, nbytes = attention_flop_bytes(2, 1, 100, 8, 2, 64, 2)
    assert flop == 4 * 2 * 8 * 64 * 100 and nbytes == 2 * (2 * 8 * 1 * 128 + 2 * 2 * 100 * 128)
    # MLA decode: QK^T over 576 and PV over 512 per pair; K read once as the 576-wide latent, no separate V
    flop, nbytes = attention_flop_bytes(2, 1, 100, 16, 1, 576, 2, v_head_dim=512, shared_kv=True)
    assert flop == 2 * 2 * 16 * (576 + 512) * 100
    assert nbytes == 2 * (2 * 16 * 1 * (576 + 512) + 2 * 1 * 100 * 576)


def test_an_mla_layer_has_the_latent_projections_and_attends_the_latent_when_decoding():
    m = ModelConfig.from_name("deepseek-v3")
    dag = build_layer_dag(m, "decode", 4, 1, 2048, Parallelism(tp=8))
    nodes = {n.name: n.p for n in dag.nodes}
    assert {"qkv_a", "qkv_a_norm", "q_b", "kv_b", "kv_cache_write"} <= set(nodes) and "qkv" not in nodes
    assert (nodes["qkv_a"]["n"], nodes["qkv_a"]["k"]) == (1536 + 576, 7168)       # replicated on every rank
    assert (nodes["q_b"]["n"], nodes["q_b"]["k"]) == (16 * 192, 1536)
    assert (nodes["kv_b"]["n"], nodes["kv_b"]["k"]) == (16 * (128 + 128), 512)
    assert (nodes["o_proj"]["k"], nodes["o_proj"]["n"]) == (16 * 128, 7168)
    att = nodes["attention"]
    assert (att["heads"], att["kv_heads"], att["head_dim"], att["v_head_dim"], att["shared_kv"]) == (16, 1, 576, 512, True)
    prefill = {n.name: n.p for n in build_layer_dag(m, "prefill", 1, 512, 512, Parallelism(tp=8)).nodes}
    assert (prefill["attention"]["kv_heads"], prefill["attention"]["v_head_dim"]) == (16, 128)


def test_the_mean_layer_weighs_the_dense_and_the_moe_blocks_by_their_share_of_the_layers():
    prof = Profile.load(H200)
    m = ModelConfig.from_name("deepseek-v3")
    moe = dataclasses.replace(m, dense_layers=0)
    dense = dataclasses.replace(m, num_experts=0, top_k=0, expert_ffn_size=0, shared_experts=0, dense_layers=0)
    coster = Coster(prof, dtype="bf16")

    def device_s(model):
        return coster.cost_dag(build_layer_dag(model, "decode", 16, 1, 1024, Parallelism(tp=1))).device_s

    share = m.dense_layers / m.layers
    assert device_s(m) == pytest.approx((1 - share) * device_s(moe) + share * device_s(dense), rel=1e-9)
    assert device_s(dense) < device_s(m) < device_s(moe)
    # where the host runs the kernels (a CPU profile) each kernel's launch is weighed the same way
    cpu = Coster(Profile.load(str(ROOT / "profiles" / "cpu-intel-xeon-2core.yaml")), dtype="fp32")
    small = dataclasses.replace(ModelConfig.from_name("deepseek-moe"), weight_dtype="fp32", kv_dtype="fp32")
    launch = {k: cpu.cost_dag(build_layer_dag(v, "decode", 16, 1, 1024), 4).launch_s for k, v in (
        ("mean", small), ("moe", dataclasses.replace(small, dense_layers=0)),
        ("dense", dataclasses.replace(small, num_experts=0, top_k=0, expert_ffn_size=0, shared_experts=0, dense_layers=0)))}
    s = small.dense_layers / small.layers
    assert launch["mean"] == pytest.approx((1 - s) * launch["moe"] + s * launch["dense"], rel=1e-9)


def test_with_sequence_parallelism_each_rank_expands_the_whole_prompts_latents():
    m = ModelConfig.from_name("deepseek-v3")
    nodes = {n.name: n.p for n in build_layer_dag(m, "prefill", 1, 2048, 2048, Parallelism(tp=8, sp=2)).nodes}
    assert (nodes["q_b"]["m"], nodes["kv_b"]["m"]) == (1024, 2048)   # its own half of the queries, all the keys
    assert nodes["sp_kv_all_gather"]["nbytes"] == 2048 * 576 * 2


def test_quantized_shared_experts_are_refused(tmp_path):
    cfg = _kimi_like(ignore=["lm_head", "re:.*self_attn.*"])
    with pytest.raises(ValueError, match="quantizes the shared experts too"):
        ModelConfig.resolve(_write(tmp_path, cfg))


def test_dense_layers_lighten_the_first_stage_and_the_busiest_stage_counts():
    m = ModelConfig.from_name("deepseek-v3")
    moe_b, dense_b = (layer_weight_bytes(m, 8, 1, 1, k) for k in ("moe", "dense"))
    embed = m.vocab_size * m.hidden_size // 8
    assert stage_weight_bytes(m, 8, 1, 1, 1, 2) == pytest.approx(58 * moe_b + 3 * dense_b + (2 * embed + m.hidden_size) * 2)
    assert dense_b < moe_b
    # a 61-layer model never splits evenly; a made-up 62-layer one over two stages: the second holds 31 MoE layers
    m62 = dataclasses.replace(m, layers=62)
    assert stage_weight_bytes(m62, 8, 2, 1, 1, 2) == pytest.approx(31 * moe_b + (embed + m.hidden_size) * 2)


def test_a_deepseek_config_json_reads_the_latent_attention_and_the_dense_layers(tmp_path):
    m = ModelConfig.resolve(_write(tmp_path, _config()))
    assert (m.kv_lora_rank, m.q_lora_rank, m.qk_rope_head_dim, m.v_head_dim, m.head_dim) == (64, 96, 16, 32, 48)
    assert (m.dense_layers, m.num_experts, m.shared_experts, m.expert_ffn_size, m.kv_heads) == (1, 8, 1, 64, 8)
    lite = ModelConfig.resolve(_write(tmp_path, _config(q_lora_rank=None)))  # DeepSeek-V2-Lite: no query bottleneck
    assert lite.q_lora_rank == 0 and lite.attention_params() < m.attention_params() + 256 * 8 * 48
    for over, words in ((dict(moe_layer_freq=2), "moe_layer_freq = 2"),
                        (dict(first_k_dense_replace=4), "first_k_dense_replace(4) >= num_hidden_layers(4)"),
                        (dict(kv_lora_rank=0), "kv_lora_rank = 0; expected an integer >= 1")):
        with pytest.raises(ValueError, match=r"config\.json") as exc:
            ModelConfig.resolve(_write(tmp_path, _config(**over)))
        assert words in str(exc.value)


def test_bad_latent_attention_fields_are_refused_with_the_arithmetic():
    base = ModelConfig.from_name("deepseek-v3")
    with pytest.raises(ValueError, match=r"qk_rope_head_dim\(192\) < head_dim\(192\)"):
        dataclasses.replace(base, qk_rope_head_dim=192)
    with pytest.raises(ValueError, match=r"kv_heads\(8\) must equal heads\(128\)"):
        dataclasses.replace(base, kv_heads=8)
    with pytest.raises(ValueError, match="need kv_lora_rank > 0"):
        dataclasses.replace(ModelConfig.from_name("qwen3-32b"), v_head_dim=128)
    with pytest.raises(ValueError, match=r"dense_layers\(2\) needs a MoE model"):
        dataclasses.replace(ModelConfig.from_name("qwen3-32b"), dense_layers=2)


def test_validate_refuses_latent_attention_before_touching_a_device():
    from accelcal.validate.runner import _models

    with pytest.raises(ValueError, match="multi-head latent attention"):
        _models(["deepseek-v3"])


def test_predict_serves_deepseek_v3_on_eight_gpus_with_the_latent_cache_whole_on_each(capsys):
    rc = main(["predict", "--profile", H200, "--interconnect", NVSWITCH, "--model", "deepseek-v3", "--tp", "8",
               "--engine", "sglang", "--concurrency", "16", "--isl", "512", "--osl", "64", "--num-requests", "32",
               "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["feasible"]
    assert out["memory"]["kv_bytes_per_token"] == 70272
    assert out["tpot_mean_s"] > 0 and out["ttft_mean_s"] > 0


def _kimi_like(**quant) -> dict:
    q = {"quant_method": "compressed-tensors", "format": "pack-quantized",
         "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None, "output_activations": None,
                                       "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 32,
                                                   "symmetric": True, "dynamic": False}}},
         "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|down)_proj.*"]}
    q.update(quant)
    return {"architectures": ["KimiK25ForConditionalGeneration"], "tie_word_embeddings": False,
            "vision_config": {"hidden_size": 64}, "text_config": _config(dtype="bfloat16", quantization_config=q)}


def test_kimi_k25_experts_are_four_bit_integers_with_a_bf16_scale_per_32_weights():
    m = ModelConfig.from_name("kimi-k2.5")
    assert (m.expert_weight_dtype, m.weight_dtype, m.dense_layers, m.num_experts) == ("int4_g32", "bf16", 1, 384)
    routed = 60 * 384 * 3 * 7168 * 2048
    rest = 60 * m.layer_params("moe") + m.layer_params("dense") + m.embedding_params() - routed
    assert m.weight_bytes() == pytest.approx(rest * 2 + routed * (4 * 32 + 16) / 32 / 8)
    assert preset_for_hf_id("moonshotai/Kimi-K2.5") == "kimi-k2.5"


def test_a_multimodal_wrapper_is_read_through_its_text_config(tmp_path):
    m = ModelConfig.resolve(_write(tmp_path, _kimi_like()))
    assert (m.kv_lora_rank, m.expert_weight_dtype, m.weight_dtype) == (64, "int4_g32", "bf16")
    assert "text_config" in m.source and "vision tower" in m.source
    for bad, words in ((dict(config_groups={"g": {"weights": {"num_bits": 4, "type": "int", "strategy": "group",
                                                               "group_size": 64, "symmetric": True},
                                                   "input_activations": None}}), "group_size one of [32, 128]"),
                       (dict(ignore=["lm_head"]), "the attention (self_attn) in ignore"),
                       (dict(config_groups={"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "tensor"},
                                                  "input_activations": {"num_bits": 8}}}), "num_bits: 4")):
        with pytest.raises(ValueError, match=r"config\.json text_config: quantization_config \(compressed-tensors\)") as e:
            ModelConfig.resolve(_write(tmp_path, _kimi_like(**bad)))
        assert words in str(e.value)
    # a wrapper around an architecture that is not supported is refused with the wrapper's name
    with pytest.raises(ValueError, match="KimiK25ForConditionalGeneration is not supported"):
        ModelConfig.resolve(_write(tmp_path, dict(_kimi_like(), text_config={"architectures": ["FalconH1ForCausalLM"]})))


def test_a_wrapper_lends_its_quantization_config_to_the_text_model_and_names_what_it_cannot_read(tmp_path):
    cfg = _kimi_like()
    cfg["quantization_config"] = cfg["text_config"].pop("quantization_config")  # where llm-compressor writes it
    m = ModelConfig.resolve(_write(tmp_path, cfg))
    assert m.expert_weight_dtype == "int4_g32" and "quantization_config from the wrapper" in m.source
    bare = dict(_kimi_like(), text_config={"model_type": "kimi_vl_text", "hidden_size": 64})
    with pytest.raises(ValueError, match="nor is its text_config's \\(it names no architectures\\)"):
        ModelConfig.resolve(_write(tmp_path, bare))


def test_pipeline_stages_split_61_layers_unevenly_as_the_engines_do():
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.step_cost import StepCoster, replica_parallelism

    prof, _, _ = combine_profiles(Profile.load(str(ROOT / "profiles" / "nvidia-h100.yaml")), Profile.load(NVSWITCH))
    m = dataclasses.replace(ModelConfig.from_name("qwen3-32b"), layers=61)
    sc = StepCoster(prof, m, replica_parallelism(1, 2, 1, 8), EnginePreset.from_name("vllm"))
    layer_s, edge = sc._parts(4, 512.0, (), None)[0], sc._parts(4, 512.0, (), None)[4]
    path, first, last, middle = sc._passes(4, 512.0, (), None)
    assert sc.layers_per_stage == 31                      # vLLM / SGLang get_pp_indices: 31 + 30
    assert path == pytest.approx(61 * layer_s + edge)     # every layer once on the way through
    assert middle - sc._parts(4, 512.0, (), None)[7].get("pp_send", 0.0) == pytest.approx(31 * layer_s)
    with pytest.raises(ValueError, match=r"pp\(62\) > layers\(61\)"):
        StepCoster(prof, m, replica_parallelism(1, 62, 1, 62), EnginePreset.from_name("vllm"))


def test_the_model_gemm_sweep_covers_the_latent_projections_and_the_dense_layers():
    from accelcal.kernels.model_shapes import model_gemm_shapes

    shapes, notes = model_gemm_shapes(["deepseek-v3"], [8])
    got = {g.name: (g.n, g.k) for g in shapes}
    assert got["deepseek-v3.qkv_a/tp8"] == (1536 + 512 + 64, 7168)      # replicated: not divided by TP
    assert got["deepseek-v3.kv_b/tp8"] == (16 * (128 + 128), 512)
    assert got["deepseek-v3.o_proj/tp8"] == (7168, 16 * 128)
    assert got["deepseek-v3.gate_up/tp8"] == (2 * 18432 // 8, 7168)      # the three dense layers' MLP
    assert "deepseek-v3.qkv/tp8" not in got and not notes


def test_sparse_attention_attends_topk_keys_and_scores_every_one_with_its_indexer():
    m = ModelConfig.from_name("deepseek-v3.2")
    assert m.attention_layers(1, 10_000) == ((2048, 1.0, 2048),)            # a decode attends its 2048 chosen keys
    assert m.attention_layers(1, 1000) == ((1000, 1.0, 2048),)
    assert m.attention_layers(512, 8192) == ((512 + 2047, 1.0, 2048),)      # as many pairs as a 2048-key window
    # those pairs: 2048 per query once a query has that many keys behind it, fewer before (a fresh prompt)
    from accelcal.vocab import attended_pairs
    assert attended_pairs(512, 512 + 2047, True, 2048) == 512 * 2048
    assert attended_pairs(4096, 4096, True, 2048) == 2048 * 2049 / 2 + 2048 * 2048
    assert attended_pairs(300, 1000, True, 2048) == attended_pairs(300, 1000, True)   # no query has 2048 keys yet
    # the cache: 61 layers x (576 latent values x 2 B + an fp8 indexer key of 128 with one fp32 scale)
    assert m.kv_bytes_per_token() == 61 * (576 * 2 + 128 + 4)
    assert kv_bytes_per_token(m, 8, 1, 2) == m.kv_bytes_per_token()
    nodes = {n.name: n.p for n in build_layer_dag(m, "decode", 4, 1, 8192, Parallelism(tp=8)).nodes}
    idx = nodes["indexer"]  # 64 query heads against 4 sequences' 8192 keys each: 2 FLOP per pair, head and dim
    assert idx["flop"] == 2 * 4 * 8192 * 64 * 128 and idx["dtype"] == "fp8_e4m3"
    assert idx["nbytes"] == 4 * (64 * 128 + 8192 * 132) + 4 * 4 * 8192    # queries, fp8 keys + scales, fp32 scores
    flop, _ = m.indexer_scoring_work(1, 4096, 4096)
    assert flop == 2 * (4096 * 4097 / 2) * 64 * 128                        # a prompt scores its causal pairs
    assert nodes["indexer_topk"]["nbytes"] == 4 * 4 * 8192              # the top-k reads the 4 sequences' scores
    assert (nodes["index_q"]["n"], nodes["index_q"]["k"]) == (64 * 128, 1536)
    # the indexer's work: 2 FLOP per (query, key, head, dim), one key read per token, no values
    flop, nbytes = attention_flop_bytes(4, 1, 8192, 64, 1, 128, 2, v_head_dim=0, shared_kv=True)
    assert flop == 2 * 4 * 64 * 128 * 8192 and nbytes == 2 * 4 * (64 * 128 + 8192 * 128)  # each sequence its keys


def test_the_serving_step_costs_the_indexer_per_call_over_the_whole_context():
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.step_cost import StepCoster, replica_parallelism

    prof = Profile.load(H200)
    m = ModelConfig.from_name("deepseek-v3.2")
    dense = dataclasses.replace(m, index_topk=0, index_heads=0, index_head_dim=0)
    sc = StepCoster(prof, m, replica_parallelism(1, 1, 1, 1), EnginePreset.from_name("vllm"))
    plain = StepCoster(prof, dense, replica_parallelism(1, 1, 1, 1), EnginePreset.from_name("vllm"))
    # short contexts: the same keys attended, plus the indexer; long ones: 2048 keys instead of all of them
    assert sc._attn("decode", 32, 1, 1024, False) > plain._attn("decode", 32, 1, 1024, False)
    assert sc._attn("decode", 32, 1, 65536, False) < plain._attn("decode", 32, 1, 65536, False)
    assert sc._attn("prefill", 1, 32768, 32768, False) < plain._attn("prefill", 1, 32768, 32768, False)
    assert any("sparse attention: each query attends at most 2048 keys" in n for n in sc.notes)


def test_glm5_reads_as_latent_attention_with_an_indexer():
    m = ModelConfig.from_name("glm-5")
    assert m.weight_bytes() / 2 == pytest.approx(744e9, rel=0.005)   # 744B total (GLM-5 technical report, arXiv 2602.15763)
    assert (m.head_dim, m.v_head_dim, m.index_heads, m.dense_layers) == (256, 256, 32, 3)
    assert preset_for_hf_id("zhipuai/GLM-5") == preset_for_hf_id("zai-org/GLM-5-FP8") == "glm-5"
    with pytest.raises(ValueError, match="all 0 or all > 0"):
        dataclasses.replace(m, index_heads=0)


def test_the_layer_planner_caps_sparse_attention_at_its_topk_and_scores_with_an_fp8_gemm(tmp_path):
    m = ModelConfig.from_name("deepseek-v3.2")
    nodes = {n.name: n.p for n in build_layer_dag(m, "decode", 4, 1, 65536, Parallelism(tp=8)).nodes}
    assert nodes["attention"]["spans"] == ((2048, 1.0, 2048),) and nodes["indexer"]["dtype"] == "fp8_e4m3"
    coster = Coster(Profile.load(H200), dtype="bf16")
    att = coster.cost_node(build_layer_dag(m, "decode", 4, 1, 65536, Parallelism(tp=8)).nodes[
        [n.name for n in build_layer_dag(m, "decode", 4, 1, 65536, Parallelism(tp=8)).nodes].index("attention")], 2)
    dense = ModelConfig.from_name("deepseek-v3")
    full = [n for n in build_layer_dag(dense, "decode", 4, 1, 65536, Parallelism(tp=8)).nodes if n.name == "attention"][0]
    assert att.device_s < 0.2 * coster.cost_node(full, 2).device_s        # 2048 keys, not 65536
    sp = {n.name: n.p for n in build_layer_dag(m, "prefill", 1, 4096, 4096, Parallelism(tp=8, sp=2)).nodes}
    assert sp["sp_kv_all_gather"]["nbytes"] == 4096 * (576 * 2 + 132)   # the latents and the indexer's keys
    cfg = dict(_config(), architectures=["GlmMoeDsaForCausalLM"], index_topk=64, index_n_heads=4, index_head_dim=128,
               index_topk_freq=4)
    with pytest.raises(ValueError, match="layers sharing the indexer's top-k are not modelled"):
        ModelConfig.resolve(_write(tmp_path, cfg))
    ok = ModelConfig.resolve(_write(tmp_path, dict(cfg, index_topk_freq=1)))
    assert (ok.index_topk, ok.index_heads) == (64, 4)
