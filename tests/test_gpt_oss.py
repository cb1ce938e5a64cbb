"""gpt-oss: sliding-window layers, weight-only (mxfp4) experts, and its config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.memory import kv_bytes_per_token, stage_weight_bytes
from accelcal.vocab import WEIGHT_ONLY_BYTES

ROOT = Path(__file__).resolve().parents[1]
H100 = str(ROOT / "profiles" / "nvidia-h100.yaml")


def _config(**over) -> dict:
    cfg = {"architectures": ["GptOssForCausalLM"], "hidden_size": 256, "num_hidden_layers": 4,
           "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 256,
           "vocab_size": 1000, "num_local_experts": 8, "num_experts_per_tok": 2, "sliding_window": 16,
           "layer_types": ["sliding_attention", "full_attention"] * 2, "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn"]}}
    cfg.update(over)
    return cfg


def _write(tmp_path, cfg) -> str:
    p = tmp_path / "gpt-oss-mini" / "config.json"
    p.parent.mkdir(exist_ok=True)
    p.write_text(json.dumps(cfg))
    return str(p)


def test_windowed_layers_span_only_the_keys_their_window_reaches():
    m = ModelConfig.from_name("gpt-oss-120b")
    assert m.attention_layers(1, 8192) == ((8192, 0.5, 0), (128, 0.5, 128))      # decode: the last 128 keys
    assert m.attention_layers(512, 8192) == ((8192, 0.5, 0), (639, 0.5, 128))    # a chunk: its own 512 and 127 before
    assert m.attention_layers(64, 100) == ((100, 0.5, 0), (100, 0.5, 128))       # a window longer than the context
    assert ModelConfig.from_name("qwen3-32b").attention_layers(1, 8192) == ((8192, 1.0, 0),)


def test_a_decode_step_costs_its_windowed_layers_as_calls_of_their_own():
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.step_cost import StepCoster, replica_parallelism

    prof, m = Profile.load(H100), ModelConfig.from_name("gpt-oss-120b")
    sc = StepCoster(prof, m, replica_parallelism(1, 1, 1, 1), EnginePreset.from_name("vllm"))
    full = prof.attention_time_s("decode", 8, 1, 8192, 64, 8, 64, "bf16").time_s
    win = prof.attention_time_s("decode", 8, 1, 128, 64, 8, 64, "bf16").time_s
    # the mean of a full layer and a windowed one, each with its own fixed cost (not a scaled-down full call)
    assert sc._attn("decode", 8, 1, 8192, False) == pytest.approx(0.5 * full + 0.5 * win)
    assert win > 0.5 * full * 128 / 8192


def test_a_gpt_oss_config_reads_windows_and_mxfp4_experts(tmp_path):
    m = ModelConfig.resolve(_write(tmp_path, _config()))
    assert (m.sliding_window, m.sliding_layers, m.expert_weight_dtype, m.weight_dtype) == (16, 2, "mxfp4", "bf16")
    assert m.full_attention_layers == 2 and m.num_experts == 8 and m.top_k == 2 and m.expert_ffn_size == 256
    # decode at 1000 tokens: two layers read 1000 keys, two the last 16
    assert m.attention_layers(1, 1000) == ((1000, 0.5, 0), (16, 0.5, 16))
    # KV per token: the two full-attention layers' K and V, 2 heads x 32 x 2 bytes each
    assert m.kv_bytes_per_token() == 2 * 2 * 2 * 32 * 2
    # weights: routed experts at 0.53125 bytes (4 layers x 8 experts x 3 x 256 x 256), the rest at 2
    routed = 4 * 8 * 3 * 256 * 256
    rest = 4 * m.layer_params() + m.embedding_params() - routed
    assert m.weight_bytes() == pytest.approx(rest * 2 + routed * 0.53125)
    assert stage_weight_bytes(m, 1, 1, 1, 2, 2) == pytest.approx(m.weight_bytes())
    assert kv_bytes_per_token(m, 1, 1, 2) == m.kv_bytes_per_token()


@pytest.mark.parametrize("over, says", [
    ({"layer_types": ["sliding_attention"] * 3}, "layer_types has 3 entries; expected 4, one per layer"),
    ({"layer_types": ["full_attention", "chunked_attention", "full_attention", "linear_attention"]},
     "layer_types[1] = 'chunked_attention' (and 1 more); expected one of ['full_attention', 'sliding_attention']"),
    ({"sliding_window": None}, "sliding_window is null, but layer_types has 2 sliding_attention layers"),
    ({"quantization_config": {"quant_method": "awq"}}, "quant_method = 'awq' is not supported"),
])
def test_bad_gpt_oss_configs_name_the_key(tmp_path, over, says):
    with pytest.raises(ValueError) as exc:
        ModelConfig.resolve(_write(tmp_path, _config(**over)))
    assert says in str(exc.value) and "config.json" in str(exc.value)


def test_a_gpt_oss_config_without_layer_types_alternates_as_transformers_does(tmp_path):
    cfg = _config()
    del cfg["layer_types"]
    m = ModelConfig.resolve(_write(tmp_path, cfg))
    assert (m.sliding_layers, m.sliding_window) == (2, 16) and "alternate" in m.source
    # a Qwen3 config whose layer_types are all full attention, or whose window is off, has no windowed layers
    qwen = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 8,
            "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 512, "vocab_size": 1000,
            "use_sliding_window": False, "sliding_window": 16, "layer_types": ["sliding_attention", "full_attention"]}
    assert ModelConfig.resolve(_write(tmp_path, qwen)).sliding_layers == 0


def test_weight_only_experts_on_a_dense_model_are_refused():
    with pytest.raises(ValueError, match="expert_weight_dtype='mxfp4' on a dense model"):
        ModelConfig.from_dict({**ModelConfig.from_name("tiny").to_dict(), "expert_weight_dtype": "mxfp4"})
    with pytest.raises(ValueError, match="sliding_layers\\(2\\) and sliding_window\\(0\\) must both be 0"):
        ModelConfig.from_dict({**ModelConfig.from_name("tiny").to_dict(), "sliding_layers": 2})


def test_presets_match_their_cited_config():
    m = ModelConfig.from_name("gpt-oss-120b")
    assert (m.layers, m.num_experts, m.top_k, m.sliding_layers, m.sliding_window) == (36, 128, 4, 18, 128)
    # 36 x 128 experts x 3 x 2880^2 at 4.25 bits: 60.9 GB of the 65.2 GB
    routed = 36 * 128 * 3 * 2880 * 2880
    assert routed * WEIGHT_ONLY_BYTES["mxfp4"] / 1e9 == pytest.approx(60.9, abs=0.05)
    assert m.weight_bytes() / 1e9 == pytest.approx(65.17, abs=0.01)


def test_weight_only_gemm_reads_less_where_memory_binds_and_costs_the_same_where_compute_does():
    prof = Profile.load(H100)
    n, k = 2 * 2880 * 16, 2880  # 16 experts' gate/up stacked
    small = [prof.gemm_time_s(4, n, k, "bf16").time_s, prof.gemm_time_s(4, n, k, "bf16", 0.53125).time_s]
    big = [prof.gemm_time_s(8192, n, k, "bf16").time_s, prof.gemm_time_s(8192, n, k, "bf16", 0.53125).time_s]
    assert 0.2 < small[1] / small[0] < 0.45  # the weight stream is most of a 4-token GEMM's traffic
    assert big[1] / big[0] == pytest.approx(1.0, abs=0.02)  # compute-bound: the storage size does not matter
    est = prof.gemm_time_s(4, n, k, "bf16", 0.53125)
    assert "weights stored at 0.53125 bytes per element" in est.detail and "dequantisation not counted" in est.detail


def test_predict_gpt_oss_says_what_is_and_is_not_measured(capsys):
    rc = main(["predict", "--profile", H100, "--model", "gpt-oss-120b", "--tp", "1", "--engine", "vllm",
               "--concurrency", "4", "--isl", "1024", "--osl", "64", "--num-requests", "8", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["feasible"]
    assert any("routed experts are stored mxfp4" in n and "dequantisation is not measured" in n for n in out["notes"])
    assert any("18 of 36 layers attend through a 128-token window" in n for n in out["notes"])
    # the weights as stored fit one 80 GB device: 65.2 GB
    assert out["memory"]["weights_bytes"] == pytest.approx(65.17e9, rel=1e-3)


def test_validate_refuses_what_its_torch_layers_do_not_build(capsys):
    rc = main(["validate", "--model", "gpt-oss-20b", "--profile", H100, "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 2 and "sliding-window attention (sliding_layers) and weight-only mxfp4 experts are not built" in cap.err
    assert "WARNING" not in cap.out + cap.err  # refused before the device is looked at (an H100 profile on a CPU)


def test_predict_on_a_config_json_shows_what_was_read_and_assumed(tmp_path, capsys):
    cfg = _config()
    del cfg["layer_types"]
    folder = str(Path(_write(tmp_path, cfg)).parent)
    rc = main(["predict", "--profile", H100, "--model", folder, "--tp", "1", "--engine", "vllm", "--concurrency", "2",
               "--isl", "64", "--osl", "8", "--num-requests", "4", "--format", "json"])
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert rc == 0 and notes[0].startswith("model gpt-oss-mini: ") and "sliding and full attention alternate" in notes[0]


def test_plan_marks_a_layout_that_leaves_devices_idle(capsys):
    # PP3 on a 4-device group: its tok/s/dev is over the 3 devices it uses, which the table now says
    rc = main(["plan", "--profile", H100, "--interconnect", str(ROOT / "profiles" / "interconnect" /
                                                               "h100-nvswitch-4of8.yaml"),
               "--model", "gpt-oss-120b", "--devices-per-node", "4", "--nodes", "1"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "TP1 PP3 DP1" in line and "idle" in line)
    assert rc == 0 and "TP1 PP3 DP1 +1 idle" in row
    assert "(+N idle = the layout leaves N of the group's devices unused; its tok/s/dev is over the 3 it uses" in out
    assert "per device of the group's 4)" in out


def test_each_sequence_keeps_its_window_in_the_pool_besides_its_full_layers_tokens(tmp_path):
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.kv import kv_budget

    # 4 layers, 2 windowed (16 tokens); per layer and token 2 (K, V) x 2 KV heads x 32 x 2 bytes = 256 B
    m = ModelConfig.resolve(_write(tmp_path, _config()))
    kv = kv_budget(m, EnginePreset.from_name("vllm"), 1, 1, 80e9)
    assert (kv.kv_bytes_per_token, kv.window_bytes_per_token, kv.window_tokens) == (512, 512, 16)
    bs = kv.block_size_tokens
    # 100 tokens: their full layers' blocks, plus the windowed layers' last 16 tokens (one block)
    assert kv.blocks_for(100) == -(-100 // bs) + 1
    assert kv.blocks_for(8) == 2 and kv.window_tokens_for(8) == 8 and kv.window_tokens_for(1000) == 16
    # a model with 3 windowed layers to 1 full: its window weighs three times one full layer's token
    three = ModelConfig.resolve(_write(tmp_path, _config(layer_types=["sliding_attention"] * 3 + ["full_attention"])))
    kv3 = kv_budget(three, EnginePreset.from_name("vllm"), 1, 1, 80e9)
    assert kv3.window_tokens_for(100) == 48 and kv3.blocks_for(100) == -(-100 // bs) + -(-48 // bs)
    assert "last 16 tokens also fill the sliding-window layers' 0.768 kB per token" in kv3.rule
    with pytest.raises(ValueError, match="every layer .4. attends through the sliding window"):
        ModelConfig.resolve(_write(tmp_path, _config(layer_types=["sliding_attention"] * 4)))
