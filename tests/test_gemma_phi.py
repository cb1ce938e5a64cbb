"""Gemma 2 / Gemma 3 and Phi-3 / Phi-4 config.json files: the family defaults, the sliding pattern, the norms after
each sub-block, and a prediction end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.dag import build_layer_dag
from accelcal.planner.parallelism import Parallelism
from test_hf_config import _write as write_config  # one config.json writer for the tests

ROOT = Path(__file__).resolve().parents[1]
H100 = str(ROOT / "profiles" / "nvidia-h100.yaml")

# Gemma 3's multimodal checkpoints state only what differs from Gemma3TextConfig's defaults (the shape of
# google/gemma-3-27b-it's config.json, its text_config keys as published)
GEMMA3_WRAPPED = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
                  "text_config": {"head_dim": 128, "hidden_size": 5376, "intermediate_size": 21504,
                                  "model_type": "gemma3_text", "num_attention_heads": 32, "num_hidden_layers": 62,
                                  "num_key_value_heads": 16, "query_pre_attn_scalar": 168, "sliding_window": 1024},
                  "torch_dtype": "bfloat16", "vision_config": {"hidden_size": 1152, "model_type": "siglip_vision_model"}}
GEMMA2 = {"architectures": ["Gemma2ForCausalLM"], "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
          "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 3584, "intermediate_size": 14336,
          "max_position_embeddings": 8192, "num_attention_heads": 16, "num_hidden_layers": 42,
          "num_key_value_heads": 8, "sliding_window": 4096, "torch_dtype": "bfloat16", "vocab_size": 256000}
PHI3 = {"architectures": ["Phi3ForCausalLM"], "hidden_size": 3072, "intermediate_size": 8192,
        "max_position_embeddings": 4096, "num_attention_heads": 32, "num_hidden_layers": 32,
        "num_key_value_heads": 32, "sliding_window": 2047, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "vocab_size": 32064}


def test_gemma3_wrapper_fills_the_text_config_defaults_and_its_five_to_one_pattern(tmp_path):
    m = ModelConfig.resolve(str(write_config(tmp_path, GEMMA3_WRAPPED, "gemma-3-27b-it")))
    # stated keys as given; vocab, context, tying and the pattern from Gemma3TextConfig's defaults
    assert (m.layers, m.hidden_size, m.heads, m.kv_heads, m.head_dim, m.ffn_size) == (62, 5376, 32, 16, 128, 21504)
    assert (m.vocab_size, m.max_context_len, m.tie_word_embeddings) == (262208, 131072, True)
    # layer i full attention when (i + 1) % 6 == 0: layers 5, 11, ..., 59 -> 10 full, 52 sliding
    assert (m.sliding_window, m.sliding_layers, m.full_attention_layers) == (1024, 52, 10)
    assert m.qk_norm == "per_head" and m.post_norms and m.weight_dtype == "bf16"
    assert "vocab_size=262208" in m.source and "defaults (not in the file)" in m.source and "GeGLU" in m.source


def test_gemma3_stated_layer_types_and_pattern_win_over_the_defaults(tmp_path):
    text = dict(GEMMA3_WRAPPED["text_config"], num_hidden_layers=8, sliding_window_pattern=4, vocab_size=1000)
    m = ModelConfig.resolve(str(write_config(tmp_path, dict(GEMMA3_WRAPPED, text_config=text), "g3-small")))
    assert (m.sliding_layers, m.vocab_size) == (6, 1000)  # layers 3 and 7 full
    text["layer_types"] = ["full_attention"] * 7 + ["sliding_attention"]
    m = ModelConfig.resolve(str(write_config(tmp_path, dict(GEMMA3_WRAPPED, text_config=text), "g3-types")))
    assert m.sliding_layers == 1


def test_gemma2_alternates_sliding_and_full_and_ties_its_embeddings_by_default(tmp_path):
    m = ModelConfig.resolve(str(write_config(tmp_path, GEMMA2, "gemma-2-9b")))
    assert (m.sliding_layers, m.sliding_window, m.tie_word_embeddings) == (21, 4096, True)
    assert m.post_norms and m.qk_norm == "" and m.head_dim == 256
    assert "tie_word_embeddings=True" in m.source


def test_phi3_reads_as_a_llama_layer_and_notes_its_window(tmp_path):
    m = ModelConfig.resolve(str(write_config(tmp_path, PHI3, "phi-3-mini")))
    assert (m.layers, m.heads, m.kv_heads, m.head_dim, m.ffn_size) == (32, 32, 32, 96, 8192)
    assert not m.post_norms and m.sliding_layers == 0 and "sliding_window=2047 not modelled" in m.source


def test_post_norms_add_two_norm_passes_over_the_hidden_state():
    base = ModelConfig.from_name("llama3.1-8b")
    gem = dataclasses.replace(base, post_norms=True)
    for par in (Parallelism(tp=1), Parallelism(tp=2)):
        plain = {n.name: n for n in build_layer_dag(base, "prefill", 1, 512, 512, par).nodes}
        more = {n.name: n for n in build_layer_dag(gem, "prefill", 1, 512, 512, par).nodes}
        assert set(more) - set(plain) == {"post_attn_norm", "post_mlp_norm"}
        for name in ("post_attn_norm", "post_mlp_norm"):
            # the same traffic as each pre-norm: one pass over the 512 x hidden state
            assert more[name].p["nbytes"] == plain["attn_norm"].p["nbytes"] == more["mlp_norm"].p["nbytes"]
            assert more[name].kernels == plain["attn_norm"].kernels


def test_predict_a_gemma3_checkpoint_end_to_end(tmp_path, capsys):
    path = str(write_config(tmp_path, GEMMA3_WRAPPED, "gemma-3-27b-it"))
    rc = main(["predict", "--profile", H100, "--model", path, "--engine", "vllm", "--concurrency", "4",
               "--isl", "1024", "--osl", "32", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["feasible"] and out["tpot_mean_s"] > 0
    # 27B bf16 weights on one 80 GB device: 54 GB of weights leave the rest to the pool
    assert 50e9 < out["memory"]["weights_bytes"] < 58e9
    assert any("1024-token window" in n for n in out["notes"])


@pytest.mark.parametrize("arch", ["Gemma2ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM"])
def test_the_unsupported_list_names_the_new_families(tmp_path, arch):
    with pytest.raises(ValueError, match=arch):
        ModelConfig.resolve(str(write_config(tmp_path, dict(PHI3, architectures=["FooForCausalLM"]), "foo")))


def test_validate_refuses_a_layer_with_post_norms(tmp_path, capsys):
    # every layer full attention, so the norms after the sub-blocks are what its plain torch layers lack
    cfg = dict(GEMMA2, num_hidden_layers=2, layer_types=["full_attention"] * 2)
    path = str(write_config(tmp_path, cfg, "gemma-full"))
    rc = main(["validate", "--model", path, "--profile", H100, "--device", "cpu"])
    assert rc == 2 and "norms after the attention and the MLP (post_norms) are not built" in capsys.readouterr().err
