"""What `accelcal predict` / `plan` tell a user about the inputs they gave: wrong kind of profile, datasheet
priors, engine versions, requests longer than the model's context, TP degrees, model paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from accelcal.calibrate.compose import compose, datasheet_names
from accelcal.calibrate.profile import Profile
from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.serving.engine import check_version

ROOT = Path(__file__).resolve().parents[1]
MEASURED = str(ROOT / "profiles" / "nvidia-h100.yaml")
DATASHEET = str(ROOT / "profiles" / "datasheet" / "h100-sxm.yaml")
NVSWITCH = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")
LOAD = ["--engine", "vllm", "--concurrency", "2", "--isl", "64", "--osl", "8"]


def _run_plan(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["plan", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _predict(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["predict", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("command", ["predict", "plan"])
def test_an_interconnect_profile_as_profile_is_bad_input_that_says_where_it_goes(capsys, command):
    argv = [command, "--profile", NVSWITCH, "--model", "llama3-8b"] + (LOAD if command == "predict" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--profile h100-nvswitch-4of8: is an interconnect profile (collectives only, no compute)" in err
    assert "--interconnect" in err and "Traceback" not in err


def test_predict_warns_about_datasheet_priors_in_table_and_json(capsys):
    rc, out, _ = _predict(capsys, "--profile", DATASHEET, "--model", "llama3-8b", *LOAD)
    assert rc == 0
    first = out.splitlines()[0]
    assert first.startswith("WARNING: DATASHEET PRIOR, NOT A MEASUREMENT: profile h100-sxm") and "assumed 0 s" in first
    rc, out, _ = _predict(capsys, "--profile", DATASHEET, "--model", "llama3-8b", *LOAD, "--format", "json")
    warnings = json.loads(out)["warnings"]
    assert rc == 0 and len(warnings) == 1 and "h100-sxm" in warnings[0]
    # a measured profile: the key is there and empty
    rc, out, _ = _predict(capsys, "--profile", MEASURED, "--model", "llama3-8b", *LOAD, "--format", "json")
    assert rc == 0 and json.loads(out)["warnings"] == []


def test_serving_search_carries_the_same_warning(capsys):
    assert main(["plan", "--profile", DATASHEET, "--model", "llama3-8b", "--engine", "vllm", "--concurrency", "1",
                 "--format", "json"]) == 0
    assert any("DATASHEET PRIOR" in w for w in json.loads(capsys.readouterr().out)["warnings"])


def test_datasheet_names_look_inside_a_composition():
    measured, sheet, ic = Profile.load(MEASURED), Profile.load(DATASHEET), Profile.load(NVSWITCH)
    assert datasheet_names(measured, None) == []
    assert datasheet_names(sheet, sheet) == ["h100-sxm"]  # each once
    assert datasheet_names(compose(sheet, ic)) == ["h100-sxm"]  # the device part of a composition
    assert datasheet_names(compose(measured, ic)) == []  # the interconnect is published, not a datasheet


def test_a_datasheet_fabric_is_refused_as_interconnect_with_the_way_out(capsys):
    # its collectives carry bandwidths and null latencies: a composition would fail on the schema instead
    rc = main(["plan", "--profile", MEASURED, "--interconnect", DATASHEET, "--model", "llama3-8b"])
    err = capsys.readouterr().err
    assert rc == 2 and "--interconnect h100-sxm: a datasheet profile" in err and "no latency (null)" in err
    assert "--assume-zero-latency" in err and "expected a number" not in err


@pytest.mark.parametrize("version", ["", "0.12.0", "1.0.0rc3", "0.5.1.post1", "1.2.0rc6.post1", "v0.8.1"])
def test_release_numbers_are_accepted(version):
    assert check_version(f" {version} ") == version


@pytest.mark.parametrize("version", ["banana", "0.12.x", "1..0", "latest"])
def test_an_engine_version_that_is_not_a_release_is_bad_input(capsys, version):
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--model", "llama3-8b", *LOAD, "--engine-version", version)
    assert rc == 2
    assert f"--engine-version {version!r}: expected a release number such as 0.12.0" in err


def test_a_request_longer_than_the_model_context_is_predicted_with_a_warning(capsys, tmp_path):
    model = ModelConfig.resolve("llama3-8b")
    assert model.max_context_len == 8192  # meta-llama/Meta-Llama-3-8B max_position_embeddings
    assert model.context_warning(8000, 192) is None
    msg = model.context_warning(8000, 193)
    assert msg.startswith("8000 prompt + 193 output = 8193 tokens exceed llama3-8b's context of 8192 tokens")
    assert ModelConfig.resolve("small").context_warning(10**6, 10**6) is None  # no context length stated
    base = ["--profile", MEASURED, "--model", "llama3-8b", "--engine", "vllm", "--concurrency", "1", "--osl", "8",
            "--format", "json"]
    rc, out, _ = _predict(capsys, *base, "--isl", "9000")
    got = json.loads(out)
    assert rc == 0 and got["feasible"] and any("9008 tokens exceed llama3-8b's context" in w for w in got["warnings"])
    # lengths drawn in x(1 +- r): the longest request decides
    rc, out, _ = _predict(capsys, *base, "--isl", "8000", "--range-ratio", "0.2", "--num-requests", "40")
    assert rc == 0 and any("exceed llama3-8b's context" in w for w in json.loads(out)["warnings"])
    assert main(["plan", "--profile", MEASURED, "--model", "llama3-8b", "--prompt-len", "9000", "--format",
                 "json"]) == 0
    assert "9256 tokens exceed" in json.loads(capsys.readouterr().out)["context_warning"]


def test_a_tp_that_does_not_divide_the_heads_lists_the_ones_that_do(capsys):
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--interconnect", NVSWITCH, "--model", "llama3-8b",
                          "--tp", "3", *LOAD)
    assert rc == 2
    assert ("--tp 3: llama3-8b has 32 attention heads and 32 % 3 = 2; TP must split its heads, KV heads, MLP evenly "
            "(the engines' tensor-parallel layers refuse other splits): one of [1, 2, 4, 8, 16, 32]") in err


def test_a_tp_the_kv_heads_or_the_mlp_cannot_split_is_refused_as_the_engines_refuse_it(capsys, tmp_path):
    # Qwen2-0.5B's shape: 14 heads, 2 KV heads, an MLP of 4864; TP 7 splits the heads but neither splits nor
    # evenly replicates the KV heads (vLLM QKVParallelLinear divide() asserts), and 4864 % 7 = 6
    cfg = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
           "num_attention_heads": 14, "num_key_value_heads": 2, "num_hidden_layers": 24, "vocab_size": 151936,
           "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, out, err = _predict(capsys, "--profile", MEASURED, "--interconnect", NVSWITCH, "--model", str(tmp_path),
                            "--tp", "7", *LOAD)
    assert rc == 2 and out == ""
    assert "--tp 7: " in err and "has 2 KV heads, which 7 ranks neither split (2 % 7 = 2) nor replicate evenly (7 % 2 = 1)" in err
    assert err.rstrip().endswith("one of [1, 2]")  # 14 heads: 7 and 14 split them, but not the 2 KV heads
    cfg.update(num_attention_heads=16, num_key_value_heads=8, intermediate_size=4860, hidden_size=1024)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--interconnect", NVSWITCH, "--model", str(tmp_path),
                          "--tp", "8", *LOAD)
    assert rc == 2 and "an MLP of 4860 (intermediate_size) and 4860 % 8 = 4" in err and "one of [1, 2, 4]" in err
    # the serving search leaves such layouts out instead of failing
    rc, out, _ = _run_plan(capsys, "--profile", MEASURED, "--interconnect", NVSWITCH, "--model", str(tmp_path),
                           "--engine", "vllm", "--concurrency", "2", "--isl", "64", "--osl", "8", "--format", "json")
    assert rc == 0 and {r["tp"] for r in json.loads(out)["ranked"]} <= {1, 2, 4}


def test_model_paths_and_range_ratio_name_what_is_wrong(capsys, tmp_path):
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--model", str(tmp_path / "no" / "such"), *LOAD)
    assert rc == 2 and f"model path {tmp_path / 'no' / 'such'} does not exist" in err
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--model", "llama3-9b", *LOAD)
    assert rc == 2 and "unknown model 'llama3-9b'" in err  # a name still lists the presets
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--model", "llama3-8b", *LOAD, "--range-ratio", "2")
    assert rc == 2 and "--range-ratio must be in [0, 1) with --range-mode around (lengths x(1 - r) .. x(1 + r)), got 2.0" in err


def test_tp_on_a_one_device_profile_points_at_interconnect_first(capsys):
    from accelcal.cli import main

    from pathlib import Path

    h100 = str(Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml")
    rc = main(["predict", "--profile", h100, "--model", "llama3-8b", "--engine", "vllm",
               "--concurrency", "4", "--isl", "128", "--osl", "16", "--tp", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert ("nvidia-h100 describes one device and has no collectives; pass the node's intra-node fabric with "
            "--interconnect" in err) and "profiles/interconnect/h100-nvswitch-4of8.yaml" in err
    assert "inter_node" not in err  # the inter-node links are not the fix


@pytest.mark.parametrize("flag, path, says", [
    ("--model", "profiles/nvidia-h100.yaml", "not a model config; it is an accelerator profile, which --profile takes"),
    ("--model", "planner/serving/presets/vllm.yaml", "not a model config; it is an engine preset, which --engine takes"),
    ("--engine", "models/presets/llama3-8b.yaml", "not an engine preset; it is a model config, which --model takes"),
    ("--engine", "profiles/interconnect/h100-nvswitch-8.yaml",
     "it is an interconnect profile (collectives only), which --interconnect takes"),
    ("--profile", "models/presets/llama3-8b.yaml",
     "a model config, not a profile: pass it with --model; --profile takes a device profile"),
    ("--interconnect", "profiles/engine-kernels/h100-sglang-0.5.9-moe.yaml",
     "not a profile: pass it with --moe-table; --interconnect takes an interconnect profile"),
    ("--profile", "planner/serving/presets/sglang.yaml", "an engine preset, not a profile: pass it with --engine"),
])
def test_a_file_given_to_the_wrong_option_is_named_for_what_it_is(capsys, flag, path, says):
    args = {"--profile": MEASURED, "--model": "llama3-8b", "--engine": "vllm"}
    args[flag] = str(ROOT / path)
    rc, out, err = _predict(capsys, *[x for kv in args.items() for x in kv], "--concurrency", "2", "--isl", "64",
                            "--osl", "8")
    assert rc == 2 and out == "" and says in err and "expected keys from" not in err and len(err) < 400


def test_empty_paths_and_names_say_they_are_empty_and_a_misspelt_engine_arg_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal: the option's value is not a path
        _predict(capsys, "--profile", "", "--model", "llama3-8b", *LOAD)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--profile: the path is empty ('')" in err and "directory" not in err
    with pytest.raises(SystemExit) as exc:
        _run_plan(capsys, "--profile", MEASURED, "--interconnect", "", "--model", "llama3-8b")
    assert exc.value.code == 2 and "argument --interconnect: the path is empty ('')" in capsys.readouterr().err
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--model", "", *LOAD)
    assert rc == 2 and "--model is empty ('')" in err and "config.json" in err
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--model", "llama3-8b", *LOAD, "--engine-arg", "max_seq=4")
    assert rc == 2 and "unknown engine key(s) ['max_seq'] (did you mean max_seqs?)" in err


def test_a_profile_without_attention_is_noted_and_a_zero_context_length_is_bad_input(capsys, tmp_path):
    import yaml

    d = yaml.safe_load(open(MEASURED))
    del d["attention"]
    bare = tmp_path / "no-attention.yaml"
    bare.write_text(yaml.safe_dump(d))
    rc, out, _ = _predict(capsys, "--profile", str(bare), "--model", "llama3-8b", *LOAD)
    assert rc == 0 and ("note: attention: the profile has no bf16 prefill or decode attention measurements (it has "
                        "none), so those calls are costed as two GEMM-like passes at compute.bf16's roofline") in out
    rc, out, _ = _predict(capsys, "--profile", MEASURED, "--model", "llama3-8b", *LOAD)
    assert rc == 0 and "note: attention:" not in out  # the shipped profile measured both
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 1024, "intermediate_size": 2816,
           "num_attention_heads": 16, "num_key_value_heads": 4, "num_hidden_layers": 4, "vocab_size": 32000,
           "max_position_embeddings": 0, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, _, err = _predict(capsys, "--profile", MEASURED, "--model", str(tmp_path), *LOAD)
    assert rc == 2 and "max_position_embeddings = 0; expected an integer >= 1" in err


def test_engine_args_and_preset_values_take_numbers_with_an_exponent():
    """YAML 1.1 reads 1e12 and 9e-1 as text; --engine-arg and preset files take them as the numbers they are."""
    from accelcal.planner.serving.cli import parse_engine_args
    from accelcal.planner.serving.engine import EnginePreset

    e = EnginePreset.from_name("vllm").with_overrides(
        parse_engine_args(["reserve_fixed_bytes=1e9", "memory_fraction=9e-1", "token_budget=4e3"]), "test")
    assert (e.reserve_fixed_bytes, e.memory_fraction, e.token_budget) == (1e9, 0.9, 4000)
    assert isinstance(e.token_budget, int)
    with pytest.raises(ValueError, match=r"token_budget must be an integer >= 0, got 4500\.5"):
        EnginePreset.from_name("vllm").with_overrides(parse_engine_args(["token_budget=4.5005e3"]), "test")
    with pytest.raises(ValueError, match=r"memory_fraction must be a number >= 0, got 'abc'"):
        EnginePreset.from_name("vllm").with_overrides(parse_engine_args(["memory_fraction=abc"]), "test")
