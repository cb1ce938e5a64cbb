"""Hugging Face config.json -> ModelConfig, the new presets, and `accelcal plan --model config.json`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from accelcal.cli import main as accelcal_main
from accelcal.models.hf_config import ARCHITECTURES, MAX_CONFIG_BYTES
from accelcal.planner.memory import device_memory
from accelcal.planner.parallelism import Parallelism
from accelcal.models import ModelConfig
from accelcal.models.config import PRESET_DIR
from accelcal.planner.workload import Workload

REPO = Path(__file__).resolve().parent.parent

# Shapes written here for the tests; the dense one has MHA and no head_dim key (hidden/heads is used).
DENSE = {"architectures": ["LlamaForCausalLM"], "hidden_size": 512, "num_hidden_layers": 4,
         "num_attention_heads": 8, "intermediate_size": 1536, "vocab_size": 1000, "torch_dtype": "float16",
         "max_position_embeddings": 4096, "tie_word_embeddings": False}
GQA = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 640, "num_hidden_layers": 6,
       "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 2048,
       "vocab_size": 3000, "dtype": "bfloat16", "max_position_embeddings": 40960, "tie_word_embeddings": True}
MOE = {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 256, "num_hidden_layers": 4,
       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 768,
       "moe_intermediate_size": 128, "num_experts": 16, "num_experts_per_tok": 4, "decoder_sparse_step": 1,
       "mlp_only_layers": [], "vocab_size": 2048, "torch_dtype": "bfloat16", "tie_word_embeddings": False}


def _write(tmp_path: Path, cfg: dict, folder: str = "my-model") -> Path:
    d = tmp_path / folder
    d.mkdir(parents=True, exist_ok=True)
    p = d / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def test_dense_config(tmp_path):
    m = ModelConfig.resolve(str(_write(tmp_path, DENSE)))
    assert (m.name, m.layers, m.hidden_size, m.heads, m.ffn_size, m.vocab_size) == ("my-model", 4, 512, 8, 1536, 1000)
    assert m.kv_heads == m.heads == 8  # no num_key_value_heads: MHA
    assert m.head_dim == 512 // 8
    assert (m.weight_dtype, m.kv_dtype, m.max_context_len, m.tie_word_embeddings) == ("fp16", "fp16", 4096, False)
    assert not m.is_moe and "LlamaForCausalLM" in m.source


def test_gqa_config_explicit_head_dim_and_folder(tmp_path):
    p = _write(tmp_path, GQA, folder="qwen-ish")
    m = ModelConfig.resolve(str(p.parent))  # the folder works as well as the file
    assert (m.heads, m.kv_heads, m.head_dim) == (8, 2, 128)
    assert m.head_dim != m.hidden_size // m.heads  # 640 / 8 = 80, never used when head_dim is stated
    assert (m.q_size, m.kv_size) == (8 * 128, 2 * 128)
    assert m.kv_bytes_per_token() == 6 * 2 * 2 * 128 * 2  # layers x (K,V) x kv_heads x head_dim x bf16
    assert (m.weight_dtype, m.tie_word_embeddings, m.max_context_len) == ("bf16", True, 40960)


def test_moe_config(tmp_path):
    m = ModelConfig.resolve(str(_write(tmp_path, MOE)))
    assert (m.num_experts, m.top_k, m.expert_ffn_size, m.shared_experts) == (16, 4, 128, 0)
    assert (m.ffn_size, m.head_dim, m.kv_heads) == (768, 64, 2)
    mixtral = dict(DENSE, architectures=["MixtralForCausalLM"], num_key_value_heads=2, num_local_experts=8,
                   num_experts_per_tok=2, sliding_window=4096)
    x = ModelConfig.from_hf(_write(tmp_path, mixtral, folder="mix"))
    assert (x.num_experts, x.top_k, x.expert_ffn_size, x.ffn_size) == (8, 2, 1536, 1536)
    assert "sliding_window=4096 not modelled" in x.source


def test_minimax_m2_config_uses_mixtral_keys_and_matches_its_preset(tmp_path):
    # the MiniMax-M2 family's config.json fields (the preset's citation), as a file
    cfg = {"architectures": ["MiniMaxM2ForCausalLM"], "model_type": "minimax_m2", "hidden_size": 3072,
           "intermediate_size": 1536, "num_hidden_layers": 62, "num_attention_heads": 48, "num_key_value_heads": 8,
           "head_dim": 128, "num_local_experts": 256, "num_experts_per_tok": 8, "shared_intermediate_size": 0,
           "vocab_size": 200064, "max_position_embeddings": 196608, "tie_word_embeddings": False,
           "rotary_dim": 64, "use_qk_norm": True, "scoring_func": "sigmoid", "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "fp8", "fmt": "float8_e4m3fn", "weight_block_size": [128, 128]}}
    m = ModelConfig.from_hf(_write(tmp_path, cfg, folder="MiniMax-M2.5"))
    assert (m.num_experts, m.top_k, m.expert_ffn_size, m.shared_experts, m.head_dim) == (256, 8, 1536, 0, 128)
    assert m.qk_norm == ModelConfig.from_name("minimax-m2.5").qk_norm == "per_layer"
    assert (m.weight_dtype, m.weight_block_size) == ("fp8_e4m3", (128, 128))
    preset = ModelConfig.from_name("minimax-m2.5")
    assert m.kv_bytes_per_token() == preset.kv_bytes_per_token()
    assert m.weight_bytes() / m.weight_bytes_per_elem == preset.weight_bytes() / preset.weight_bytes_per_elem
    # an always-active expert is counted in units of one routed expert, and must be a whole number of them
    two = ModelConfig.from_hf(_write(tmp_path, dict(cfg, shared_intermediate_size=3072), folder="shared"))
    assert two.shared_experts == 2
    with pytest.raises(ValueError, match=r"shared_intermediate_size\(1000\) % expert width\(1536\) = 1000"):
        ModelConfig.from_hf(_write(tmp_path, dict(cfg, shared_intermediate_size=1000), folder="odd"))


def test_qk_norm_from_the_architecture_or_the_config_keys(tmp_path):
    # Qwen3 (dense and MoE) normalise each head's q and k; Llama has no q/k norm; MiniMax-M2 states it in its config
    assert ModelConfig.from_hf(_write(tmp_path, GQA, folder="q3")).qk_norm == "per_head"
    assert ModelConfig.from_hf(_write(tmp_path, MOE, folder="q3moe")).qk_norm == "per_head"
    assert ModelConfig.from_hf(_write(tmp_path, DENSE, folder="llama")).qk_norm == ""
    mm = {"architectures": ["MiniMaxM2ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 128,
          "num_local_experts": 8, "num_experts_per_tok": 2, "vocab_size": 1000, "torch_dtype": "bfloat16"}
    assert ModelConfig.from_hf(_write(tmp_path, mm, folder="mm0")).qk_norm == ""
    assert ModelConfig.from_hf(_write(tmp_path, dict(mm, use_qk_norm=True), folder="mm1")).qk_norm == "per_layer"
    assert ModelConfig.from_hf(_write(tmp_path, dict(mm, use_qk_norm=True, qk_norm_type="per_head"),
                                      folder="mm2")).qk_norm == "per_head"
    bad = _write(tmp_path, dict(mm, use_qk_norm=True, qk_norm_type="per_token"), folder="mm3")
    with pytest.raises(ValueError, match=r"config\.json: qk_norm_type = 'per_token'; expected 'per_layer' or 'per_head'"):
        ModelConfig.from_hf(bad)
    with pytest.raises(ValueError, match=r"use_qk_norm = 'yes'; expected true or false"):
        ModelConfig.from_hf(_write(tmp_path, dict(mm, use_qk_norm="yes"), folder="mm4"))
    with pytest.raises(ValueError, match=r"qk_norm='rms'; expected one of \['', 'per_head', 'per_layer'\]"):
        ModelConfig.from_dict(dict(ModelConfig.from_name("qwen3-32b").to_dict(), qk_norm="rms"))


def test_tied_embeddings_change_weight_bytes_by_one_matrix(tmp_path):
    tied = ModelConfig.resolve(str(_write(tmp_path, GQA, folder="tied")))
    untied = ModelConfig.resolve(str(_write(tmp_path, dict(GQA, tie_word_embeddings=False), folder="untied")))
    matrix = GQA["vocab_size"] * GQA["hidden_size"] * 2  # vocab x hidden x bf16 bytes
    assert untied.weight_bytes() - tied.weight_bytes() == matrix
    wl = Workload(prompt_len=128, output_len=16, batch=2)
    assert (device_memory(untied, wl).weights_bytes - device_memory(tied, wl).weights_bytes) == matrix
    # across pipeline stages each end holds its own copy, tied or not
    assert device_memory(untied, wl, Parallelism(pp=2)).weights_bytes == device_memory(tied, wl, Parallelism(pp=2)).weights_bytes


def test_fp8_quantization_config(tmp_path):
    cfg = dict(GQA, quantization_config={"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]})
    m = ModelConfig.from_hf(_write(tmp_path, cfg))
    assert (m.weight_dtype, m.kv_dtype, m.weight_block_size) == ("fp8_e4m3", "bf16", (128, 128))
    assert "block-scaled [128, 128]" in m.source
    bad = dict(GQA, quantization_config={"quant_method": "fp8", "weight_block_size": [128]})
    with pytest.raises(ValueError, match=r"weight_block_size must be \[rows, cols\] of positive integers, got \[128\]"):
        ModelConfig.from_hf(_write(tmp_path, bad, folder="badblock"))
    assert ModelConfig.from_dict(m.to_dict()) == m  # round-trips through plain data
    e5m2 = dict(GQA, quantization_config={"quant_method": "fp8", "fmt": "float8_e5m2"})
    with pytest.raises(ValueError, match=r"fmt = 'float8_e5m2'; only e4m3 fp8 weights are supported"):
        ModelConfig.from_hf(_write(tmp_path, e5m2, folder="e5m2"))
    with pytest.raises(ValueError, match=r"quant_method = 'awq' is not supported; supported: fp8"):
        ModelConfig.from_hf(_write(tmp_path, dict(GQA, quantization_config={"quant_method": "awq"}), folder="awq"))


def test_unknown_architecture_names_file_and_supported(tmp_path):
    p = _write(tmp_path, dict(DENSE, architectures=["FalconH1ForCausalLM"]))  # Mamba-2 mixers beside attention
    with pytest.raises(ValueError) as e:
        ModelConfig.resolve(str(p))
    msg = str(e.value)
    assert str(p) in msg and "FalconH1ForCausalLM is not supported" in msg
    for a in ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "MistralForCausalLM",
              "MixtralForCausalLM", "Qwen3MoeForCausalLM"):
        assert a in msg and a in ARCHITECTURES


def test_architectures_as_a_string_is_named_not_called_missing(tmp_path):
    p = _write(tmp_path, dict(DENSE, architectures="LlamaForCausalLM"))
    with pytest.raises(ValueError, match=r"'architectures' must be a non-empty list of class names.*got "
                                         r"'LlamaForCausalLM'"):
        ModelConfig.resolve(str(p))
    q = _write(tmp_path, {k: v for k, v in DENSE.items() if k != "architectures"}, folder="none")
    with pytest.raises(ValueError, match=r"missing key 'architectures'"):
        ModelConfig.resolve(str(q))


@pytest.mark.parametrize("change, expected", [
    ({"num_hidden_layers": None}, r"missing key 'num_hidden_layers'"),
    ({"hidden_size": "512"}, r"hidden_size = '512'; expected an integer >= 1"),
    ({"tie_word_embeddings": "yes"}, r"tie_word_embeddings = 'yes'; expected true or false"),
    ({"torch_dtype": "float8"}, r"torch_dtype = 'float8'; expected one of"),
    ({"hidden_size": 500}, r"no head_dim, and hidden_size\(500\) % num_attention_heads\(8\) = 4"),
])
def test_missing_or_ill_typed_key_names_file_and_key(tmp_path, change, expected):
    cfg = {k: v for k, v in {**DENSE, **change}.items() if v is not None}
    p = _write(tmp_path, cfg)
    with pytest.raises(ValueError, match=expected) as e:
        ModelConfig.from_hf(p)
    assert str(p) in str(e.value)


def test_mistral_needs_kv_heads_and_moe_dense_layers_are_refused(tmp_path):
    with pytest.raises(ValueError, match="missing key 'num_key_value_heads'"):
        ModelConfig.from_hf(_write(tmp_path, dict(DENSE, architectures=["MistralForCausalLM"])))
    with pytest.raises(ValueError, match=r"2 of 4 layers are dense MLPs \(decoder_sparse_step=2"):
        ModelConfig.from_hf(_write(tmp_path, dict(MOE, decoder_sparse_step=2), folder="sparse2"))


def test_reads_safely(tmp_path):
    p = tmp_path / "big" / "config.json"
    p.parent.mkdir()
    p.write_bytes(b" " * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ValueError, match="larger than the .* byte .* limit"):
        ModelConfig.from_hf(p)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        ModelConfig.resolve(str(bad))
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(dict(DENSE)).replace("4096", "NaN"))
    with pytest.raises(ValueError, match="NaN is not valid JSON"):
        ModelConfig.from_hf(nan)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ModelConfig.resolve(str(tmp_path / "absent.json"))
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        with pytest.raises(ValueError, match="expected a regular file"):
            ModelConfig.from_hf(fifo)  # refused before open: reading a FIFO would block


@pytest.mark.parametrize("name, params_b", [
    ("llama3.1-8b", 8.03), ("llama3.1-70b", 70.55), ("llama3.1-405b", 405.85), ("qwen3-32b", 32.76),
    ("qwen3-30b-a3b", 30.53), ("qwen3-235b-a22b", 235.0), ("minimax-m2.5", 228.69)])
def test_new_presets_load_and_cite(name, params_b):
    m = ModelConfig.from_name(name)
    raw = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())
    assert m.source.startswith("https://huggingface.co/") and "/config.json" in m.source
    # every number the preset states appears in its citation (as key=value)
    assert f"num_hidden_layers={raw['layers']}" in m.source and f"vocab_size={raw['vocab_size']}" in m.source
    # total parameters as the model cards state them (weight bytes / 2 for bf16), to 0.1 %
    assert m.weight_bytes() / m.weight_bytes_per_elem / 1e9 == pytest.approx(params_b, rel=1e-3)


def test_qwen3_presets_match_their_config_json_form(tmp_path):
    # the same numbers written as a config.json parse to the preset (head_dim explicit, not 5120/64)
    cfg = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 5120, "num_hidden_layers": 64,
           "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 25600,
           "vocab_size": 151936, "max_position_embeddings": 40960, "tie_word_embeddings": False,
           "torch_dtype": "bfloat16"}
    m = ModelConfig.from_hf(_write(tmp_path, cfg, folder="Qwen3-32B"))
    preset = ModelConfig.from_name("qwen3-32b")
    assert m.weight_bytes() == preset.weight_bytes() and m.kv_bytes_per_token() == preset.kv_bytes_per_token()
    assert m.head_dim == 128 and m.qk_norm == preset.qk_norm == "per_head"


def test_plan_cli_with_config_json(tmp_path, capsys):
    p = _write(tmp_path, GQA, folder="gqa-model")
    rc = accelcal_main(["plan", "--model", str(p), "--profile", str(REPO / "profiles" / "nvidia-h100.yaml"),
                        "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "gqa-model" and out["model"]["head_dim"] == 128
    assert out["model"]["tie_word_embeddings"] is True
    assert out["groups"] and out["groups"][0]["feasible"] > 0


def test_presets_are_found_by_the_hugging_face_id_they_cite():
    from accelcal.models import preset_for_hf_id

    assert preset_for_hf_id("Qwen/Qwen3-32B") == "qwen3-32b"
    # instruct and quantised checkpoints share their base model's architecture
    assert preset_for_hf_id("meta-llama/Llama-3.1-8B-Instruct") == "llama3.1-8b"
    assert preset_for_hf_id("nvidia/Llama-3.1-8B-Instruct-FP8") == "llama3.1-8b"
    assert preset_for_hf_id("Qwen/Qwen3-235B-A22B-FP8") == "qwen3-235b-a22b"
    assert preset_for_hf_id("meta-llama/Meta-Llama-3.1-70B") == "llama3.1-70b"
    assert preset_for_hf_id("meta-llama/Meta-Llama-3-8B") == "llama3-8b"  # Llama 3, not 3.1
    assert preset_for_hf_id("MiniMaxAI/MiniMax-M2.5") == "minimax-m2.5"
    assert preset_for_hf_id("deepseek-ai/DeepSeek-R1") == "deepseek-v3"  # the preset cites both checkpoints
    assert preset_for_hf_id("moonshotai/Kimi-K2.5") == "kimi-k2.5"
    assert preset_for_hf_id("zhipuai/GLM-5") == "glm-5"  # zai-org/GLM-5 is cited; the org is not compared
    assert preset_for_hf_id("Qwen/Qwen3.5-397B-A17B-FP8") == "qwen3.5-397b-a17b"
    assert preset_for_hf_id("Qwen/Qwen3-Next-80B-A3B-Instruct") is None
    assert preset_for_hf_id("openai/gpt-oss-120b") == "gpt-oss-120b"


def test_no_two_presets_cite_the_same_checkpoint():
    from accelcal.models import preset_for_hf_id, preset_names
    from accelcal.models.config import _HF_ID, _hf_key

    keys = {}
    for name in preset_names():
        src = ModelConfig.from_name(name).source.replace("https://huggingface.co/", "")
        m = _HF_ID.search(src)
        if m:
            key = _hf_key(m.group(1))
            assert key not in keys, f"{name} and {keys.get(key)} both cite {key}"
            keys[key] = name
            assert preset_for_hf_id(m.group(1)) == name  # each cited id finds its own preset
    assert len(keys) >= 10  # every published-model preset cites its checkpoint


def test_a_sliding_window_the_costing_leaves_out_is_a_serving_warning(tmp_path):
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import predict_serving

    cfg = dict(DENSE, architectures=["MistralForCausalLM"], num_key_value_heads=DENSE["num_attention_heads"],
               sliding_window=4096)
    m = ModelConfig.from_hf(_write(tmp_path, cfg))
    prof = Profile.load(Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml")
    res = predict_serving(prof, m, "vllm", concurrency=2, isl=256, osl=8)
    assert any("sliding_window=4096 not modelled (attention and KV at full context)" in w for w in res.warnings)
    # not costed, yet a window of no tokens is a broken config, refused by file and key like any other size
    with pytest.raises(ValueError, match=r"config.json: sliding_window = -5; expected an integer >= 1"):
        ModelConfig.from_hf(_write(tmp_path, dict(cfg, sliding_window=-5), folder="negative-window"))


def test_a_model_path_to_a_device_is_called_a_path_not_an_unknown_preset():
    with pytest.raises(ValueError, match=r"model path /dev/null is not a regular file \(a device, FIFO or socket\)"):
        ModelConfig.resolve("/dev/null")


@pytest.mark.parametrize("rope, model_type, context", [
    (None, "llama", 4096),
    # YaRN: original_max_position_embeddings x factor (vLLM's default max_model_len), e.g. Qwen's long-context recipe
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}, "llama", 16384),
    ({"type": "linear", "factor": 2.0}, "llama", 8192),  # the older "type" key, max_position_embeddings x factor
    ({"rope_type": "dynamic", "factor": 2.5}, "llama", 10240),
    # Llama 3.1's and LongRoPE's max_position_embeddings are already the extended context
    ({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 512}, "llama", 4096),
    ({"rope_type": "longrope", "long_factor": [1.0], "short_factor": [1.0]}, "phi3", 4096),
    ({"rope_type": "linear", "factor": 8.0}, "gemma3_text", 4096),  # Gemma 3's figure is already scaled
    # transformers v5 rope_parameters, one mapping per layer type
    ({"full_attention": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 4096},
      "sliding_attention": {"rope_type": "default"}}, "llama", 8192),
])
def test_the_context_length_follows_rope_scaling_as_vllm_derives_it(tmp_path, rope, model_type, context):
    cfg = dict(DENSE, model_type=model_type)
    if rope is not None:
        cfg["rope_parameters" if "full_attention" in rope else "rope_scaling"] = rope
    m = ModelConfig.resolve(str(_write(tmp_path, cfg)))
    assert m.max_context_len == context
    # no warning for a request the extended context holds, one beyond it
    assert m.context_warning(context - 100, 100) is None
    assert f"exceed my-model's context of {context} tokens" in m.context_warning(context, 1)


@pytest.mark.parametrize("key, value, message", [
    ("hidden_size", 1e30, "hidden_size = 1e+30; expected an integer >= 1 and <= 2147483647"),
    ("rope_scaling", {"rope_type": "yarn", "factor": "4"}, "rope_scaling factor = '4'; expected a number > 0"),
])
def test_absurd_config_values_are_refused_by_key(tmp_path, key, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelConfig.resolve(str(_write(tmp_path, dict(DENSE, **{key: value}))))
