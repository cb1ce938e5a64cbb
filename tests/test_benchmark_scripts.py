"""Benchmark scripts' own logic (not their figures): what they read and how they fail."""

from __future__ import annotations

import re

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from accelcal.planner.serving.engine import EnginePreset

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # a dataclass in the script looks its module up while it is being defined
    spec.loader.exec_module(mod)
    return mod


def test_datasheet_vs_measured_reads_the_last_validation_table(tmp_path):
    mod = _load("datasheet_vs_measured")
    log = tmp_path / "run.log"
    log.write_text(
        "case  measured_ms predicted_ms  rel_err  method  biggest predicted part\n"
        "tiny.decode.b4_kv128.tp1.eager                     1.0000       0.9000   -10.0%  queue  memory 0.1 ms\n"
        "median |rel err| = 10.0%\n"
        "other text\n"
        "llama3-8b.prefill.b8_s2048.tp1.graph              14.9360      15.2420    +2.0%  graph  compute 10.8 ms\n"
        "llama3-8b.decode.b16_kv2048.tp2_dp2.eager          0.2500       0.2414    -3.4%  queue  memory 0.17 ms\n")
    cases = mod.read_cases(log)
    assert [(c.name, t) for c, t in cases] == [("llama3-8b.prefill.b8_s2048.tp1.graph", pytest.approx(14.936e-3)),
                                               ("llama3-8b.decode.b16_kv2048.tp2_dp2.eager", pytest.approx(0.25e-3))]
    pre, dec = cases[0][0], cases[1][0]
    assert (pre.q_len, pre.kv_len, pre.batch, pre.graphs) == (2048, 2048, 8, True)
    assert (dec.q_len, dec.kv_len, dec.tp, dec.dp, dec.graphs) == (1, 2048, 2, 2, False)
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    with pytest.raises(SystemExit, match="no validation table"):
        mod.read_cases(empty)


def test_serving_accuracy_verdict_uses_the_unrounded_means():
    mod = _load("serving_accuracy")
    # 10.004% prints as 10.0% but misses a 10% target; 19.99% meets 20%
    text = mod.verdict([0.1999, -0.1999], [0.10004, -0.10004], 0)
    assert text == ("TPOT mean 10.00% <= 10%: missed, TTFT mean 19.99% <= 20%: met, 0 row(s) called infeasible: met")
    assert mod.verdict([], [], 2).endswith("2 row(s) called infeasible: missed")


def test_serving_accuracy_summary_and_model_fallback():
    mod = _load("serving_accuracy")
    line = mod.summary("all", [0.1, -0.3], [0.05, -0.05])
    assert "n=2" in line and "mean   20.0%" in line and "median    5.0%" in line
    assert "n=0" in mod.summary("none", [], [])
    cache: dict = {}
    assert mod.row_model({"model_path": "x/anything"}, "tiny", cache)[0].name == "tiny"  # --model wins
    assert mod.row_model({"model_path": "Qwen/Qwen3-32B"}, None, cache)[0].name == "qwen3-32b"
    assert mod.row_model({}, None, cache)[0].name == "qwen3-32b"  # the development set has no model column
    model, why = mod.row_model({"model_path": "org/unknown-7B"}, None, cache)
    assert model is None and "org/unknown-7B: no preset cites it" in why
    lay = mod.row_layout
    assert lay({"tp_size": 8, "pp_size": 1, "moe_tp_size": 1, "moe_ep_size": 8})[:5] == (8, 1, 1, 8, 0)
    assert lay({"tp_size": 4, "pp_size": 1, "moe_tp_size": 4, "moe_ep_size": 0})[:5] == (4, 1, 1, 1, 0)
    # a recorded TP x EP split of the experts: the published rows with one name another layout in their ids
    assert "TP2 x EP4 inside TP8: not read as a layout" in lay(
        {"tp_size": 8, "pp_size": 1, "moe_tp_size": 2, "moe_ep_size": 4}).why
    assert "whole experts over EP2, 2 of TP8's devices" in lay(
        {"tp_size": 8, "pp_size": 1, "moe_tp_size": 1, "moe_ep_size": 2}).why
    # every expert TP-split over more devices than attention's TP group, no EP: attention DP replicas sharing the
    # expert layers, even where attention_dp_size is empty (batch_size then the whole benchmark's concurrency)
    two = lay({"tp_size": 1, "pp_size": 1, "moe_tp_size": 2, "moe_ep_size": 1})
    assert two[:5] == (1, 1, 2, 1, 2) and not two.batch_per_rank and two.why is None
    assert lay({"tp_size": 2, "pp_size": 1, "attention_dp_size": 4, "moe_tp_size": 8, "moe_ep_size": 1}).batch_per_rank
    assert "attention DP 2 with EP" in lay({"tp_size": 1, "pp_size": 1, "moe_tp_size": 1, "moe_ep_size": 2}).why
    assert lay({"tp_size": 4, "pp_size": 1, "moe_tp_size": 1, "moe_ep_size": 1}).why is None  # dense
    # attention data-parallel over 8 ranks of TP1 with the experts over all 8: one instance, DP8 EP8
    dp8 = lay({"tp_size": 1, "pp_size": 1, "attention_dp_size": 8, "moe_tp_size": 1, "moe_ep_size": 8})
    assert dp8[:5] == (1, 1, 8, 8, 0) and dp8.batch_per_rank
    assert "attention DP 8 with experts over TP8 x EP8" in lay(
        {"tp_size": 1, "pp_size": 1, "attention_dp_size": 8, "moe_tp_size": 8, "moe_ep_size": 8}).why


def test_serving_accuracy_reads_the_workflow_from_a_rows_provenance(tmp_path, capsys, monkeypatch):
    mod = _load("serving_accuracy")
    imax = {"silicon_data_source": "source_file=2026-04-06.csv; model=Llama-3.1-70B; ; ; wip=False"}
    dump = {"silicon_data_source": "db-dump/2026-04-27; config_id=606; ; ; workflow_run_id=305; vllm/vllm-openai:v0.16.0"}
    aic = {"silicon_data_source": "source_file=/x/aic-auto-gap-analysis/data/h100_sxm/vllm/0.12.0/Qwen_Qwen3-32B.csv; "
                                  "silicon_concurrency=16"}
    assert [mod.row_client(r, "auto") for r in (imax, dump, aic, {})] == [
        "inferencemax", "inferencemax", "aiconfigurator", "aiconfigurator"]
    assert mod.row_client(aic, "inferencemax") == "inferencemax" and mod.row_client(imax, "aiconfigurator") == "aiconfigurator"
    assert (mod.INFERENCEMAX.range_ratio, mod.INFERENCEMAX.range_mode, mod.INFERENCEMAX.prompts_per_client) == (0.8, "below", 10)
    # one published row read both ways: the client's spread lengths leave the clients out of lockstep, so the
    # requests do not all meet one another's prefills (lower TTFT); the file's rows are counted by workflow
    row = ("id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,"
           "moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,silicon_ttft_ms,"
           "silicon_tpot_ms\n"
           "r1,\"{src}\",vllm,0.12.0,Qwen/Qwen3-32B,h100_sxm,,agg,512,32,,,8,1,1,,1,1,300.0,25.0\n")
    ttft = {}
    for name, src in (("imax", imax["silicon_data_source"]), ("aic", aic["silicon_data_source"])):
        f = tmp_path / f"{name}.csv"
        f.write_text(row.format(src=src))
        monkeypatch.setattr("sys.argv", ["serving_accuracy.py", "--data", str(f), "--interconnect", "none", "--rows"])
        assert mod.main() == 0
        out = capsys.readouterr().out
        line = next(x for x in out.splitlines() if x.startswith("  r1"))
        ttft[name] = float(line.split("TTFT")[1].split("vs")[0])
        assert ("client: 1 row(s) of InferenceMAX's workflow" in out) == (name == "imax")
    assert ttft["imax"] < ttft["aic"]


def test_inferencemax_script_flags_reach_the_rows_of_their_script(tmp_path, capsys, monkeypatch):
    mod = _load("serving_accuracy")
    assert mod.trtllm_padded_graph_sizes(1024) == [1, 2, 4, *range(8, 129, 8), 256, 512, 1024]
    trt = mod.inferencemax_script("trtllm", "llama3.1-70b", "h200_sxm")
    assert trt.image_version == "1.1.0rc2.post2" and "70b_fp8_h200_trt_slurm.sh" in trt.source
    # batch waiting only where the script turns it on: 1024 x 1024 below TP 8
    assert trt.for_row(1024, 1024, 4, 16)["batch_wait_timeout_iters"] == 20
    assert "batch_wait_timeout_iters" not in trt.for_row(1024, 1024, 8, 16)
    assert "batch_wait_timeout_iters" not in trt.for_row(1024, 8192, 4, 16)
    assert mod.inferencemax_script("vllm", "llama3.1-70b", "h100_sxm").for_row(8192, 1024, 2, 32)["max_seqs"] == 32
    assert mod.inferencemax_script("sglang", "llama3.1-70b", "h200_sxm") is None
    for sc in mod.INFERENCEMAX_SCRIPTS:  # every script's flags are engine keys the preset accepts
        for shape in ((1024, 1024, 1, 8), (8192, 1024, 8, 64)):
            EnginePreset.from_name(sc.engine).with_overrides(sc.for_row(*shape), sc.source)
        assert sc.kv_dtype in (None, "bf16", "fp8_e4m3")
    # values a script computes from the row: TensorRT-LLM DeepSeek's token budget from the shape, SGLang's captured
    # decode batches up to --cuda-graph-max-bs $CONC, and the KV the script runs (no --kv-cache-dtype: bf16)
    dsr1 = mod.inferencemax_script("trtllm", "deepseek-v3", "h200_sxm", "1.1.0rc2.post2")
    assert dsr1.for_row(1024, 1024, 8, 64)["token_budget"] == 1152 and dsr1.kv_dtype == "fp8_e4m3"
    assert mod.sglang_graph_sizes(64) == [1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64]
    assert mod.sglang_graph_sizes(512)[-3:] == [480, 496, 512]
    qwen = mod.inferencemax_script("sglang", "qwen3.5-397b-a17b", "h200_sxm", "0.5.9")
    assert qwen.for_row(1024, 1024, 8, 16)["cuda_graph_sizes"] == [1, 2, 4, 8, 12, 16]
    sgl = mod.inferencemax_script("sglang", "deepseek-v3", "h200_sxm", "0.5.9")
    assert (sgl.for_row(1024, 1024, 8, 4)["max_seqs"], sgl.for_row(8192, 1024, 8, 4)["max_seqs"]) == (512, 256)
    assert sgl.kv_dtype == "bf16"
    # one published row: the script's batch waiting holds each new prompt while the others decode
    row = ("id,silicon_data_source,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,"
           "moe_quant_mode,batch_size,tp_size,pp_size,attention_dp_size,moe_tp_size,moe_ep_size,silicon_ttft_ms,"
           "silicon_tpot_ms\n"
           "r1,\"source_file=2026-04-06.csv; model=Llama-3.1-70B; wip=False\",trtllm,,meta-llama/Llama-3.1-70B,"
           "h200_sxm,fp8,agg,1024,1024,fp8,fp8,4,1,1,1,1,1,562.2,20.1\n")
    f = tmp_path / "l70.csv"
    f.write_text(row)
    ttft = {}
    for flags in ([], ["--no-script-flags"]):
        monkeypatch.setattr("sys.argv", ["serving_accuracy.py", "--data", str(f), "--interconnect", "none", "--rows",
                                         *flags])
        assert mod.main() == 0
        out = capsys.readouterr().out
        ttft[bool(flags)] = float(next(x for x in out.splitlines() if x.startswith("  r1")).split("TTFT")[1].split("vs")[0])
        assert ("server flags of an InferenceMAX script on 1 row(s)" in out) == (not flags)
        # the image's release where the row records none (the script's fact: without its flags, the newest rules)
        assert ("engine trtllm 1.1.0rc2.post2 n=1" in out) == (not flags)
    # up to 20 decode steps of ~20 ms each more before the first token
    assert ttft[False] > ttft[True] + 150


def test_serving_accuracy_writes_every_predicted_row_to_a_csv(tmp_path, capsys, monkeypatch):
    mod = _load("serving_accuracy")
    f = tmp_path / "rows.csv"
    f.write_text("id,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,batch_size,"
                 "tp_size,silicon_ttft_ms,silicon_tpot_ms\n"
                 "r1,vllm,0.12.0,Qwen/Qwen3-32B,h100_sxm,,agg,512,32,,8,1,300.0,25.0\n"
                 "r2,vllm,0.12.0,Qwen/Qwen3-32B,h100_sxm,,agg,512,32,,8,2,300.0,25.0\n")
    out = tmp_path / "pred.csv"
    monkeypatch.setattr("sys.argv", ["serving_accuracy.py", "--data", str(f), "--interconnect", "none", "--rows",
                                     "--out", str(out)])
    assert mod.main() == 0
    text = capsys.readouterr().out
    got = pd.read_csv(out)
    # r2 (TP2) has no interconnect profile here: not predicted, so not written
    assert got["id"].tolist() == ["r1"] and "TP2 PP1: needs --interconnect" in text
    r = got.iloc[0]
    assert (r.tp, r.concurrency, r.isl, r.osl, r.model, bool(r.moe)) == (1, 8, 512, 32, "qwen3-32b", False)
    assert r.ttft_measured_s == pytest.approx(0.3) and r.tpot_measured_s == pytest.approx(0.025)
    assert r.ttft_rel_err == pytest.approx(r.ttft_predicted_s / 0.3 - 1)
    assert r.tpot_rel_err == pytest.approx(r.tpot_predicted_s / 0.025 - 1)
    line = next(x for x in text.splitlines() if x.startswith("  r1"))
    assert float(line.split("TTFT")[1].split("vs")[0]) == pytest.approx(r.ttft_predicted_s * 1e3, abs=0.06)
    assert 0 < r.one_prefill_s < r.ttft_predicted_s


def test_serving_accuracy_tells_rows_whose_concurrency_was_not_recorded():
    mod = _load("serving_accuracy")
    assert mod.concurrency_recorded({"id": "qwen_qwen3_32b_h100_sxm_vllm_agg_1024x128_c16_tp2_epnone_1"})
    assert not mod.concurrency_recorded({"id": "qwen3_32b_qwen3_32b_h100_sxm_vllm_agg_4000x1000_c_tp2_0_epnone_3"})
    # provenance that records it wins; a file without ids says nothing against it
    assert mod.concurrency_recorded({"id": "x_4000x1000_c_tp2", "silicon_data_source": "a; silicon_concurrency=48; b"})
    assert mod.concurrency_recorded({"batch_size": 8})


def test_aiconfigurator_export_reads_the_estimate_box():
    mod = _load("aiconfigurator_export")
    box = ("============================================================\n"
           "  Backend:          vllm (0.24.0)\n"
           "  TP Size:          1\n"
           "  TTFT:             46.780 ms\n"
           "  TPOT:             4.864 ms\n"
           "  Request Latency:  664.469 ms\n"
           "  tokens/s:         191.13\n")
    assert mod.parse_estimate(box) == {"Backend": "vllm (0.24.0)", "TTFT": "46.780 ms", "TPOT": "4.864 ms",
                                       "Request Latency": "664.469 ms"}
    assert mod.parse_estimate("Error: YAML error at x.yaml: node: missing field `inter_node_bw`") == {}


def test_serving_accuracy_splits_tpot_into_decode_step_and_prefill_interference():
    mod = _load("serving_accuracy")
    d_m, dp_m = 0.020, 0.150  # measured: 20 ms decode step, 150 ms per prefill
    d_p, dp_p = 0.018, 0.100  # predicted: decode step 10% fast, prefill interference a third too small
    tpots = {}
    for c in (8, 64):
        tpots[("trtllm", 2, c, 2048)] = {osl: (d_m + c / osl * dp_m, d_p + c / osl * dp_p) for osl in (128, 512)}
    tpots[("vllm", 4, 8, 1024)] = {128: (0.01, 0.01)}  # one output length only: nothing to split
    out = mod.split_tpot(tpots)
    assert set(out) == {("trtllm", 2)}
    assert [p[0] for p in out[("trtllm", 2)]] == [8, 64]
    for _, dm, dp_, pm, pp in out[("trtllm", 2)]:
        assert (dm, pm) == (pytest.approx(d_m), pytest.approx(dp_m))
        assert dp_ / dm == pytest.approx(0.9) and pp / pm == pytest.approx(2 / 3)


def test_serving_accuracy_states_ttft_in_the_engines_own_prefill_steps():
    """With TTFT beside TPOT, the split also gives TTFT / dP on each side: a prediction whose prefill step is a
    third too small but whose queue is right reads the same number of prefills as the measurement."""
    mod = _load("serving_accuracy")
    d, dp_m, dp_p = 0.020, 0.150, 0.100
    tpots = {("trtllm", 2, 8, 2048): {osl: (d + 8 / osl * dp_m, d + 8 / osl * dp_p, 3.0 * dp_m, 3.0 * dp_p)
                                     for osl in (128, 512)},
             ("trtllm", 2, 64, 2048): {osl: (d + 64 / osl * dp_m, d + 64 / osl * dp_p, 9.0 * dp_m, 4.5 * dp_p)
                                      for osl in (128, 512)}}
    out = mod.split_tpot(tpots)
    (c8, *_, q8m, q8p), (c64, *_, q64m, q64p) = out[("trtllm", 2)]
    assert (c8, c64) == (8, 64)
    assert (q8m, q8p) == (pytest.approx(3.0), pytest.approx(3.0))  # step cost off, queue right
    assert (q64m, q64p) == (pytest.approx(9.0), pytest.approx(4.5))  # the queue itself is half the measured one


def test_serving_accuracy_prefill_exposure_is_the_same_whichever_way_the_queue_splits_it():
    """Two engines with the same prefill cost, one putting the queue before the first token and one in the decode
    phase, read the same E = TTFT + c dP; a prefill 20 ms dearer per request reads as +20 ms."""
    mod = _load("serving_accuracy")
    c, d, dp = 8, 0.020, 0.150
    # measured: 3 prefills queued before the first token; predicted: 1 there and the other 2 in the decode phase
    tpots = {("trtllm", 4, c, 2048): {osl: (d + c / osl * dp, d + c / osl * (dp + 2 * dp / c), 3 * dp, 1 * dp)
                                     for osl in (128, 512)},
             ("vllm", 4, c, 4096): {osl: (d + c / osl * (dp + 0.020), d + c / osl * dp, dp, dp)
                                   for osl in (128, 512)},
             ("vllm", 4, c, 1024): {osl: (0.01, 0.01) for osl in (128, 512)}}  # no TTFT: left out
    out = mod.prefill_exposure(tpots)
    [(isl, conc, e_m, e_p)] = out[("trtllm", 4)]
    assert (isl, conc) == (2048, c) and e_m == pytest.approx(e_p) == pytest.approx(3 * dp + c * dp)
    [(isl, conc, e_m, e_p)] = out[("vllm", 4)]
    assert isl == 4096 and (e_m - e_p) / conc == pytest.approx(0.020)


def test_engine_gemm_tables_costs_fp8_rows_with_their_quantize_kernel(tmp_path):
    from accelcal.calibrate.profile import Profile
    from accelcal.models.implementation import Implementation
    from planner_profiles import h100_like

    mod = _load("engine_gemm_tables")
    d = h100_like()
    d["compute"]["fp8_e4m3"] = dict(d["compute"]["bf16"], peak_flop_per_s=2 * d["compute"]["bf16"]["peak_flop_per_s"])
    prof = Profile.from_dict(d)
    table = tmp_path / "t.csv"
    table.write_text("# published, cited\ngemm_dtype,m,n,k,latency_ms\nbfloat16,0,64,64,1\nbfloat16,16,4096,4096,0.02\n"
                     "fp8,16,4096,4096,0.03\nint4,16,4096,4096,0.01\n")
    df = mod.read_table(table)
    assert list(df.gemm_dtype) == ["bfloat16", "fp8"]  # m=0 and unknown dtypes dropped
    out = mod.compare(df, prof).set_index("gemm_dtype")
    quant_bytes = Implementation.from_name("fused").act_quant.bytes_per_element(2) * 16 * 4096
    assert quant_bytes == 3 * 16 * 4096
    want8 = prof.gemm_time_s(16, 4096, 4096, "fp8_e4m3").time_s + prof.memory_time_s(quant_bytes, "copy").time_s
    assert out.loc["fp8", "profile_s"] == pytest.approx(want8)
    assert out.loc["bfloat16", "profile_s"] == pytest.approx(prof.gemm_time_s(16, 4096, 4096, "bf16").time_s)
    assert out.loc["fp8", "published_s"] == pytest.approx(3e-5)
    bad = tmp_path / "bad.csv"
    bad.write_text("dtype,m,n,k\nbf16,1,2,3\n")
    with pytest.raises(SystemExit, match="lack .*gemm_dtype.*latency_ms"):
        mod.read_table(bad)


def test_engine_gemm_tables_sums_one_models_projections_per_tp():
    import pandas as pd

    mod = _load("engine_gemm_tables")
    # tiny: hidden 256, 8 heads / 4 KV heads of 32, ffn 768 (its preset); TP 2 halves N of QKV and gate/up, K of o
    rows = [("fp8", 8, 512, 256, 2e-6, 1e-6),     # qkv at TP 1: (8 + 2 x 4) x 32 = 512
            ("fp8", 8, 1536, 256, 6e-6, 2e-6),    # gate/up at TP 1: 2 x 768
            ("fp8", 8, 256, 128, 1e-6, 1e-6),     # o at TP 2: K = 8 x 32 / 2
            ("fp8", 8, 999, 256, 5e-6, 1e-6)]     # no projection of tiny: left out
    out = pd.DataFrame(rows, columns=["gemm_dtype", "m", "n", "k", "published_s", "profile_s"])
    lines = mod.model_sums(out, "tiny", [1, 2])
    tp1 = [ln for ln in lines if "TP 1 fp8" in ln]
    assert len(tp1) == 1 and "gate_up+qkv" in tp1[0] and "published      8.0 us, profile      3.0 us (x2.67)" in tp1[0]
    tp2 = [ln for ln in lines if "TP 2 fp8" in ln]
    assert len(tp2) == 1 and " o " in tp2[0] and "(x1.00)" in tp2[0]


def test_serving_accuracy_resolves_each_rows_model_and_device_or_says_why_not(tmp_path):
    """Synthetic rows (made-up timings: this checks the plumbing, not accuracy) of several models and systems."""
    import subprocess
    import sys

    cols = ("id,backend,backend_version,model_path,system,precision,mode,isl,osl,batch_size,tp_size,pp_size,"
            "attention_dp_size,moe_tp_size,moe_ep_size,silicon_ttft_ms,silicon_tpot_ms")
    rows = [
        "a,sglang,0.5.1.post1,meta-llama/Llama-3.1-8B-Instruct,h200_sxm,,agg,64,8,2,1,1,,1,1,20,5",
        "b,vllm,0.12.0,nvidia/Llama-3.1-8B-Instruct-FP8,h100_sxm,fp8,agg,64,8,2,1,1,,1,1,20,5",
        "c,trtllm,1.0.0rc3,Qwen/Qwen3-Next-80B-A3B-Instruct,h200_sxm,fp8,agg,64,8,2,8,1,,1,8,20,5",
        "d,trtllm,1.0.0rc3,Qwen/Qwen3-32B,b200_sxm,fp8,agg,64,8,2,1,1,,1,1,20,5",
        "e,trtllm,1.0.0rc3,Qwen/Qwen3-32B,h100_sxm,fp8,disagg,64,8,2,1,1,,1,1,20,5",
        "f,sglang,0.5.1.post1,Qwen/Qwen3-235B-A22B-FP8,h200_sxm,fp8,agg,64,8,2,4,1,4,1,16,20,5",
        "g,vllm,0.12.0,Qwen/Qwen3-32B,h100_sxm,nvfp4,agg,64,8,2,1,1,,1,1,20,5",
        "h,xyz,1,Qwen/Qwen3-32B,h100_sxm,,agg,64,8,2,1,1,,1,1,20,5",
        "i,vllm,0.12.0,Qwen/Qwen3-32B,h100_sxm,,agg,64,8,,1,1,,1,1,20,5",
        "j,trtllm,,meta-llama/Llama-3.1-8B-Instruct,h100_sxm,,agg,64,8,2,1,1,,1,1,20,5",  # no version: newest rules
        "k,sglang,0.5.1.post1,deepseek-ai/DeepSeek-R1,h200_sxm,fp8,agg,64,8,2,8,1,,8,1,20,5",  # the deepseek-v3 preset
        "l,vllm,0.16.0,moonshotai/Kimi-K2.5,h200_sxm,int4,agg,64,8,2,8,1,,8,1,20,5",  # its own int4 experts
        # attention DP 8 of TP1, experts over all 8: batch_size is one rank's, the concurrency 2 x 8
        "m,trtllm,1.1.0rc2.post2,deepseek-ai/DeepSeek-R1,h200_sxm,fp8,agg,64,8,2,1,1,8,1,8,20,5",
    ]
    data = tmp_path / "rows.csv"
    data.write_text(cols + "\n" + "\n".join(rows) + "\n")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/serving_accuracy.py"), "--data", str(data), "--rows"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "overall                n=6 " in text and "model llama3.1-8b" in text and "system h200_sxm" in text
    assert "model deepseek-v3      n=2 " in text  # DeepSeek-R1 is DeepSeek-V3's architecture: the preset cites both
    assert re.search(r"^  m +trtllm +c16 ", text, re.M)
    assert "model kimi-k2.5        n=1 " in text
    assert "engine trtllm (no version: newest rules) n=1 " in text  # an empty version is not pandas' NaN
    for why in ("1 x model Qwen/Qwen3-Next-80B-A3B-Instruct: no preset cites it",
                "1 x system 'b200_sxm': no measured profile ships for it",
                "1 x mode 'disagg': prefill and decode on separate workers are not modelled",
                "1 x qwen3-235b-a22b TP4 DP4 EP16: the profile cannot cost TP=4 PP=1 EP=16: all_gather over 4 devices",
                "1 x precision 'nvfp4' (weights) is not modelled",
                "1 x backend 'xyz' has no engine preset"):
        assert why in text, (why, text)
    assert "1 x batch_size, isl, osl >= 1 and measured TTFT, TPOT > 0 needed" in text
    assert "not predicted: 7 rows" in text
    bad = tmp_path / "bad.csv"
    bad.write_text("backend,isl\nvllm,1\n")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/serving_accuracy.py"), "--data", str(bad)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode != 0 and "missing" in out.stderr


def test_cache_residency_compares_the_two_set_counts(capsys):
    mod = _load("cache_residency")
    # a 1 MiB cache: the 532 KiB attention set needs 4 sets to pass twice it, under the old cap of 64 as well
    assert mod.main(["--rounds", "1", "--cache-bytes", str(1 << 20)]) == 0
    out = capsys.readouterr().out
    assert "last-level cache 1 MiB" in out and "4/4" in out and "median new/old" in out
    assert mod.main(["--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err


def test_kv_pool_vs_published_sizes_each_row_with_its_launch_flags(tmp_path, capsys, monkeypatch):
    mod = _load("kv_pool_vs_published")
    import pandas as pd
    df = pd.read_csv(mod.DEFAULT, comment="#", dtype={"engine_version": str, "engine_args": str}, keep_default_na=False)
    assert all(str(s).startswith("https://github.com/") for s in df["source"])  # every row cites its page
    rows = {(r["engine"], r["engine_args"]): mod.predict_row(r) for _, r in df.iterrows()}
    half = rows[("vllm", "memory_fraction=0.5")]
    assert half["weights"] == pytest.approx(55.13, rel=0.01)  # the published log's weights memory
    assert "0.5 x 150.1 GB" in half["rule"] and "dummy sampler: 1024 requests x 151936 logits" in half["rule"]
    assert "0.93 x 85.02 GB" in rows[("sglang", "memory_fraction_of=total;memory_fraction=0.93")]["rule"]
    bad = tmp_path / "bad.csv"
    bad.write_text("source,engine\nx,vllm\n")
    monkeypatch.setattr("sys.argv", ["kv_pool_vs_published.py", "--data", str(bad)])
    with pytest.raises(SystemExit, match=r"bad.csv: columns \['engine_version', 'model'"):
        mod.main()


def test_published_rows_keeps_agg_rows_of_shipped_systems_outside_the_development_set(tmp_path):
    import sys

    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))  # published_rows imports serving_accuracy beside it
    mod = _load("published_rows")
    sample = pd.DataFrame({"id": ["dev_1", "a", "b", "c", "d"], "mode": ["agg", "agg", "disagg", "agg", "agg"],
                           "system": ["h100_sxm", "h200_sxm", "h100_sxm", "b200_sxm", "h100_sxm"]})
    for col in mod.COLUMNS:
        if col not in sample.columns:
            sample[col] = 1
    assert list(mod.cut(sample, {"dev_1"})["id"]) == ["a", "d"]
    with pytest.raises(ValueError, match=r"the silicon sample has no 'mode', 'tp_size' column\(s\)"):
        mod.cut(sample.drop(columns=["mode", "tp_size"]), set())


def test_serving_error_breakdown_splits_light_load_ttft_by_model_kind(tmp_path, capsys):
    mod = _load("serving_error_breakdown")
    cols = ("model,moe,backend,tp,dp,ep,concurrency,ttft_measured_s,ttft_predicted_s,tpot_measured_s,"
            "tpot_predicted_s,one_prefill_s\n")
    f = tmp_path / "rows.csv"
    f.write_text(cols
                 + "dense-a,False,vllm,1,1,1,4,0.30,0.20,0.010,0.011,0.10\n"
                 + "dense-a,False,vllm,1,1,1,8,0.50,0.25,0.010,0.009,0.10\n"
                 + "moe-b,True,sglang,8,1,1,4,0.90,0.30,0.020,0.020,0.15\n"
                 + "moe-b,True,sglang,8,1,1,64,9.00,1.00,0.050,0.040,0.15\n")
    df = mod.read_rows([str(f)])
    light = mod.light_load(df, 8).reset_index()
    # the concurrency-64 row is not light load; medians over the rest
    dense = light[light["model"] == "dense-a"].iloc[0]
    moe = light[light["model"] == "moe-b"].iloc[0]
    assert dense["rows"] == 2 and dense["ttft_measured_over_predicted"] == pytest.approx((1.5 + 2.0) / 2)
    assert dense["measured_in_prefills"] == pytest.approx(4.0) and dense["predicted_in_prefills"] == pytest.approx(2.25)
    assert moe["rows"] == 1 and moe["ttft_measured_over_predicted"] == pytest.approx(3.0)
    kinds = mod.by_kind(df)
    assert kinds.loc[("MoE", "sglang"), "rows"] == 2
    assert kinds.loc[("MoE", "sglang"), "tpot_signed_median"] == pytest.approx((0.0 - 0.2) / 2)
    assert mod.main([str(f)]) == 0
    out = capsys.readouterr().out
    assert "dense x1.75 (1 layouts, 2 rows), MoE x3.00 (1 layouts, 1 rows)" in out
    # a CSV of another kind is refused, naming the file and the columns it lacks
    bad = tmp_path / "other.csv"
    bad.write_text("id,ttft\nr1,0.3\n")
    with pytest.raises(mod.BadRows, match=r"other\.csv: columns \['model', 'moe'.*serving_accuracy\.py --out"):
        mod.read_rows([str(bad)])
    # bad cells are named by row (the file's line) and column; nothing is read as a default
    lines = f.read_text().splitlines()
    for old, new, what in (("0.30,0.20", "abc,0.20", r"row 2, column ttft_measured_s: 'abc' is not a number"),
                           ("dense-a,False", "dense-a,maybe", r"row 2, column moe: 'maybe'; expected True or False"),
                           ("0.010,0.011,0.10", "0.010,0.011,0", r"row 2, column one_prefill_s: 0; expected a time > 0")):
        bad.write_text("\n".join([lines[0], lines[1].replace(old, new)] + lines[2:]) + "\n")
        with pytest.raises(mod.BadRows, match=what):
            mod.read_rows([str(bad)])
    bad.write_text(lines[0] + "\n")
    with pytest.raises(mod.BadRows, match="a header and no rows"):
        mod.read_rows([str(bad)])
    bad.write_bytes(b"\xff\xfe\x00binary\x81\n")
    with pytest.raises(mod.BadRows, match="cannot read it as a CSV"):
        mod.read_rows([str(bad)])
    assert mod.main([str(bad)]) == 2 and "other.csv: cannot read it as a CSV" in capsys.readouterr().err


def test_serving_accuracy_refuses_bad_inputs_before_predicting(tmp_path, capsys, monkeypatch):
    mod = _load("serving_accuracy")
    rows = tmp_path / "rows.csv"
    rows.write_text("id,backend,backend_version,model_path,system,precision,mode,isl,osl,gemm_quant_mode,batch_size,"
                    "tp_size,silicon_ttft_ms,silicon_tpot_ms\n"
                    "r1,vllm,0.12.0,Qwen/Qwen3-32B,h100_sxm,,agg,512,32,,8,1,300.0,25.0\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    cases = (
        (["--data", str(tmp_path / "none.csv")], "--data .*none.csv: no such file"),
        (["--data", str(empty)], "--data .*empty.csv: cannot read it as a CSV"),
        (["--data", str(rows), "--out", str(tmp_path)], "--out .* is a folder; expected a file name"),
        (["--data", str(rows), "--interconnect", str(tmp_path / "ic.yaml")], "--interconnect .*ic.yaml: .*does not exist"),
        (["--data", str(rows), "--profile", "profiles/interconnect/h100-nvswitch-4of8.yaml"],
         "is an interconnect profile .*pass a device profile as --profile"),
    )
    for argv, message in cases:
        monkeypatch.setattr("sys.argv", ["serving_accuracy.py", *argv])
        with pytest.raises(SystemExit) as exc:
            mod.main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and re.search(message, err), (argv, err)
        assert "Traceback" not in err


def test_engine_moe_tables_compares_the_op_with_the_sum_of_its_dag_nodes():
    from accelcal.calibrate.compose import compose
    from accelcal.calibrate.moe_table import MoeOpEntry, MoeOpTable
    from accelcal.calibrate.profile import Profile
    from accelcal.models import ModelConfig
    from accelcal.planner.dag import build_layer_dag
    from accelcal.planner.parallelism import Parallelism
    from accelcal.planner.serving.moe_op import MOE_OP_NODES
    from accelcal.planner.serving.step_cost import StepCoster
    from accelcal.planner.serving.engine import EnginePreset

    mod = _load("engine_moe_tables")
    prof = compose(Profile.load(ROOT / "profiles/nvidia-h100.yaml"),
                   Profile.load(ROOT / "profiles/interconnect/h100-nvswitch-4of8.yaml"))
    m = ModelConfig.resolve("qwen3-30b-a3b")
    shape = dict(hidden_size=m.hidden_size, expert_ffn_size=m.expert_ffn_size, top_k=m.top_k, experts=m.num_experts)
    entries = [MoeOpEntry("bf16", "k", **shape, moe_tp=2, moe_ep=1, distribution="balanced", tokens=(1, 1024, 4096),
                          time_s=(1e-5, 1e-4, 1e-3)),
               MoeOpEntry("bf16", "k", **shape, moe_tp=1, moe_ep=2, distribution="balanced", tokens=(1024,),
                          time_s=(1e-4,)),  # EP: predict does not read it, nor does the comparison
               MoeOpEntry("bf16", "k", hidden_size=1000, expert_ffn_size=100, top_k=2, experts=4, moe_tp=1, moe_ep=1,
                          distribution="balanced", tokens=(1024,), time_s=(1e-4,))]  # no preset has this shape
    out = mod.compare(prof, [MoeOpTable("NVIDIA H100 80GB HBM3", "vllm", "t", ["c"], entries)])
    assert list(out.tokens) == [1, 1024, 4096] and set(out.moe_ep) == {1} and set(out.model) == {m.name}
    # the profile's side: the layer DAG's MoE-op nodes at TP 2 (experts split 2 ways), summed
    sc = StepCoster(prof, m, Parallelism(tp=2), EnginePreset.from_name("vllm"), "bf16", "bf16")
    dag = build_layer_dag(sc.model, "prefill", 1, 1024, 1024, sc.parallelism, sc.impl, sc._dag_options)
    want = sum(n.device_s for n in sc._costers[False].cost_dag(dag, sc.el).nodes if n.name in MOE_OP_NODES)
    row = out[out.tokens == 1024].iloc[0]
    assert row.profile_s == pytest.approx(want) and row.published_s == 1e-4


def test_serving_accuracy_ttft_lifetime_slope_tells_a_wait_for_a_slot_from_a_prefill_queue():
    """A closed loop of c clients on an engine that runs c - 1 at once: every new request waits for the next of the
    running ones to finish, so TTFT grows by 1/c to 1/(c - 1) of the request's lifetime; with c slots it does not grow."""
    from accelcal.calibrate.profile import Profile
    from accelcal.models import ModelConfig
    from accelcal.planner.serving.engine import EnginePreset
    from accelcal.planner.serving.predict import predict_serving
    from planner_profiles import h100_like

    mod = _load("serving_accuracy")
    prof, small, c = Profile.from_dict(h100_like()), ModelConfig.from_name("small"), 8
    full = EnginePreset.from_name("vllm").with_overrides({"max_seqs": c}, "test")
    short = full.with_overrides({"max_seqs": c - 1}, "test: one slot fewer than clients")
    by_osl = {}
    for osl in (64, 256):
        m_short, m_full = (predict_serving(prof, small, e, concurrency=c, isl=512, osl=osl, num_requests=40 * c,
                                           turnaround_s=0.0).metrics for e in (short, full))
        by_osl[osl] = (m_short.tpot_mean_s, m_full.tpot_mean_s, m_short.ttft_mean_s, m_full.ttft_mean_s)
    [(conc, waits, queue_only)] = mod.ttft_lifetime_slope({("vllm", 1, c, 512): by_osl})[("vllm", 1)]
    assert conc == c
    assert 0.9 / c <= waits <= 1.1 / (c - 1)  # the next of the c - 1 running ones' finishes
    assert abs(queue_only) < 0.1 / c
    # rows without TTFT, or with one output length, give no slope
    assert mod.ttft_lifetime_slope({("vllm", 1, c, 512): {64: (0.01, 0.01)}, ("vllm", 1, c, 1024): {64: by_osl[64]}}) == {}


def test_serving_accuracy_decode_excess_recovers_a_cost_per_running_sequence():
    """A measured decode step that every running sequence lengthens by 30 us beyond the prediction (and every step
    by 0.5 ms) reads as slope 30 us/seq and intercept 0.5 ms; one concurrency alone gives no line."""
    mod = _load("serving_accuracy")
    per_seq, per_step, dp = 30e-6, 0.5e-3, 0.100
    tpots = {}
    for c in (8, 32, 128):
        d_p = 0.006 + 2e-5 * c
        d_m = d_p + per_step + per_seq * c
        for isl in (1024, 4096):
            tpots[("trtllm", 8, c, isl)] = {osl: (d_m + c / osl * dp, d_p + c / osl * dp) for osl in (128, 512)}
    tpots[("vllm", 2, 16, 1024)] = {osl: (0.02 + 16 / osl * dp, 0.02 + 16 / osl * dp) for osl in (128, 512)}
    out = mod.decode_excess(mod.split_tpot(tpots))
    assert set(out) == {("trtllm", 8)}
    slope, intercept, pts = out[("trtllm", 8)]
    assert slope == pytest.approx(per_seq) and intercept == pytest.approx(per_step, abs=1e-9)
    assert [c for c, _ in pts] == [8, 32, 128]
    assert pts[-1][1] == pytest.approx(per_step + per_seq * 128)


def test_serving_accuracy_light_load_excess_tells_a_per_request_cost_from_a_dearer_prefill():
    """At each layout's lowest concurrency: a constant 150 ms beyond the prediction reads the same at every prompt
    length; a prefill 1.5x dearer grows with the prompt; rows without TTFT are left out."""
    mod = _load("serving_accuracy")
    tpots = {}
    for isl, pre in ((1024, 0.05), (8192, 0.30)):
        for c in (4, 16):  # the lowest concurrency (4) is the one read
            extra = 0.150 if c == 4 else 9.0
            tpots[("sglang", 8, c, isl)] = {osl: (0.01, 0.01, pre + extra, pre) for osl in (1024, 8192)}
            tpots[("vllm", 2, c, isl)] = {osl: (0.01, 0.01, 1.5 * pre, pre) for osl in (1024, 8192)}
    tpots[("trtllm", 1, 8, 1024)] = {128: (0.01, 0.01)}
    out = mod.light_load_excess(tpots)
    assert set(out) == {("sglang", 8), ("vllm", 2)}
    c, cells = out[("sglang", 8)]
    assert c == 4 and [isl for isl, *_ in cells] == [1024, 8192]
    assert [d for _, d, _ in cells] == [pytest.approx(0.150), pytest.approx(0.150)]
    c, cells = out[("vllm", 2)]
    assert [d for _, d, _ in cells] == [pytest.approx(0.025), pytest.approx(0.150)]
    assert [r for *_, r in cells] == [pytest.approx(1.5), pytest.approx(1.5)]


def test_serving_accuracy_ttft_in_prefills_splits_by_prompt_length_where_asked():
    """The medians per concurrency pool every prompt length; split by length, a queue that is right at one length
    and short at another (two prompts a step at 1024 tokens, one at 2048) shows as a row of its own."""
    mod = _load("serving_accuracy")
    rows = {("trtllm", 8, 1024): ([4.1, 4.3], [4.0, 4.0]), ("trtllm", 8, 2048): ([4.3], [2.8]),
            ("trtllm", 16, 2048): ([4.8], [3.4]), ("vllm", 8, 1024): ([3.0], [3.0])}
    pooled = mod.ttft_in_prefills(rows)
    assert pooled == {"trtllm": "c8 4.3/4.0  c16 4.8/3.4", "vllm": "c8 3.0/3.0"}  # medians of 4.1, 4.3, 4.3 / 4, 4, 2.8
    split = mod.ttft_in_prefills(rows, by_prompt=True)
    assert split[("trtllm", 1024)] == "c8 4.2/4.0"
    assert split[("trtllm", 2048)] == "c8 4.3/2.8  c16 4.8/3.4"
    assert split[("vllm", 1024)] == "c8 3.0/3.0"


def test_benchmark_scripts_name_bad_input_in_one_line():
    import subprocess

    for argv, rc, text in ((["benchmarks/serving_search_speed.py", "--concurrency", "abc"], 2,
                            "serving_search_speed.py: error: invalid literal for int()"),
                           (["benchmarks/engine_moe_tables.py", "--profile", "/nonexistent.yaml"], 2,
                            "engine_moe_tables.py: error: --profile /nonexistent.yaml does not exist"),
                           (["benchmarks/nccl_import.py", "--help"], 0, "usage: python benchmarks/nccl_import.py")):
        r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == rc and text in r.stdout + r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)
