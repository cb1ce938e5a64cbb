"""What `accelcal predict` / `plan --engine` / `report` do with what a new user gives them: the model's own
precision, exit codes of the serving search, the offered load, DP shares that add up, what the steady state
leaves out, and the options that only mean something together."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from accelcal.cli import main
from accelcal.models import ModelConfig
from accelcal.planner.serving.workload import MAX_REQUESTS, ServingWorkload

ROOT = Path(__file__).resolve().parents[1]
H100 = str(ROOT / "profiles" / "nvidia-h100.yaml")
NVSWITCH = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml")
SMALL = ["--engine", "vllm", "--isl", "256", "--osl", "16"]

FP8_HF = {"architectures": ["MistralForCausalLM"], "hidden_size": 2048, "intermediate_size": 5632,
          "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 128, "num_hidden_layers": 8,
          "vocab_size": 32000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
          "torch_dtype": "bfloat16", "tie_word_embeddings": False,
          "quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _json(capsys, *argv: str) -> tuple[int, dict]:
    rc, out, err = _run(capsys, *argv, "--format", "json")
    return rc, (json.loads(out) if out.strip() else {"stderr": err})


def test_predict_serves_a_checkpoint_in_its_own_fp8_precision(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(FP8_HF))
    rc, fp8 = _json(capsys, "predict", "--profile", H100, "--model", str(cfg), "--concurrency", "4", *SMALL)
    rc2, b16 = _json(capsys, "predict", "--profile", H100, "--model", str(cfg), "--concurrency", "4", *SMALL,
                     "--weight-dtype", "bf16")
    assert rc == rc2 == 0
    m = ModelConfig.resolve(str(cfg))
    # one byte per layer weight instead of two (embedding and LM head stay bf16): the pool gains the difference
    assert fp8["memory"]["weights_bytes"] < 0.7 * b16["memory"]["weights_bytes"]
    assert fp8["memory"]["kv_tokens"] > b16["memory"]["kv_tokens"]
    assert any("fp8_e4m3 weights" in n and "quantization config" in n for n in fp8["notes"])
    assert any("block-scaled fp8" in n for n in fp8["notes"])  # weight_block_size -> block scaling
    # (the first note says what the config.json holds, its block-scaled checkpoint included)
    assert m.weight_block_size == (128, 128) and not any("block-scaled" in n for n in b16["notes"][1:])
    assert b16["notes"][0].startswith("model ") and "block-scaled [128, 128]" in b16["notes"][0]


def test_block_scaling_without_fp8_weights_is_bad_input(capsys):
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--concurrency", "2", *SMALL,
                      "--fp8-scaling", "block")
    assert rc == 2 and "--fp8-scaling block: the weights are bf16" in err


def test_serving_search_exit_codes_match_plan(capsys):
    base = ["plan", "--profile", H100, "--interconnect", NVSWITCH, "--engine", "vllm", "--concurrency", "8,32"]
    rc, out, err = _run(capsys, *base, "--model", "llama3.1-70b", "--ttft", "0.001", "--tpot", "0.001")
    assert rc == 4 and "no engine x layout x concurrency meets the targets" in err and "closest (none meets the targets): vllm TP8 PP1 DP1 C8" in out
    rc, _, err = _run(capsys, *base, "--model", "llama3.1-405b")
    assert rc == 3 and "no layout of llama3.1-405b on 8 devices can be costed" in err
    rc, doc = _json(capsys, *base, "--model", "llama3.1-70b", "--tpot", "10")
    assert rc == 0 and doc["meets_targets"] is True
    # one document shape, found or not: feasible and reason in both
    assert doc["feasible"] is True and doc["reason"] == ""
    found = set(doc)
    rc, doc = _json(capsys, *base, "--model", "llama3.1-405b")
    assert rc == 3 and doc["feasible"] is False and "can be costed" in doc["reason"]
    assert set(doc) == found and doc["ranked"] == [] and doc["best_predict_command"] is None  # the same keys


def test_serving_search_holds_the_offered_load(capsys):
    base = ["plan", "--profile", H100, "--interconnect", NVSWITCH, "--engine", "vllm", "--model", "llama3.1-8b",
            "--concurrency", "1,4,16"]
    rc, doc = _json(capsys, *base, "--request-rate", "1e6")
    assert rc == 4
    best = doc["ranked"][0]
    assert best["requests_per_s"] > 0 and any("requests/s < offered 1e+06" in x for x in best["misses"])
    low = doc["ranked"][-1]["requests_per_s"] * 0.5  # one a candidate certainly completes
    rc, doc = _json(capsys, *base, "--request-rate", str(low))
    assert rc == 0 and doc["meets_targets"] and doc["ranked"][0]["requests_per_s"] >= low


@pytest.mark.parametrize("flag", [["--plot", "x.png"], ["--kv-dtype", "fp8_e4m3"], ["--target-stat", "p99"],
                                  ["--concurrency", "4"], ["--weight-dtype", "bf16"]])
def test_serving_only_options_need_engine(capsys, flag):
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", *flag)
    assert rc == 2 and flag[0] in err and "add --engine" in err


def test_plot_must_name_a_file_in_a_folder_that_exists(tmp_path, capsys):
    base = ["plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm", "--concurrency", "1"]
    rc, _, err = _run(capsys, *base, "--plot", str(tmp_path))
    assert rc == 2 and "is a directory; give a file name" in err
    rc, _, err = _run(capsys, *base, "--plot", str(tmp_path / "no" / "such" / "p.png"))
    assert rc == 2 and "does not exist" in err
    rc, _, err = _run(capsys, *base, "--plot", str(tmp_path / "pareto.txt"))
    assert rc == 2 and "the plot is a PNG image; give it a .png name" in err and not (tmp_path / "pareto.txt").exists()
    (tmp_path / "afile").write_text("x")
    rc, _, err = _run(capsys, *base, "--plot", str(tmp_path / "afile" / "p.png"))
    assert rc == 2 and f"{tmp_path / 'afile'} is a file, not a folder" in err
    rc, _, err = _run(capsys, *base, "--plot", "")
    assert rc == 2 and "--plot: expected a PNG file name, got an empty one" in err


def test_plan_names_the_flag_of_a_missing_profile_and_refuses_an_empty_sweep(tmp_path, capsys):
    missing = str(tmp_path / "nope.yaml")
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--interconnect", missing, "--model", "llama3-8b")
    assert rc == 2 and f"--interconnect {missing} does not exist" in err
    rc, _, err = _run(capsys, "predict", "--profile", missing, "--model", "llama3-8b", "--concurrency", "1", *SMALL)
    assert rc == 2 and f"--profile {missing} does not exist" in err
    base = ["plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm"]
    rc, _, err = _run(capsys, *base, "--concurrency", "")
    assert rc == 2 and "--concurrency '': expected comma-separated integers >= 1" in err
    rc, _, err = _run(capsys, *base, "--concurrency", "1,,2")  # an empty item is a typo, not a skipped value
    assert rc == 2 and "--concurrency '1,,2': expected comma-separated integers >= 1" in err
    # --target-stat names the statistic the targets bound: alone it would be ignored, so it is refused
    rc, _, err = _run(capsys, *base, "--concurrency", "4", "--target-stat", "p90")
    assert rc == 2 and "--target-stat p90: it says which statistic --ttft and --tpot bound" in err
    # a --request-rate target's open-loop run reports that statistic: accepted there
    rc, out, _ = _run(capsys, *base, "--concurrency", "4", "--isl", "256", "--osl", "16", "--request-rate", "2",
                      "--target-stat", "p90")
    assert rc == 0 and "TTFT p90" in out
    rc, out = _json(capsys, *base, "--engine", "vllm", "--concurrency", "4")  # vllm twice: one set of rows
    assert rc == 0 and len(out["ranked"]) == 1


def test_dp_shares_add_up_and_throughput_is_over_the_run(capsys):
    """C = 4 over 3 replicas: clients 2, 1, 1 and requests in proportion, so the replicas finish together and the
    reported rate is the run's requests over its duration, as a benchmark client reports it."""
    w = ServingWorkload(isl=64, osl=8, concurrency=4, num_requests=100)
    shares = w.replica_shares(3)
    assert [s.concurrency for s in shares] == [2, 1, 1]
    assert [s.num_requests for s in shares] == [50, 25, 25]
    rc, doc = _json(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--dp", "3", "--concurrency", "4",
                    *SMALL)
    assert rc == 0 and doc["requests"] == 100
    assert doc["requests_per_s"] == pytest.approx(doc["requests"] / doc["duration_s"], rel=1e-9)
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--dp", "4", "--concurrency",
                      "4", *SMALL, "--num-requests", "2")
    assert rc == 2 and "--num-requests 2 < dp 4" in err


def test_steady_state_says_what_it_leaves_out(capsys):
    rc, doc = _json(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--concurrency", "8", *SMALL,
                    "--method", "steady", "--range-ratio", "0.5", "--client-gap-ms", "100")
    assert rc == 0
    assert any("leaves out --client-gap-ms" in n for n in doc["notes"])
    assert any("leaves out the spread of --range-ratio 0.5 (around): its identical requests have the spread's mean "
               "lengths" in n for n in doc["notes"])
    assert doc["decode_step"]["batch"] >= 1 and doc["decode_step"]["kv_len_mean"] > 256
    assert doc["duration_s"] == pytest.approx(doc["requests"] / doc["requests_per_s"])


def test_request_counts_and_client_gap_are_checked():
    with pytest.raises(ValueError, match=f"more than the {MAX_REQUESTS} requests"):
        ServingWorkload(isl=8, osl=8, concurrency=1, num_requests=MAX_REQUESTS + 1)
    with pytest.raises(ValueError, match="--client-gap-ms is the closed-loop client's pause"):
        ServingWorkload(isl=8, osl=8, request_rate_per_s=1.0, client_gap_s=0.01)


def test_static_batch_waits_for_its_clients_in_transit(capsys):
    """A static batch is the clients' requests together: a request a few ms behind the others (the turnaround)
    joins the batch instead of running alone after it."""
    argv = ["predict", "--profile", H100, "--model", "llama3-8b", "--engine", "static", "--concurrency", "16",
            "--isl", "256", "--osl", "32", "--turnaround-ms", "5"]
    rc, doc = _json(capsys, *argv)
    assert rc == 0 and doc["decode_step"]["batch"] == 16 and doc["max_concurrent_sequences"] == 16


def test_infeasible_json_has_every_metric_key(capsys):
    rc, ok = _json(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--concurrency", "2", *SMALL)
    rc3, bad = _json(capsys, "predict", "--profile", H100, "--model", "llama3.1-405b", "--concurrency", "2", *SMALL)
    assert rc == 0 and rc3 == 3 and not bad["feasible"]
    assert set(ok) == set(bad) and bad["ttft_p90_s"] is None and bad["duration_s"] is None
    assert bad["preemptions"] is None and bad["prefill_share_of_decode_time"] is None  # nothing ran
    # the memory arithmetic that ruled it out, as numbers a program can read (the reason says it in words)
    mem = bad["memory"]
    assert set(mem) == set(ok["memory"]) and mem["kv_pool_bytes"] <= 0 and mem["kv_tokens"] == 0
    assert mem["weights_bytes"] > mem["capacity_bytes"] and f"{mem['weights_bytes'] / 1e9:.4g} GB" in bad["reason"]


def test_one_output_token_has_no_tpot(capsys):
    rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                      "--concurrency", "2", "--isl", "64", "--osl", "1")
    assert rc == 0 and "TPOT            n/a: one output token per request" in out
    assert "ITL             n/a (--osl 1)" in out and "per user n/a" in out
    assert "typical decode step: none (--osl 1" in out and "typical decode step: batch" not in out
    rc, doc = _json(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                    "--concurrency", "2", "--isl", "64", "--osl", "1")
    assert rc == 0 and doc["ttft_mean_s"] > 0 and doc["output_tokens_per_s"] > 0
    assert all(doc[k] is None for k in ("tpot_mean_s", "tpot_p99_s", "itl_mean_s", "output_tokens_per_s_per_user"))


def test_infinite_rates_and_targets_are_bad_input(capsys):
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--request-rate", "inf", *SMALL)
    assert rc == 2 and "--request-rate must be a finite number > 0 requests/s, got inf" in err
    for flag in ("--ttft", "--tpot", "--request-rate"):
        rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm", flag, "inf")
        assert rc == 2 and f"{flag} " in err and "finite number > 0" in err, err


def test_a_target_that_looks_like_milliseconds_is_noted(capsys):
    rc, out, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--tpot", "50", "--top", "1")
    assert rc == 0 and "note: --tpot 50 is 50 s (targets are in seconds); for 50 ms pass --tpot 0.05" in err
    rc, out, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--tpot", "0.05", "--ttft", "2",
                        "--top", "1")
    assert "targets are in seconds" not in err


def test_plan_gives_the_best_layouts_costing_notes_as_predict_does(capsys):
    args = ("--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-8b", "--engine", "vllm",
            "--isl", "256", "--osl", "16")
    rc, doc = _json(capsys, "plan", *args, "--concurrency", "8")
    assert rc == 0 and doc["best_notes"]
    best = doc["ranked"][0]
    rc, one = _json(capsys, "predict", *args, "--concurrency", str(best["concurrency"]), "--tp", str(best["tp"]),
                    "--pp", str(best["pp"]), "--dp", str(best["dp"]))
    assert rc == 0 and set(doc["best_notes"]) <= set(one["notes"])
    rc, text, _ = _run(capsys, "plan", *args, "--concurrency", "8")
    assert all(f"  note: {n}" in text for n in doc["best_notes"])


def test_fewer_requests_than_clients_is_said(capsys):
    rc, doc = _json(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--concurrency", "8",
                    "--num-requests", "3", *SMALL)
    assert rc == 0 and doc["max_concurrent_sequences"] <= 3
    assert any("--num-requests 3 < --concurrency 8: only 3 request(s) are sent" in n for n in doc["notes"])
    assert not any("over the run's span" in n for n in doc["notes"])  # that note says why, not a second one
    # --concurrency counts every replica's clients: 10 requests keep 8 clients over 2 replicas busy
    rc, doc = _json(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--concurrency", "8", "--dp", "2",
                    "--num-requests", "10", *SMALL)
    assert rc == 0 and not any("< --concurrency" in n for n in doc["notes"])


def test_a_model_folder_without_config_json_says_so(tmp_path, capsys):
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--model", str(tmp_path), "--concurrency", "2", *SMALL)
    assert rc == 2 and f"model folder {tmp_path} has no config.json" in err



def test_a_single_device_profile_as_interconnect_says_what_the_flag_takes(capsys):
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--interconnect", str(ROOT / "profiles" / "nvidia-h200.yaml"),
                      "--model", "llama3-8b", "--concurrency", "2", *SMALL)
    assert rc == 2 and "is a device profile with no collective measurements; --interconnect takes" in err


@pytest.mark.parametrize("flag", [["--memory-utilization", "0.3"], ["--batch", "64"], ["--dtype", "fp32"],
                                  ["--max-layouts", "1"], ["--implementation", "torch-eager"],
                                  ["--objective", "throughput"], ["--cuda-graphs"], ["--extra-group", "x.yaml:1"],
                                  # at their defaults too: typed, they would still be ignored
                                  ["--batch", "8"], ["--implementation", "fused"], ["--objective", "auto"]])
def test_planner_only_options_are_refused_with_engine(capsys, flag):
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                      "--concurrency", "4", *flag)
    assert rc == 2 and flag[0] in err and "layer-level planner" in err
    assert ("its dtypes are --weight-dtype and --kv-dtype" in err) == (flag[0] == "--dtype")


def test_max_layouts_must_be_positive(capsys):
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--max-layouts", "0")
    assert rc == 2 and "--max-layouts must be >= 1" in err


def test_plan_json_on_exit_3_is_a_document(capsys):
    rc, out, _ = _run(capsys, "plan", "--profile", H100, "--model", "llama3.1-405b", "--format", "json")
    doc = json.loads(out)
    assert rc == 3 and doc["feasible"] is False and "no feasible plan for llama3.1-405b" in doc["reason"]
    rc, out, _ = _run(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--format", "json")
    found = json.loads(out)
    # one document shape, found or not: the feasible one's keys, with no groups when nothing fits
    assert rc == 0 and found["feasible"] is True and found["reason"] == "" and set(found) == set(doc)
    assert doc["groups"] == [] and doc["model"]["name"] == "llama3.1-405b"


def test_engine_arg_overrides_are_named_after_the_notes_they_replace(capsys):
    rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                      "--engine-arg", "overlap_scheduling=false", "--concurrency", "2", *SMALL, "--format", "json")
    d = json.loads(out)
    assert rc == 0 and d["engine_settings"]["engine_args"] == {"overlap_scheduling": False}
    release = next(i for i, n in enumerate(d["notes"]) if n == "vllm newest: overlap_scheduling = True (since 0.14.0)")
    # the citation is in the JSON's release defaults, not in the note
    assert d["engine_settings"]["release_defaults"]["overlap_scheduling"].startswith("since 0.14.0: vllm 0.14.0 sdist")
    override = next(i for i, n in enumerate(d["notes"]) if n.startswith("--engine-arg overlap_scheduling=False: the "
                                                                          "value this run used"))
    assert override > release


def test_release_notes_about_a_qk_norm_are_kept_for_models_that_have_one(capsys):
    notes = {}
    for model in ("llama3-8b", "qwen3-32b"):
        rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", model, "--engine", "sglang",
                          "--concurrency", "2", "--isl", "64", "--osl", "4", "--format", "json")
        assert rc == 0
        notes[model] = [n for n in json.loads(out)["notes"] if "qk_norm_kernels" in n]
    assert notes["llama3-8b"] == [] and len(notes["qwen3-32b"]) == 1


@pytest.mark.parametrize("engine, version, note", [
    ("vllm", "99.0", "--engine-version 99.0: newer than any release the vllm preset documents (0.12.0, 0.14.0)"),
    ("static", "1.0", "--engine-version 1.0: the static preset has no releases; ignored"),
    ("sglang", "0.1.0", "--engine-version 0.1.0: older than any release the sglang preset documents (0.5.1, 0.5.3, 0.5.8, 0.5.9)"),
    ("vllm", "0.12.0", None),
    ("vllm", "0.12", None),  # the same release as 0.12.0
    ("sglang", "0.5.9", None),
])
def test_an_engine_version_the_preset_does_not_know_is_noted(capsys, engine, version, note):
    rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--engine", engine,
                      "--engine-version", version, "--concurrency", "2", "--isl", "64", "--osl", "4", "--format", "json")
    notes = json.loads(out)["notes"]
    assert rc == 0 and ((note in notes[0]) if note else not any("--engine-version" in n for n in notes))


def test_engine_settings_record_the_release_asked_for(capsys):
    for version, want in (("0.5.1", "0.5.1"), ("", "newest")):
        extra = ["--engine-version", version] if version else []
        rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--engine", "sglang", *extra,
                          "--concurrency", "2", "--isl", "64", "--osl", "4", "--format", "json")
        d = json.loads(out)
        assert rc == 0 and d["engine_settings"]["version"] == want
        assert not any("--engine-version" in n for n in d["notes"])  # a documented release: no note


def test_plan_takes_engine_args_as_predict_does(capsys):
    # --engine-arg in plan overrides the preset for every engine searched, as in predict
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.predict import predict_serving

    base = ["plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency", "64",
            "--prompt-len", "512", "--output-len", "64", "--format", "json"]
    assert main(base + ["--engine-arg", "max_seqs=4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "every engine searched with --engine-arg max_seqs=4" in out["notes"]
    row = out["ranked"][0]
    res = predict_serving(Profile.load(H100), "llama3.1-8b",
                          EnginePreset.from_name("vllm").for_version("")[0].with_overrides({"max_seqs": 4}, "test"),
                          tp=row["tp"], dp=row["dp"], concurrency=row["concurrency"], isl=512, osl=64)
    assert res.max_concurrent_sequences <= 4 and row["ttft_s"] == res.metrics.ttft_mean_s
    assert main(base + ["--engine-arg", "bogus=1"]) == 2
    assert "--engine-arg: unknown engine key(s) ['bogus']" in capsys.readouterr().err
    assert main(["plan", "--profile", H100, "--model", "llama3.1-8b", "--engine-arg", "max_seqs=4"]) == 2
    assert "--engine-arg: option(s) of the serving search; add --engine" in capsys.readouterr().err


def test_a_latency_fitted_to_huge_messages_only_is_a_warning_and_other_hardware_is_named(capsys):
    # h100-nvswitch-8.yaml measured 128 MiB..4 GiB only: a 16 KiB decode all-reduce is 8192 x smaller, so its
    # 127 us is the large-message fit's intercept (the 4-GPU log of h100-nvswitch-4of8 measured 24.3 us at 16 KiB)
    wide = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-8.yaml")
    rc, out = _json(capsys, "predict", "--profile", H100, "--interconnect", wide, "--model", "llama3.1-70b", "--tp",
                    "4", "--concurrency", "8", *SMALL)
    assert rc == 0
    assert any(w.startswith("TP all-reduce of one decode token (16384 B over 4 ranks) costs 127.0 us") and
               "the smallest measured message is 8192 x larger" in w for w in out["warnings"])
    rc, out = _json(capsys, "predict", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-70b",
                    "--tp", "4", "--concurrency", "8", *SMALL)
    assert rc == 0 and out["warnings"] == []  # measured down to 8 B: nothing to warn about
    # a fabric measured on other devices than the device profile's is named as a stand-in
    h200 = str(ROOT / "profiles" / "nvidia-h200.yaml")
    pcie = str(ROOT / "profiles" / "interconnect" / "pcie-rtx4090-8.yaml")
    rc, out = _json(capsys, "predict", "--profile", h200, "--interconnect", pcie, "--model", "llama3.1-70b",
                    "--tp", "4", "--concurrency", "8", *SMALL)
    assert rc == 0
    stand_in = ("the intra-node collectives come from pcie-rtx4090-8, measured on NVIDIA GeForce RTX 4090, while the "
                "device profile is nvidia-h200 (NVIDIA H200)")
    assert stand_in in " ".join(out["warnings"])
    # the layer-level plan (no --engine) says it too, in its notes
    rc, out = _json(capsys, "plan", "--profile", h200, "--interconnect", pcie, "--model", "llama3.1-70b")
    assert rc == 0 and any(n.startswith(stand_in) for n in out["groups"][0]["notes"])
    # and the search carries the extrapolation warning once, for every TP it touches
    rc, out = _json(capsys, "plan", "--profile", H100, "--interconnect", wide, "--model", "llama3.1-70b", "--engine",
                    "vllm", "--concurrency", "8", "--prompt-len", "256", "--output-len", "16")
    small = [w for w in out["warnings"] if w.startswith("TP all-reduce of one decode token")]
    # the best row's TP leads; the others are named after it
    tp = out["ranked"][0]["tp"]
    others = ", ".join(str(t) for t in (2, 4, 8) if t != tp)
    assert len(small) == 1 and f"over {tp} ranks" in small[0]
    assert small[0].endswith(f"(likewise for the TP {others} layouts: accelcal predict prints each)")


def test_the_small_message_warning_reads_the_range_of_the_group_size_costed(tmp_path, capsys):
    # library all_reduce entries for 4 ranks measured from 8 B (h100-nvswitch-4of8) and for 8 ranks from 128 MiB
    # only (h100-nvswitch-8): TP 8 is costed from the 8-rank fit, so it is the one to warn about
    from accelcal.calibrate.profile import Profile

    four = Profile.load(NVSWITCH).to_dict()
    eight = Profile.load(str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-8.yaml")).to_dict()
    four["collectives"] += [c for c in eight["collectives"] if c["op"] == "all_reduce"]
    both = tmp_path / "both.yaml"
    Profile.from_dict(four).save(both)
    nccl = ["--engine-arg", "tp_all_reduce_kernel="]  # the library's entries, not the engine's kernel
    for tp, warned in (("8", True), ("4", False)):
        rc, out = _json(capsys, "predict", "--profile", H100, "--interconnect", str(both), "--model", "llama3.1-70b",
                        "--tp", tp, "--concurrency", "8", *SMALL, *nccl)
        assert rc == 0
        assert any(w.startswith(f"TP all-reduce of one decode token (16384 B over {tp} ranks)")
                   for w in out["warnings"]) is warned, (tp, out["warnings"])


def test_device_names_of_one_model_are_not_a_stand_in(capsys):
    # the H100 datasheet says "NVIDIA H100 SXM5 80GB", the nccl-tests log "NVIDIA H100 80GB HBM3": the same device
    sheet = str(ROOT / "profiles" / "datasheet" / "h100-sxm.yaml")
    rc, out = _json(capsys, "predict", "--profile", sheet, "--interconnect", NVSWITCH, "--model", "llama3.1-8b",
                    "--tp", "2", "--concurrency", "4", *SMALL)
    assert rc == 0 and not any("a stand-in for this node's" in w for w in out["warnings"])


def test_plan_does_not_call_an_unconfirmed_steady_estimate_a_pass(capsys, monkeypatch):
    # when every re-check allowed misses in simulation, the steady state's best is not reported as meeting the
    # targets: exit 4, meets_targets false, and the reason on stderr
    import accelcal.planner.serving.search as S

    base = ["plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency", "8,32,128",
            "--prompt-len", "2048", "--output-len", "128"]
    rc, plain = _json(capsys, *base, "--top", "1")
    ttft = plain["ranked"][0]["ttft_s"]  # the fastest row's simulated TTFT: 10 x that is a target easy to meet
    monkeypatch.setattr(S, "UNCONFIRMED_CHECKS", 0)
    rc, out, err = _run(capsys, *base, "--ttft", f"{10 * ttft:g}", "--tpot", "1")
    assert rc == 4
    assert "best steady-state estimate (not confirmed by simulation): " in out
    assert "note: the best row is not confirmed by simulation: not simulated: the search's re-checks ran out" in out
    assert "more tokens/s per device than the best" not in out  # no simulated best to compare with
    assert "no engine x layout x concurrency the simulation re-checked meets the targets" in err
    rc, j = _json(capsys, *base, "--ttft", f"{10 * ttft:g}", "--tpot", "1")
    assert rc == 4 and j["meets_targets"] is False and j["best_simulated"] is False
    monkeypatch.setattr(S, "UNCONFIRMED_CHECKS", 32)
    rc, j = _json(capsys, *base, "--ttft", f"{10 * ttft:g}", "--tpot", "1")
    assert rc == 0 and j["meets_targets"] is True and j["best_simulated"] is True


def test_a_decode_all_reduce_a_little_below_the_measured_sizes_is_a_note_not_a_warning(tmp_path, capsys):
    # smallest message measured 64 KiB: a 16 KiB decode all-reduce is 4 x below it (under SMALL_MESSAGE_WARN_FACTOR),
    # extrapolated, and said so among the notes; the warnings stay for fits orders of magnitude away
    from accelcal.calibrate.profile import Profile

    d = Profile.load(NVSWITCH).to_dict()
    for c in d["collectives"]:
        if c["op"] == "all_reduce" and c["group_size"] == 4 and not c.get("kernel"):
            c["quality"]["range_min"] = 65536.0
    p = tmp_path / "from64k.yaml"
    Profile.from_dict(d).save(p)
    rc, out = _json(capsys, "predict", "--profile", H100, "--interconnect", str(p), "--model", "llama3.1-70b", "--tp",
                    "4", "--concurrency", "8", *SMALL, "--engine-arg", "tp_all_reduce_kernel=")
    assert rc == 0
    assert not any("one decode token" in w for w in out["warnings"])
    assert any(n.startswith("TP all-reduce of one decode token (16384 B over 4 ranks)") and
               "extrapolated below the smallest message measured (6.554e+04 B" in n for n in out["notes"])


def test_a_tp_group_across_nodes_warns_of_its_large_message_fit_and_the_search_leads_with_the_best_rows_tp(capsys):
    # oci-h200-2x8-rdma measured 1 GiB..16 GiB across nodes: TP 16 over two nodes pays that fit's intercept on a
    # 32 KiB decode all-reduce, which the inter-node profile answers (not the intra-node one)
    rdma = str(ROOT / "profiles" / "interconnect" / "oci-h200-2x8-rdma.yaml")
    rc, out = _json(capsys, "predict", "--profile", H100, "--interconnect", NVSWITCH, "--inter-node-profile", rdma,
                    "--model", "llama3.1-405b", "--tp", "16", "--concurrency", "4", *SMALL)
    assert rc == 0
    hit = [w for w in out["warnings"] if w.startswith("TP all-reduce of one decode token (32768 B over 16 ranks, "
                                                       "across nodes")]
    assert hit and "smallest measured message is 32768 x larger" in hit[0]
    # the serving search: where several TP degrees extrapolate, the best row's leads the warning
    wide = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-8.yaml")
    rc, doc = _json(capsys, "plan", "--profile", H100, "--interconnect", wide, "--model", "llama3.1-70b",
                    "--engine", "vllm", "--concurrency", "8")
    assert rc == 0
    tp = doc["ranked"][0]["tp"]
    lead = [w for w in doc["warnings"] if w.startswith("TP all-reduce of one decode token")]
    assert len(lead) == 1 and lead[0].startswith(f"TP all-reduce of one decode token ({8192 * 2} B over {tp} ranks)")


def test_layer_plan_lists_the_extrapolation_that_weighs_most_first_and_flags_the_eager_stand_in(capsys):
    # h100-nvswitch-8 fits 128 MiB..4 GiB only: the decode all-reduce on that fit is most of TPOT, so it leads the
    # extrapolated answers, ahead of GEMM shapes just past the measured range
    wide = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-8.yaml")
    rc, doc = _json(capsys, "plan", "--profile", H100, "--interconnect", wide, "--model", "llama3.1-70b")
    assert rc == 0
    best = doc["groups"][0]["ranked"][0]
    assert "all_reduce" in best["extrapolated"][0]
    # the H100 profile predates the eager dispatch measurement: eager plans say their launch cost is optimistic
    rc, out, _ = _run(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-70b")
    assert rc == 0 and "note: eager launches: overheads.eager_dispatch_s" in out
    rc, out, _ = _run(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-70b",
                      "--cuda-graphs")
    assert rc == 0 and "note: eager launches" not in out


def test_plan_with_a_request_rate_shows_the_best_layout_at_that_open_loop_rate(capsys):
    # the rows are closed loops; the best layout is also run as predict --request-rate runs it, and said whether
    # its latencies there meet the targets
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import predict_serving

    rc, out = _json(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency",
                    "4,16", "--prompt-len", "512", "--output-len", "64", "--request-rate", "4", "--ttft", "1",
                    "--tpot", "0.05", "--target-stat", "p90")
    assert rc == 0
    ol, best = out["open_loop_best"], out["ranked"][0]
    m = predict_serving(Profile.load(H100), "llama3.1-8b", "vllm", tp=best["tp"], pp=best["pp"], dp=best["dp"],
                        request_rate_per_s=4.0, isl=512, osl=64).metrics
    assert (ol["ttft_s"], ol["tpot_s"], ol["requests_per_s"]) == (m.ttft_p90_s, m.tpot_p90_s, m.requests_per_s)
    assert ol["misses"] == [] and ol["stat"] == "p90"
    rc, text, _ = _run(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency",
                       "4,16", "--prompt-len", "512", "--output-len", "64", "--request-rate", "4", "--ttft", "1",
                       "--tpot", "0.05", "--target-stat", "p90")
    assert re.search(r"open loop: vllm TP1 PP1 DP1 at 4 requests/s \(Poisson, 200 requests, as accelcal predict "
                     r"--request-rate runs it\): TTFT p90 [\d.]+ ms, TPOT p90 [\d.]+ ms, [\d.]+ requests/s completed; "
                     r"meets the latency targets", text)
    # a rate alone sets no latency target, and the line does not claim one is met
    rc, text, _ = _run(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency",
                       "4,16", "--prompt-len", "512", "--output-len", "64", "--request-rate", "4")
    assert rc == 0 and "the rate is served (no --ttft or --tpot target given)" in text
    assert "meets the latency targets" not in text
    rc, out = _json(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency",
                    "4", "--prompt-len", "512", "--output-len", "64")
    assert out["open_loop_best"] is None  # no offered rate: no open-loop run


def test_plan_open_loop_counts_an_overloaded_run_as_a_miss_and_survives_wide_dp(capsys):
    # 100 requests/s on one device is far beyond what it completes: the open-loop verdict says overloaded, with
    # predict's note; a DP wider than predict's 200 open-loop requests still runs (at least 2 per replica)
    rc, out = _json(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency",
                    "8", "--prompt-len", "2048", "--output-len", "512", "--request-rate", "100", "--tpot", "0.1")
    ol = out["open_loop_best"]
    assert ol["misses"][0].startswith("overloaded: ") and ol["note"].startswith("overloaded: 100 requests/s offered")
    rc, out = _json(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "tiny", "--engine",
                    "vllm", "--concurrency", "512", "--prompt-len", "64", "--output-len", "8", "--request-rate", "50",
                    "--nodes", "32")
    assert rc == 0 and out["ranked"][0]["dp"] == 256
    assert out["open_loop_best"]["requests"] == 512 and "error" not in out["open_loop_best"]
    # one output token: no TPOT, as predict says
    rc, text, _ = _run(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm",
                       "--concurrency", "8", "--prompt-len", "512", "--output-len", "1", "--request-rate", "5")
    assert "TPOT mean n/a (one output token)" in text


def test_predict_table_switches_a_latency_row_to_seconds_from_10_s():
    from accelcal.planner.serving.cli import _latency_row

    assert _latency_row(0.50169, 0.48185, p99_s=1.50277) == "mean     501.69 ms   p50     481.85 ms   p99    1502.77 ms"
    assert (_latency_row(0.50169, 0.48185, 0.9, 1.50277)
            == "mean     501.69 ms   p50     481.85 ms   p90     900.00 ms   p99    1502.77 ms")
    # one value at 10 s or more puts the whole row in seconds, so its figures share a unit
    assert _latency_row(88.7697, 9.5, 100.0, 120.0) == ("mean     88.770 s    p50      9.500 s    p90    100.000 s    "
                                                        "p99    120.000 s")
    assert _latency_row(0.00725) == "mean       7.25 ms"


def test_plan_with_one_output_token_has_no_tpot_to_target_or_show(capsys):
    base = ["plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm", "--osl", "1", "--concurrency", "4"]
    rc, out, err = _run(capsys, *base, "--tpot", "0.01")
    assert rc == 2 and "--tpot with --output-len 1: each request's one token comes from its prefill" in err
    rc, out, err = _run(capsys, *base)
    assert rc == 0
    row = next(line for line in out.splitlines() if line.lstrip().startswith("1 vllm"))
    cols = row.split()  # #, engine, TP, PP, DP, C, TTFT, TPOT, tok/s/dev, tok/s/user, from, binding
    assert cols[7] == "n/a" and cols[9] == "n/a" and float(cols[8]) > 0
    assert "binding: prefill: each request's one token comes from its prefill" in out
    assert "of TPOT is prefill work" not in out and "TPOT 0 ms" not in out


def test_a_deployment_recipe_says_it_has_no_rules_for_the_static_batch(capsys):
    args = ["predict", "--profile", H100, "--model", "llama3-8b", "--engine", "static", "--concurrency", "4", *SMALL[2:]]
    rc, plain = _json(capsys, *args)
    rc2, recipe = _json(capsys, *args, "--deployment", "aiconfigurator")
    assert rc == rc2 == 0 and recipe["ttft_mean_s"] == plain["ttft_mean_s"]
    assert any(n.startswith("--deployment aiconfigurator: the recipe has rules for trtllm, vllm and sglang")
               for n in recipe["notes"])


def test_a_layout_wider_than_the_composed_node_asks_only_for_the_fabric_between_nodes(capsys):
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3-70b",
                      "--tp", "16", "--concurrency", "4", *SMALL)
    assert rc == 2 and "TP=16 PP=1 spans nodes; pass the fabric between the nodes with --inter-node-profile" in err
    assert "with --interconnect" not in err.split("spans nodes;")[-1]


def test_a_lone_request_is_bound_by_its_decode_step_not_a_zero_share(capsys):
    # one client, no targets: no queue, no prefill work beside the decodes, no communication on one device; the
    # binding line names the decode step and its largest part, not a term worth 0%
    rc, out, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                        "--concurrency", "1", "--isl", "512", "--osl", "64")
    assert rc == 0, err
    row = next(line for line in out.splitlines() if line.lstrip().startswith("1 vllm"))
    assert row.rstrip().endswith("decode step")
    binding = next(line for line in out.splitlines() if line.strip().startswith("binding:"))
    m = re.search(r"decode step: ([\d.]+) ms of the ([\d.]+) ms TPOT, ([\d.]+) ms of it memory-bound", binding)
    assert m, binding
    step, tpot, mem = map(float, m.groups())
    assert 0 < mem < step <= tpot * 1.0001
    assert "(0%)" not in out and "0% of TPOT" not in out  # terms worth nothing are not listed as 'also'


def test_binding_column_follows_one_rule_past_the_why_lines(capsys):
    # 13 rows: the first 10 take their binding from the why-lines, the rest from the steady state's code; both
    # call a point prefill-bound only above PREFILL_BINDS_SHARE of TPOT, so low-load rows all read 'decode', one code
    # whichever set it (the table names it 'decode step')
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.search import _BINDING_NAMES, ServingTargets, format_search, search_serving
    from accelcal.planner.serving.steady import PREFILL_BINDS_SHARE

    prof, model = Profile.load(H100), ModelConfig.from_name("llama3-8b")
    res = search_serving(prof, model, 1, ["vllm", "sglang", "trtllm"], [1, 2, 4, 8], isl=512, osl=64,
                         targets=ServingTargets())
    assert len(res.ranked) > 10
    for c in res.ranked:
        share = c.detail["steady"].prefill_share
        assert share < PREFILL_BINDS_SHARE and c.binding == "decode", (c.label, c.binding, share)
    # with targets the why-lines' first term binds; the JSON still gets a code, the table its name
    res = search_serving(prof, model, 1, ["vllm"], [1, 8, 64], isl=512, osl=64,
                         targets=ServingTargets(tpot_s=0.0125, ttft_s=10.0))
    assert {c.binding for c in res.ranked} <= set(_BINDING_NAMES) and "tpot_target" in {c.binding for c in res.ranked}
    assert "TPOT target" in format_search(res)


def test_assume_zero_latency_is_a_layer_level_option(capsys):
    # plan --engine costs a datasheet prior's missing latencies at 0 s and warns; the flag is refused there rather
    # than accepted with no effect
    rc, out, err = _run(capsys, "plan", "--profile", "profiles/datasheet/h100-sxm.yaml", "--model", "llama3-8b",
                        "--engine", "vllm", "--concurrency", "4", "--assume-zero-latency")
    assert rc == 2 and "--assume-zero-latency: option(s) of the layer-level planner" in err
    assert "costs latencies a datasheet prior lacks at 0 s and warns" in err
    assert "so it takes none of them: leave them out or drop --engine" in err and "ignores" not in err  # refused
    rc, out, err = _run(capsys, "plan", "--profile", "profiles/datasheet/h100-sxm.yaml", "--model", "llama3-8b",
                        "--engine", "vllm", "--concurrency", "4")
    assert rc == 0 and "DATASHEET PRIOR, NOT A MEASUREMENT" in err + out and "assumed 0 s" in err + out


def test_steady_state_has_means_only(capsys):
    args = ["predict", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm", "--concurrency", "8",
            "--isl", "512", "--osl", "32", "--method", "steady"]
    rc, data = _json(capsys, *args)
    assert rc == 0 and data["ttft_mean_s"] > 0 and data["tpot_mean_s"] > 0
    assert all(data[f"{m}_{p}_s"] is None for m in ("ttft", "tpot", "request_latency") for p in ("p50", "p90", "p99"))
    assert any("means only" in n for n in data["notes"])
    rc, out, err = _run(capsys, *args)
    assert rc == 0 and "p50" not in out and "p99" not in out and "mean" in out
    rc, out, err = _run(capsys, *args[:7], "--request-rate", "5", *args[9:])
    assert rc == 2 and "use --method simulate" in err


def test_plan_prints_the_predict_command_that_reproduces_its_best_row(tmp_path, capsys):
    """The command runs the best row as the search re-checked it: same TTFT, TPOT and tokens/s per device, with the
    plan's engine setting, length spread and dtypes, a preset file named by its path and a MoE layout's flags."""
    import shlex

    preset = tmp_path / "my-sglang.yaml"
    preset.write_text((ROOT / "planner" / "serving" / "presets" / "sglang.yaml").read_text().replace(
        "name: sglang", "name: my-sglang", 1))
    args = ["plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "qwen3-30b-a3b", "--engine", str(preset),
            "--concurrency", "8,32", "--isl", "512", "--osl", "64", "--tpot", "0.05", "--range-ratio", "0.8",
            "--engine-arg", "max_seqs=16", "--kv-dtype", "fp8_e4m3"]
    rc, doc = _json(capsys, *args)
    assert rc == 0 and doc["best_simulated"]
    best, command = doc["ranked"][0], doc["best_predict_command"]
    argv = shlex.split(command)
    assert argv[:2] == ["accelcal", "predict"] and argv[argv.index("--engine") + 1] == str(preset)
    assert "--engine-arg" in argv and "--range-ratio" in argv and "--kv-dtype" in argv
    rc, one = _json(capsys, *argv[1:])
    m = one["metrics"] if "metrics" in one else one
    assert rc == 0 and (m["ttft_mean_s"], m["tpot_mean_s"], m["output_tokens_per_s_per_device"]) == pytest.approx(
        (best["ttft_s"], best["tpot_s"], best["output_tokens_per_s_per_device"]), rel=1e-12)
    assert one["layout"]["moe_tp"] == best["moe_tp"] and one["layout"]["ep"] == best["ep"]
    rc, text, _ = _run(capsys, *args)
    assert text.rstrip().endswith(command)
    # a MoE layout's flags: attention-DP replicas sharing an EP group
    rc, doc = _json(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "qwen3-30b-a3b",
                    "--engine", "sglang", "--concurrency", "128", "--isl", "1024", "--osl", "128", "--tpot", "0.03")
    best = doc["ranked"][0]
    argv = shlex.split(doc["best_predict_command"])
    assert rc == 0 and best["ep"] > best["tp"] and argv[argv.index("--ep") + 1] == str(best["ep"])
    rc, one = _json(capsys, *argv[1:])
    assert rc == 0 and (one["ttft_mean_s"], one["tpot_mean_s"]) == pytest.approx((best["ttft_s"], best["tpot_s"]),
                                                                                  rel=1e-12)


def test_plan_and_predict_place_groups_by_devices_per_node(capsys):
    """--devices-per-node 4 on 2 nodes: a group of 8 spans both nodes (the inter-node profile), so its figures
    differ from one 8-device node's; the header says so, and a row's predict command carries the flag and
    reproduces it, where the same command without it does not."""
    import argparse
    import shlex

    from accelcal.calibrate.profile import Profile
    from accelcal.planner.cli import _predict_command
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.search import ServingTargets, search_serving

    ib = str(ROOT / "profiles" / "interconnect" / "h100-2x8-ib-ndr400.yaml")
    base = ["plan", "--engine", "sglang", "--profile", H100, "--interconnect", NVSWITCH, "--inter-node-profile", ib,
            "--model", "qwen3-30b-a3b", "--tpot", "0.03", "--isl", "512", "--osl", "64", "--concurrency", "64"]
    rc, text, _ = _run(capsys, *base, "--nodes", "2", "--devices-per-node", "4")
    assert rc == 0 and "qwen3-30b-a3b on 8 devices (4 per node)" in text
    prof, inter, _ = combine_profiles(Profile.load(H100), Profile.load(NVSWITCH), Profile.load(ib))
    kw = dict(targets=ServingTargets(tpot_s=0.03), inter_node_profile=inter, top=0)
    split = search_serving(prof, "qwen3-30b-a3b", 8, ["sglang"], [64], 512, 64, devices_per_node=4, **kw)
    whole = search_serving(prof, "qwen3-30b-a3b", 8, ["sglang"], [64], 512, 64, **kw)
    row = next(c for c in split.ranked if c.label == "sglang TP1 PP1 DP8 EP8 C64")  # its EP group spans both nodes
    same = next(c for c in whole.ranked if c.label == row.label)
    assert row.tpot_s > same.tpot_s and split.devices_per_node == 4 and whole.devices_per_node == 8
    ns = argparse.Namespace(profile=H100, interconnect=NVSWITCH, inter_node_profile=ib, devices_per_node=4,
                            model="qwen3-30b-a3b", prompt_len=512, output_len=64, weight_dtype=None, kv_dtype=None,
                            range_ratio=None, range_mode=None, engine_arg=None, engine_version=None)
    argv = shlex.split(_predict_command(ns, row, ["sglang"], split.devices_per_node))
    assert argv[argv.index("--devices-per-node") + 1] == "4"
    rc, pred = _json(capsys, *argv[1:])
    assert rc == 0 and pred["tpot_mean_s"] == pytest.approx(row.tpot_s, rel=1e-12)
    i = argv.index("--devices-per-node")
    rc, one_node = _json(capsys, *(argv[1:i] + argv[i + 2:]))  # the fabric's 8 per node: the group inside one
    assert rc == 0 and one_node["tpot_mean_s"] < 0.99 * row.tpot_s
    rc, _, err = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--devices-per-node", "0",
                      "--concurrency", "2", *SMALL)
    assert rc == 2 and "--devices-per-node must be an integer >= 1, got 0" in err


def test_two_engines_of_one_preset_name_are_refused(tmp_path, capsys):
    copy = tmp_path / "sglang-copy.yaml"
    copy.write_text((ROOT / "planner" / "serving" / "presets" / "sglang.yaml").read_text())  # still name: sglang
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--engine", f"sglang,{copy}",
                      "--concurrency", "8", "--isl", "256", "--osl", "16")
    assert rc == 2 and f"--engine: 'sglang' and '{copy}' are both the engine preset named 'sglang'" in err


def test_a_steady_state_best_row_gets_a_steady_predict_command_and_simulated_misses_rank_closest(capsys):
    """No row meets the targets: the closest is a simulated miss where one was simulated (a steady-state miss's TTFT
    leaves clustering out); a steady-state row's command carries --method steady and reproduces it."""
    import shlex

    args = ["plan", "--engine", "sglang", "--profile", H100, "--interconnect", NVSWITCH, "--model", "qwen3-30b-a3b",
            "--isl", "4096", "--osl", "256", "--concurrency", "256", "--ttft", "0.3", "--tpot", "0.05"]
    rc, doc = _json(capsys, *args)
    assert rc == 4 and not doc["meets_targets"]
    ranked = doc["ranked"]
    simulated = [r["checked_by"] != "steady" for r in ranked]
    assert any(simulated) and simulated == sorted(simulated, reverse=True)  # simulated misses first
    # a steady-state best row (no re-checks: the search's top=0) and the command plan would print for it
    import argparse

    from accelcal.calibrate.profile import Profile
    from accelcal.planner.cli import _predict_command
    from accelcal.planner.serving.search import search_serving

    res = search_serving(Profile.load(H100), "llama3-8b", 1, ["vllm"], [4], 256, 16, top=0)
    assert res.best.checked_by == "steady"
    ns = argparse.Namespace(profile=H100, interconnect=None, inter_node_profile=None, devices_per_node=None,
                            model="llama3-8b", prompt_len=256, output_len=16, weight_dtype=None, kv_dtype=None,
                            range_ratio=None, range_mode=None, engine_arg=None, engine_version=None)
    cmd = shlex.split(_predict_command(ns, res.best, ["vllm"], res.devices_per_node))
    assert cmd[-2:] == ["--method", "steady"]
    rc, pred = _json(capsys, *cmd[1:])
    assert rc == 0 and (pred["ttft_mean_s"], pred["tpot_mean_s"]) == pytest.approx((res.best.ttft_s, res.best.tpot_s),
                                                                                   rel=1e-12)


def test_no_costable_layout_names_each_reason_once_with_its_layouts(capsys):
    rc, _, err = _run(capsys, "plan", "--engine", "vllm", "--profile", H100, "--model", "llama3.1-70b",
                      "--devices-per-node", "8", "--concurrency", "8", "--isl", "256", "--osl", "16")
    assert rc == 3
    # nine layouts need collectives the device profile lacks: one reason, counted, the layouts named after it
    assert err.count("describes one device and has no collectives") == 1
    assert re.search(r"; 9 candidates: nvidia-h100 describes one device and has no collectives.* \[vllm TP1 PP2 DP4 C8, "
                     r"vllm TP1 PP4 DP2 C8, vllm TP1 PP8 DP1 C8, vllm TP2 PP1 DP4 C8 \(\+5 more\)\]", err)
    assert "1 candidate: weights + reserves do not fit" in err and "[vllm TP1 PP1 DP8]" in err


def test_the_serving_search_reports_its_passes_to_a_progress_bar():
    """A long search shows its two passes: a case per layout costed by the steady state, one per re-check."""
    import io

    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving.predict import combine_profiles
    from accelcal.planner.serving.search import ServingTargets, search_serving
    from accelcal.progress import StageProgress

    buf = io.StringIO()
    prof, _, _ = combine_profiles(Profile.load(H100), Profile.load(NVSWITCH))
    res = search_serving(prof, "llama3.1-8b", 4, ["vllm"], [8, 32], 512, 64, ServingTargets(tpot_s=0.05),
                         progress=StageProgress("plan", stream=buf, tty=False))
    lines = buf.getvalue().splitlines()
    layouts = len({c.label.rsplit(" C", 1)[0] for c in res.ranked})
    rechecked = sum(c.checked_by != "steady" for c in res.ranked)
    assert lines[0].startswith(f"[plan] steady state: {layouts} cases in ")
    assert rechecked >= 1 and lines[1].startswith(f"[plan] re-checks by simulation: {rechecked} cases in ")


def test_a_p90_plans_predict_line_gives_the_rows_p90_figures_in_its_table(capsys):
    rc, text, _ = _run(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency",
                       "4", "--isl", "256", "--osl", "16", "--tpot", "0.5", "--target-stat", "p90")
    assert rc == 0
    cmd = text.splitlines()[text.splitlines().index(next(x for x in text.splitlines()
                                                          if x.startswith("the best row as accelcal predict"))) + 1]
    argv = shlex.split(cmd.strip())[2:]  # drop "accelcal predict"
    rc, table, _ = _run(capsys, "predict", *argv)
    rc2, js, _ = _run(capsys, "predict", *argv, "--format", "json")
    assert rc == rc2 == 0
    d = json.loads(js)
    ttft = next(x for x in table.splitlines() if x.strip().startswith("TTFT"))
    tpot = next(x for x in table.splitlines() if x.strip().startswith("TPOT"))
    # the table's p90 cells are the JSON's p90 statistics, in the row's unit (ms here)
    assert f"p90 {d['ttft_p90_s'] * 1e3:10.2f} ms" in ttft and f"p90 {d['tpot_p90_s'] * 1e3:10.2f} ms" in tpot
    assert ttft.index("p50") < ttft.index("p90") < ttft.index("p99")
    lat = next(x for x in table.splitlines() if x.strip().startswith("request latency"))
    assert f"p90 {d['request_latency_p90_s']:10.3f} s" in lat and f"p50 {d['request_latency_p50_s']:10.3f} s" in lat
    assert lat.index("mean") < lat.index("p50") < lat.index("p90") < lat.index("p99")


def test_plan_json_rows_say_which_statistic_their_latencies_hold(capsys):
    rc, out = _json(capsys, "plan", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--concurrency",
                    "4,16,64", "--isl", "512", "--osl", "32", "--ttft", "5", "--tpot", "0.5", "--target-stat", "p90")
    assert rc == 0
    rows = out["ranked"]
    # simulated rows hold the targets' statistic, steady-state rows means (the steady state has no percentiles)
    assert {r["stat"] for r in rows if r["checked_by"] == "simulate (p90)"} == {"p90"}
    assert all(r["stat"] == "mean" for r in rows if r["checked_by"] == "steady")
    best = rows[0]
    assert best["checked_by"] == "simulate (p90)"
    rc, pred = _json(capsys, "predict", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--tp",
                     str(best["tp"]), "--concurrency", str(best["concurrency"]), "--isl", "512", "--osl", "32")
    assert rc == 0 and (best["ttft_s"], best["tpot_s"], best["request_latency_s"]) == pytest.approx(
        (pred["ttft_p90_s"], pred["tpot_p90_s"], pred["request_latency_p90_s"]), rel=1e-12)


def test_a_decode_batch_without_a_captured_graph_is_noted(capsys):
    """TensorRT-LLM's default capture sizes (1..32, 64, 128, no padding): a batch of 40 decodes eager, which can make
    40 clients slower per token than 32; predict says why."""
    def notes(c: int, method: str) -> list[str]:
        rc, out, _ = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", "--engine", "trtllm",
                          "--concurrency", str(c), "--isl", "64", "--osl", "64", "--method", method, "--format", "json")
        assert rc == 0
        return [n for n in json.loads(out)["notes"] if n.startswith("CUDA graphs: ")]

    for method in ("steady", "simulate"):
        assert notes(32, method) == []
        eager = notes(40, method)  # a batch of 33..40 (one or two clients may be prefilling)
        m = re.fullmatch(r"CUDA graphs: the typical decode batch (\d+) runs eager \(between captured sizes, padding "
                         r"off: trtllm captures 1\.\.32, 64, 128; --engine-arg cuda_graph_sizes=\[\.\.\.\] sets "
                         r"them as your deployment does\)", eager[0] if len(eager) == 1 else "")
        assert m and 33 <= int(m.group(1)) <= 40, (method, eager)


def test_plan_searches_one_engine_release_as_predict_takes_it(capsys):
    """plan --engine-version: the release's defaults for the one engine searched (vLLM 0.12 runs without async
    scheduling, 0.14 with it), said in a note and carried into the suggested predict command."""
    base = ["plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm", "--concurrency", "8",
            "--prompt-len", "512", "--output-len", "32", "--format", "json"]
    rc, out, _ = _run(capsys, *base, "--engine-version", "0.12.0")
    old = json.loads(out)
    rc2, out2, _ = _run(capsys, *base)
    new = json.loads(out2)
    assert rc == rc2 == 0
    assert "--engine-version 0.12.0" in old["best_predict_command"] and "--engine-version" not in new["best_predict_command"]
    assert any(n.startswith("vllm 0.12.0's defaults (--engine-version)") for n in old["notes"])
    # overlap scheduling (0.14.0 on) hides the host's step turnaround: the old release's row is slower
    assert old["ranked"][0]["tpot_s"] != new["ranked"][0]["tpot_s"]
    rc, _, err = _run(capsys, *base[:6], "vllm,sglang", *base[7:], "--engine-version", "0.12.0")
    assert rc == 2 and "--engine-version 0.12.0: a release of one engine; search one --engine with it (got vllm, sglang)" in err
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--engine-version", "0.12.0")
    assert rc == 2 and "--engine-version: option(s) of the serving search" in err
    rc, _, err = _run(capsys, *base, "--engine-version", "latest")
    assert rc == 2 and "--engine-version 'latest': expected a release number" in err


def test_predict_and_plan_take_the_engines_defaults_for_the_profiles_device(capsys):
    """An A100 (the shipped datasheet profile) gets vLLM's smaller defaults, as vLLM sets them at start-up; an
    --engine-arg still overrides them."""
    a100 = str(ROOT / "profiles" / "datasheet" / "a100-sxm-80gb.yaml")
    args = ["predict", "--profile", a100, "--model", "llama3-8b", "--engine", "vllm", "--concurrency", "4",
            "--isl", "64", "--osl", "8", "--format", "json"]
    rc, out, _ = _run(capsys, *args)
    note = "vllm on NVIDIA A100-SXM4-80GB (80 GiB): token_budget = 2048, max_seqs = 256"
    assert rc == 0 and any(n.startswith(note) for n in json.loads(out)["notes"])
    rc, out, _ = _run(capsys, *args, "--engine-arg", "max_seqs=512")
    d = json.loads(out)
    assert rc == 0 and d["engine_settings"]["engine_args"] == {"max_seqs": 512}
    rc, out, _ = _run(capsys, "plan", "--profile", a100, "--model", "llama3-8b", "--engine", "vllm", "--concurrency",
                      "4", "--prompt-len", "64", "--output-len", "8", "--format", "json")
    assert rc == 0 and any(n.startswith(note) for n in json.loads(out)["notes"])


def test_a_long_simulation_is_announced_and_a_sweep_counts_each_concurrency_once(capsys, monkeypatch):
    # the threshold made small, so a quick run crosses it: the note comes before the wait, on stderr
    monkeypatch.setattr("accelcal.planner.serving.cli.LONG_SIMULATION_REQUESTS", 50)
    rc, out, err = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", *SMALL, "--concurrency", "8")
    assert rc == 0 and "TPOT" in out
    assert "accelcal predict: note: 100 requests to simulate step by step (10 per client at --concurrency 8)" in err
    rc, out, err = _run(capsys, "predict", "--profile", H100, "--model", "llama3-8b", *SMALL, "--concurrency", "8",
                        "--num-requests", "40")
    assert rc == 0 and "requests to simulate" not in err  # fewer than the threshold when the user says so
    monkeypatch.setattr("accelcal.planner.serving.workload.LONG_SIMULATION_REQUESTS", 50)
    rc, doc = _json(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                    "--prompt-len", "256", "--output-len", "16", "--concurrency", "4,4,1")
    concurrencies = [r["concurrency"] for r in doc["ranked"]]
    assert rc == 0 and sorted(set(concurrencies)) == [1, 4]
    # one row per layout and concurrency: the repeated 4 is not a second point
    assert len({(r["label"]) for r in doc["ranked"]}) == len(doc["ranked"])
    rc, out, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3-8b", "--engine", "vllm",
                        "--prompt-len", "256", "--output-len", "16", "--concurrency", "8")
    assert "accelcal plan: note: the re-checks simulate 10 requests per client step by step, 100 at --concurrency 8" in err


def test_a_model_no_layout_holds_names_the_closest_and_what_would_fit_it(capsys):
    rc, out, err = _run(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-405b",
                        "--engine", "vllm", "--concurrency", "8", "--prompt-len", "256", "--output-len", "16")
    # 811.7 GB of bf16 weights over 8 devices: 101.5 GB each on an 85 GB device, the nearest any layout comes
    assert rc == 3 and out == ""
    m = re.search(r"closest vllm TP\d PP\d DP\d: weights ([\d.]+) GB per device of 85.02 GB, ([\d.]+) GB over", err)
    assert m and abs(float(m.group(1)) - 811.7 / 8) < 0.1
    assert "--weight-dtype fp8_e4m3" in err and "more devices than 8 (--nodes)" in err
    rc, doc = _json(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-405b",
                    "--engine", "vllm", "--concurrency", "8", "--prompt-len", "256", "--output-len", "16",
                    "--weight-dtype", "fp8_e4m3")
    assert rc == 0 and doc["feasible"]  # the hint's fix fits


def test_layer_plan_why_lines_set_figures_side_by_side_and_a_rate_miss_names_the_batch(capsys):
    rc, out, _ = _run(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-70b",
                      "--request-rate", "5")
    assert rc == 4  # every layout misses the offered rate
    # each term's bound beside the entry that costed it (a GEMM entry answers memory-bound decode GEMMs too)
    assert re.search(r"largest per-layer terms: gate_up [\d.]+ us \(memory-bound, from compute\.bf16\)", out)
    pp = re.search(r"why: PP1 over (TP\d PP\d DP\d), which spreads the layers: TPOT ([\d.]+) ms vs ([\d.]+) ms, TTFT "
                   r"[\d.]+ ms vs [\d.]+ ms, request latency [\d.]+ s vs [\d.]+ s, [\d.]+ vs [\d.]+ tokens/s per device",
                   out)
    assert pp, out
    assert "each replica here runs a fixed batch of 8: a larger --batch, or --engine vllm|sglang|trtllm" in out


def test_the_small_message_warning_names_a_shipped_profile_of_the_device_that_measured_small_messages(capsys):
    big_only = str(ROOT / "profiles" / "interconnect" / "h100-nvswitch-8.yaml")  # a log of 128 MiB..4 GiB only
    rc, out = _json(capsys, "predict", "--profile", H100, "--interconnect", big_only, "--model", "llama3.1-70b",
                    "--tp", "8", "--concurrency", "8", *SMALL)
    w = [x for x in out["warnings"] if "extrapolated below the smallest message measured" in x]
    assert rc == 0 and w and ("shipped for this device with such messages measured: "
                              "profiles/interconnect/h100-nvswitch-4of8.yaml (pass it as --interconnect)") in w[0]
    rc, out = _json(capsys, "predict", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-70b",
                    "--tp", "8", "--concurrency", "8", *SMALL)
    assert rc == 0 and not any("shipped for this device" in x for x in out["warnings"] + out["notes"])


def test_a_preset_file_is_named_with_what_it_changes(tmp_path, capsys):
    import json
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "planner" / "serving" / "presets" / "vllm.yaml").read_text())
    data["max_seqs"] = {"value": 8, "source": "my deployment"}
    mine = tmp_path / "myvllm.yaml"
    mine.write_text(yaml.safe_dump(data))
    from accelcal.cli import main

    assert main(["predict", "--profile", str(root / "profiles" / "nvidia-h100.yaml"), "--engine", str(mine),
                 "--model", "llama3-8b", "--concurrency", "4", "--isl", "128", "--osl", "8", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["engine_settings"]["preset_file"] == str(mine)
    assert out["engine_settings"]["preset_file_changes"] == {"max_seqs": 8}
    assert out["notes"][0] == f"engine preset file {mine} (name vllm): it differs from the shipped vllm preset in max_seqs=8"


def test_no_layout_names_a_layout_whose_weights_fit_before_one_that_overflows_and_no_fp8_hint_that_cannot_help(capsys):
    # a 20000-token request on two devices: TP2 / PP2 hold the weights but not the request's KV, TP1 DP2 overflows
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--interconnect", NVSWITCH, "--devices-per-node", "2",
                      "--model", "llama3.1-70b", "--engine", "vllm", "--concurrency", "4", "--prompt-len", "20000",
                      "--output-len", "128")
    assert rc == 3
    assert re.search(r"closest vllm TP\d PP\d DP1: its weights fit, but one request cannot run there", err)
    assert "GB over what leaves any KV cache" not in err.split("; 1 candidate")[0]
    # 811.7 GB of bf16 weights on one device: fp8 would still be 406 GB, so only more devices are offered
    rc, _, err = _run(capsys, "plan", "--profile", H100, "--model", "llama3.1-405b", "--engine", "vllm")
    assert rc == 3 and "more devices than 1 (--nodes)" in err and "--weight-dtype fp8_e4m3" not in err


def test_a_node_wider_than_the_measured_fabric_is_a_warning(capsys):
    # --devices-per-node 16 on an 8-device NVSwitch profile costs TP16 as one node by extrapolation: said, not hidden
    base = ["predict", "--profile", H100, "--interconnect", NVSWITCH, "--model", "llama3.1-70b", "--engine", "vllm",
            "--isl", "512", "--osl", "32", "--concurrency", "4", "--num-requests", "8"]
    rc, out = _json(capsys, *base, "--tp", "16", "--devices-per-node", "16")
    assert rc == 0
    wide = [w for w in out["warnings"] if w.startswith("16 devices per node, but the profile's intra-node collectives "
                                                         "come from nodes of 8")]
    assert len(wide) == 1 and "groups over 8 devices are extrapolated from them" in wide[0]
    rc, out = _json(capsys, *base, "--tp", "8", "--devices-per-node", "8")
    assert rc == 0 and not any("devices per node, but" in w for w in out["warnings"])


def test_a_closed_loop_short_of_littles_law_says_the_rate_is_the_runs_span(capsys):
    # 24 requests of 16 clients: a round and a half, the second half-round draining alone, so completed/s x
    # latency < 16 clients
    base = ["predict", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm", "--isl", "512", "--osl", "64",
            "--concurrency", "16"]
    rc, out = _json(capsys, *base, "--num-requests", "24")
    assert rc == 0
    steady = 16 / out["request_latency_mean_s"]
    assert out["requests_per_s"] < 0.97 * steady
    span = [n for n in out["notes"] if "completed over the run's span" in n]
    assert len(span) == 1 and f"= {steady:.4g} requests/s (Little's law)" in span[0]
    rc, out = _json(capsys, *base, "--num-requests", "2000")
    assert rc == 0 and out["requests_per_s"] * out["request_latency_mean_s"] == pytest.approx(16, rel=0.03)
    assert not any("completed over the run's span" in n for n in out["notes"])


def test_readme_lists_every_predict_json_key(capsys):
    # the README's list is the reference --format json's help points to: no key left out, none that is not there
    rc, out = _json(capsys, "predict", "--profile", H100, "--model", "llama3.1-8b", "--engine", "vllm",
                    "--concurrency", "4", "--isl", "256", "--osl", "16", "--num-requests", "8")
    assert rc == 0
    text = (ROOT / "README.md").read_text()
    para = text[text.index("`--format json` gives the same as keys:"):]
    para = para[:para.index(" `warnings` (and")]
    listed = set(re.findall(r"`([a-z_0-9]+)`", para)) - {"kv_pool_bytes"}  # a key of memory, named for its sign
    assert listed == set(out), (sorted(listed - set(out)), sorted(set(out) - listed))
