"""Serving-engine model: closed-loop invariants, KV arithmetic, queueing, presets, predict CLI, search."""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import numpy as np
import pytest

from accelcal.calibrate.profile import Profile
from accelcal.cli import main
from accelcal.planner.cluster import Cluster
from accelcal.models import ModelConfig
from accelcal.planner.search import plan
from accelcal.planner.serving.engine import EnginePreset, engine_names
from accelcal.planner.serving.kv import Infeasible, kv_budget
from accelcal.planner.serving.predict import JSON_KEYS, predict_serving
from accelcal.planner.serving.search import ServingTargets, format_search, search_serving
from accelcal.planner.serving.simulate import simulate
from accelcal.planner.serving.steady import STEADY_REL_TOL, steady_state
from accelcal.planner.parallelism import Parallelism
from accelcal.planner.serving.step_cost import StepCoster
from accelcal.planner.serving.workload import ServingWorkload
from accelcal.planner.workload import Workload

from planner_profiles import h100_like


@pytest.fixture(scope="module")
def prof():
    return Profile.from_dict(h100_like())


@pytest.fixture(scope="module")
def small():
    return ModelConfig.from_name("small")


def _run(prof, model, engine, c, isl, osl, n=None, ratio=0.0, capacity=None, turnaround=None):
    return predict_serving(prof, model, engine, concurrency=c, isl=isl, osl=osl, num_requests=n, range_ratio=ratio,
                           capacity_bytes=capacity, turnaround_s=turnaround)


def test_littles_law_closed_loop(prof, small):
    # concurrency = throughput x latency: the clients are always in the system (no think time)
    for engine in ("vllm", "sglang", "trtllm"):
        res = _run(prof, small, engine, 8, 512, 64, n=800, ratio=0.5)
        m = res.metrics
        assert m.requests_per_s * m.request_latency_mean_s == pytest.approx(8, rel=0.02), engine


def test_tpot_non_decreasing_in_concurrency(prof, small):
    # Engine-model invariants are checked without the client's random turnaround (turnaround=0): it adds
    # sampling noise of a few ms, which on this small model is the size of a step.
    for engine in ("vllm", "sglang", "trtllm", "static"):
        tpots = [_run(prof, small, engine, c, 512, 64, turnaround=0.0).metrics.tpot_mean_s for c in (1, 2, 4, 8, 16, 32)]
        assert all(b >= a * (1 - 1e-9) for a, b in zip(tpots, tpots[1:])), (engine, tpots)


def test_ttft_non_decreasing_in_prompt_length(prof, small):
    # Without chunked prefill (trtllm) a step packs as many whole prompts as the token budget takes, so
    # 8 x 1024-token prompts share one 8192-token step while a 4096-token prompt leaves room for one: the
    # invariant holds per step, and for the chunked engines at any concurrency.
    for engine, c in (("vllm", 8), ("sglang", 8), ("vllm", 1), ("sglang", 1), ("trtllm", 1), ("static", 1)):
        ttfts = [_run(prof, small, engine, c, isl, 32, turnaround=0.0).metrics.ttft_mean_s for isl in (64, 256, 1024, 4096)]
        assert all(b >= a for a, b in zip(ttfts, ttfts[1:])), (engine, c, ttfts)


def test_static_preset_reproduces_the_planner(prof, small):
    one = Cluster.homogeneous(prof, 1, 1)
    for batch in (1, 8):
        w = Workload(prompt_len=512, output_len=64, batch=batch)
        cand = plan(small, one, w).best
        engine = EnginePreset.from_name("static")
        sc = StepCoster(prof, small, Parallelism(), engine)
        # a decode step at the planner's batch and mean KV length is the planner's TPOT (plus sampling: the
        # serving step reads the fp32 logits once, which the planner does not cost)
        assert sc.step_s(batch, w.mean_decode_kv_len) == pytest.approx(cand.tpot_s, rel=0.02)
        lone = _run(prof, small, "static", 1, 512, 64, n=4, turnaround=0.0)  # the planner has no client
        # the serving step also samples (reads the fp32 logits once), which the planner does not cost
        assert lone.metrics.ttft_mean_s == pytest.approx(cand.ttft_s, rel=0.02)
        run = _run(prof, small, "static", batch, 512, 64, n=batch * 4, turnaround=0.0)
        assert run.metrics.output_tokens_per_s_per_device == pytest.approx(cand.tokens_per_s_per_device, rel=0.03)
        # with PP 2 both split the batch into micro-batches in flight: the same decode step
        pp2 = next(c for c in plan(small, Cluster.homogeneous(prof, 2, 2), w).ranked if (c.tp, c.pp) == (1, 2))
        sc2 = StepCoster(prof, small, Parallelism(pp=2, pp_scope=pp2.scopes["pp"]), engine)
        assert sc2.step_s(batch, w.mean_decode_kv_len) == pytest.approx(pp2.tpot_s, rel=0.02)


def test_pp_steps_run_as_micro_batches_in_flight(prof, small):
    engine, _ = EnginePreset.from_name("vllm").for_version("")
    sc = StepCoster(prof, small, Parallelism(pp=2), engine)
    one = StepCoster(prof, small, Parallelism(), engine)
    # decodes split evenly; prompt chunks first, largest first, each to the micro-batch with the fewest tokens
    assert sc.micro_batches(8) == [(4, (), 4), (4, (), 4)]
    assert sc.micro_batches(3, ((512, 512), (1024, 1024)), 4) == [(0, ((1024, 1024),), 1), (3, ((512, 512),), 3)]
    assert sc.micro_batches(1) == [(1, (), 1)] and one.micro_batches(8) == [(8, (), 8)]
    # a lone sequence passes both stages (half the layers each) and one hand-off: the unsplit step plus the send
    # and its kernel's launch (a decode step replays a CUDA graph)
    send = prof.collective_time_s("send_recv", small.hidden_size * small.weight_bytes_per_elem, 2, "intra_node").time_s
    launch = prof.launch_overhead_s("graph").time_s
    assert sc.step_s(1, 300) == pytest.approx(one.step_s(1, 300) + send + launch, rel=1e-9)
    # two prompts in flight as two micro-batches: a step is about one prompt's pass (each stage also runs the other
    # micro-batch's share, with its embedding or head, so a little more), well under one pass of both
    two = ((1024, 1024), (1024, 1024))
    assert sc.step_s(0, 0, two[:1]) <= sc.step_s(0, 0, two) <= 1.05 * sc.step_s(0, 0, two[:1])
    assert sc.step_s(0, 0, two) < 0.75 * one.step_s(0, 0, two)


def test_pp_decode_steps_match_the_layer_level_planner_where_the_last_stage_is_the_busiest():
    # llama3.1-8b TP1 PP8 at batch 256: 8 micro-batches of 32, and the last stage also runs the LM head and
    # sampling for every one of them, so its busy time, not one micro-batch's pass, sets the step (the layer-level
    # planner's TPOT = max(path, micro-batches x slowest stage), an independent implementation)
    from accelcal.calibrate.compose import compose

    h100 = compose(Profile.load("profiles/nvidia-h100.yaml"), Profile.load("profiles/interconnect/h100-nvswitch-4of8.yaml"))
    m = ModelConfig.from_name("llama3.1-8b")
    static = EnginePreset.from_name("static")
    for tp, pp, batch in ((1, 8, 256), (1, 4, 64), (2, 4, 64)):
        w = Workload(prompt_len=1024, output_len=128, batch=batch)
        cand = next(c for c in plan(m, Cluster.homogeneous(h100, 1, 8), w).ranked if (c.tp, c.pp) == (tp, pp))
        sc = StepCoster(h100, m, Parallelism(tp=tp, pp=pp, tp_scope=cand.scopes["tp"], pp_scope=cand.scopes["pp"]),
                        static)
        assert sc.step_s(batch, w.mean_decode_kv_len) == pytest.approx(cand.tpot_s, rel=0.02), (tp, pp, batch)
    path = max(sc._passes(d, w.mean_decode_kv_len, cs, lg)[0] for d, cs, lg in sc.micro_batches(batch))
    assert sc.step_s(batch, w.mean_decode_kv_len) >= path


def test_kv_capacity_hand_computed():
    m = ModelConfig("hand", layers=2, hidden_size=64, heads=4, kv_heads=2, head_dim=16, ffn_size=128, vocab_size=100)
    cap = 80 * 1024 ** 3
    sglang, _ = EnginePreset.from_name("sglang").for_version("")  # the rule of 0.5.3 on
    kv = kv_budget(m, sglang, 1, 1, cap)
    # weights: per layer qkv 64x(4+2+2)x16 + o 4x16x64 + mlp 3x64x128 + 2 norms x 64; embedding + head 2x100x64 + 64
    per_layer = 64 * 128 + 64 * 64 + 3 * 64 * 128 + 2 * 64
    weights = (2 * per_layer + 2 * 100 * 64 + 64) * 2
    assert kv.weights_bytes == weights
    # SGLang rule: reserved = max(512 + 8192 x 1.5 + 256 x 2 + 1/8 x 1024, 10240) MiB = 13440 MiB
    frac = round((81920 - 13440) / 81920, 3)
    assert frac == 0.836
    assert kv.kv_pool_bytes == pytest.approx(frac * cap - weights)
    per_token = 2 * 2 * 2 * 16 * 2  # layers x (K, V) x kv_heads x head_dim x bf16
    assert kv.kv_bytes_per_token == per_token
    assert kv.blocks == int((frac * cap - weights) // per_token)
    fp8 = kv_budget(m, sglang, 1, 1, cap, weight_dtype="fp8_e4m3", kv_dtype="fp8_e4m3")
    assert fp8.kv_bytes_per_token == per_token / 2
    assert fp8.weights_bytes == 2 * per_layer * 1 + (2 * 100 * 64 + 64) * 2  # layers 1 byte, embed/head bf16
    # SGLang 0.5.1 and 0.5.2 reserve by memory tier: (9.5 + 1 x 1 / 2) GiB = 10240 MiB below 90 GiB
    old, _ = EnginePreset.from_name("sglang").for_version("0.5.1.post1")
    assert old.memory_fraction_of == "sglang_tier_reserve"
    kv_old = kv_budget(m, old, 1, 1, cap)
    assert kv_old.kv_pool_bytes == pytest.approx(round((81920 - 10240) / 81920, 3) * cap - weights)
    assert "0.875" in kv_old.rule


def test_sglang_takes_a_given_mem_fraction_static_over_its_rule():
    m = ModelConfig("hand", layers=2, hidden_size=64, heads=4, kv_heads=2, head_dim=16, ffn_size=128, vocab_size=100)
    cap = 80 * 1024 ** 3
    sglang, _ = EnginePreset.from_name("sglang").for_version("")
    given = kv_budget(m, sglang.with_overrides({"memory_fraction": 0.5}, "test"), 1, 1, cap, in_use_bytes=1e9)
    assert given.kv_pool_bytes == pytest.approx(0.5 * (cap - 1e9) - given.weights_bytes)
    assert given.rule.startswith("mem_fraction_static 0.5 (given); 0.500 x")
    with pytest.raises(ValueError, match=r"memory_fraction \(SGLang's --mem-fraction-static\) must be in \(0, 1\], "
                                         r"or 0 for the release's own rule, got 1.5"):
        sglang.with_overrides({"memory_fraction": 1.5}, "test")


def test_sglang_reserves_by_release_memory_tier_and_tp():
    from accelcal.planner.serving.kv import sglang_reserved_mib

    base = EnginePreset.from_name("sglang")
    old, _ = base.for_version("0.5.2")
    # 0.5.1 / 0.5.2 tiers (server_args.py __post_init__), tp x pp = 8: 2.8 + 0.8, 9.5 + 4, 12 + 4 GiB, then 32 GiB
    assert sglang_reserved_mib(old, 24 * 1024, 8, 1) == pytest.approx(3.6 * 1024)
    assert sglang_reserved_mib(old, 80 * 1024, 4, 2) == pytest.approx(13.5 * 1024)
    assert sglang_reserved_mib(old, 141 * 1024, 8, 1) == pytest.approx(16 * 1024)
    assert sglang_reserved_mib(old, 180 * 1024, 8, 1) == 32 * 1024
    # 0.5.3 on: 512 + 8192 x 1.5 + cuda_graph_max_bs x 2 + tp x pp / 8 x 1024, the graphs' batch by TP
    new, _ = base.for_version("0.5.3")
    tp2, notes2 = new.for_layout(2, 1)
    tp4, notes4 = new.for_layout(4, 1)
    assert max(tp2.cuda_graph_sizes) == 256 and max(tp4.cuda_graph_sizes) == 512 and not notes4
    assert "decode CUDA graphs up to batch 256 at TP 2 (up to 512 from TP 4" in notes2[0]
    assert sglang_reserved_mib(tp2, 80 * 1024, 2, 1) == 512 + 12288 + 512 + 256
    assert sglang_reserved_mib(tp4, 80 * 1024, 4, 1) == 512 + 12288 + 1024 + 512
    assert sglang_reserved_mib(tp2, 40 * 1024, 1, 1) == 512 + 12288 + 512 + 128  # no 10 GiB floor below 60 GiB
    # the old releases capture up to 160 at any TP
    assert max(old.cuda_graph_sizes) == 160 and old.for_layout(2, 1) == (old, [])
    # sizes given (SGLang --cuda-graph-bs, aiconfigurator's recipe) are captured as given, at any TP
    given = new.with_overrides({"cuda_graph_sizes": list(range(1, 301))}, "test")
    assert given.for_layout(2, 1)[0].cuda_graph_sizes == tuple(range(1, 301))
    with pytest.raises(ValueError, match="small_tp_cuda_graph_max_batch = 256 needs small_tp_below >= 2"):
        new.with_overrides({"small_tp_below": 0}, "test")


def test_vllm_reserves_its_profile_runs_dummy_sampler_when_that_is_the_larger_peak():
    """vLLM's start-up profile ends with a top-k/top-p sampler run over min(token budget, max_num_seqs) requests x
    the whole vocabulary: at many sequences and a large vocabulary its peak, not the forward's, is the reserve."""
    m = ModelConfig("hand", layers=2, hidden_size=64, heads=4, kv_heads=2, head_dim=16, ffn_size=128,
                    vocab_size=150000)
    cap = 80e9
    vllm = EnginePreset.from_name("vllm")
    assert vllm.profile_sampler_bytes_per_logit == 28 and "apply_top_k_top_p" in vllm.sources[
        "profile_sampler_bytes_per_logit"]
    wide = kv_budget(m, vllm, 1, 1, cap)
    want = min(vllm.token_budget, vllm.max_seqs) * 150000 * 28  # 1024 requests x 150000 logits x 28 B = 4.3 GB
    assert wide.activation_bytes == pytest.approx(want)
    assert "the profile run's dummy sampler: 1024 requests x 150000 logits x 28 B" in wide.rule
    # a deployment with few sequences (aiconfigurator's recipe: max_num_seqs = concurrency): a small sampler run
    few = kv_budget(m, vllm.with_overrides({"max_seqs": 8}, "test"), 1, 1, cap)
    assert few.activation_bytes == pytest.approx(8 * 150000 * 28)
    assert few.kv_pool_bytes - wide.kv_pool_bytes == pytest.approx((1024 - 8) * 150000 * 28)
    # a small vocabulary: the forward's activations are the larger peak and stay the reserve
    small_vocab = dataclasses.replace(m, vocab_size=100)
    fwd = kv_budget(small_vocab, vllm, 1, 1, cap)
    assert fwd.activation_bytes > 1024 * 100 * 28 and "dummy sampler" not in fwd.rule
    # engines without such a run are unchanged by it
    for name in ("sglang", "trtllm"):
        assert EnginePreset.from_name(name).profile_sampler_bytes_per_logit == 0
    off = kv_budget(m, vllm.with_overrides({"profile_sampler_bytes_per_logit": 0}, "test"), 1, 1, cap)
    assert off.activation_bytes < want and "dummy sampler" not in off.rule


def test_memory_in_use_at_start_leaves_the_pool_under_each_engines_rule(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from accelcal.calibrate.fit import memory_in_use_at_start
    from accelcal.planner.serving.kv import memory_in_use_bytes

    m = ModelConfig("hand", layers=2, hidden_size=64, heads=4, kv_heads=2, head_dim=16, ffn_size=128, vocab_size=100)
    cap, used = 80e9, 0.5e9
    # SGLang on 80e9 B = 76294 MiB: reserved 512 + 8192 x 1.5 + 256 x 2 + 1/8 x 1024 = 13440 MiB, so
    # mem_fraction_static = round(62854 / 76294, 3) = 0.824 (by hand, server_args.py's rule)
    for name, lost in (("vllm", 0.0), ("sglang", 0.824 * used), ("trtllm", 0.9 * used), ("static", used)):
        e, _ = EnginePreset.from_name(name).for_version("")
        a, b = kv_budget(m, e, 1, 1, cap), kv_budget(m, e, 1, 1, cap, in_use_bytes=used)
        # SGLang sizes the pool as mem_fraction_static of the memory free at start, TensorRT-LLM as its fraction
        # of the memory free after loading: that fraction of what was in use comes off the pool; vLLM snapshots
        # its memory after the CUDA context exists, so it comes out of the (1 - utilization) headroom and the
        # pool keeps it
        want = lost
        assert a.kv_pool_bytes - b.kv_pool_bytes == pytest.approx(want)
        assert b.in_use_bytes == pytest.approx(want) and b.reserve_bytes == pytest.approx(a.reserve_bytes)
        for kv in (a, b):  # the parts partition the device's memory
            parts = (kv.weights_bytes, kv.activation_bytes, kv.comm_buffer_bytes, kv.reserve_bytes, kv.in_use_bytes,
                     kv.kv_pool_bytes)
            assert sum(parts) == pytest.approx(cap) and min(parts) >= 0
        assert ("in use at start 0.5 GB" in b.rule) == (want > 0)
    assert not EnginePreset.from_name("vllm").in_use_at_start_from_pool and "after NCCL is initialized" in \
        EnginePreset.from_name("vllm").sources["in_use_at_start_from_pool"]
    with pytest.raises(ValueError, match=r"memory in use at start must be in \[0, capacity 8e\+10\), got -1"):
        kv_budget(m, EnginePreset.from_name("vllm"), 1, 1, cap, in_use_bytes=-1)
    # the figure: total - free of the kernel suite's environment on an accelerator, none on a CPU
    env = {"device_type": "cuda", "device_memory_total_bytes": 85017493504, "device_memory_free_bytes": 84465090560}
    assert memory_in_use_at_start(env) == 552402944
    assert memory_in_use_at_start(dict(env, device_type="cpu")) is None
    assert memory_in_use_at_start({"device_type": "cuda"}) is None
    # a profile keeps it (optional key), a bad one is refused naming the key, and predict uses it
    root = Path(__file__).resolve().parent.parent
    h100 = Profile.load(root / "profiles" / "nvidia-h100.yaml")
    assert memory_in_use_bytes(h100) == 552402944
    d = h100.to_dict()
    d["identity"]["memory_in_use_at_start_bytes"] = 1e12
    with pytest.raises(Exception, match=r"identity.memory_in_use_at_start_bytes: .*>= memory_capacity_bytes"):
        Profile.from_dict(d)
    del d["identity"]["memory_in_use_at_start_bytes"]
    assert memory_in_use_bytes(Profile.from_dict(d)) == 0.0
    # the backfill script writes it from a copy's own raw data, and changes no answer
    shutil.copy(root / "profiles" / "nvidia-h100.yaml", tmp_path / "h.yaml")
    shutil.copytree(root / "profiles" / "nvidia-h100-raw", tmp_path / "nvidia-h100-raw")
    p = Profile.load(tmp_path / "h.yaml")
    p.identity.memory_in_use_at_start_bytes = None
    p.save(tmp_path / "h.yaml")
    out = subprocess.run([sys.executable, str(root / "scripts" / "backfill_memory_in_use.py"), str(tmp_path / "h.yaml")],
                         capture_output=True, text=True, check=True).stdout
    assert "= 552402944 (kernels.env.json: total 85017493504 - free 84465090560)" in out
    back = Profile.load(tmp_path / "h.yaml")
    assert back.identity.memory_in_use_at_start_bytes == 552402944
    assert back.gemm_time_s(64, 1280, 5120, "fp8_e4m3").time_s == h100.gemm_time_s(64, 1280, 5120, "fp8_e4m3").time_s


def test_queueing_when_the_pool_is_full(prof, small):
    engine = EnginePreset.from_name("trtllm")
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    per_req = kv.kv_bytes_per_token * (512 + 64)
    # a device whose pool holds three requests at full length
    extra = 3.5 * per_req / engine.memory_fraction
    base = kv.capacity_bytes - kv.kv_pool_bytes / engine.memory_fraction
    capped = _run(prof, small, "trtllm", 16, 512, 64, n=64, capacity=base + extra)
    assert capped.feasible
    assert capped.max_concurrent_sequences == 3
    assert capped.preemptions == 0
    free = _run(prof, small, "trtllm", 16, 512, 64, n=64)
    assert free.max_concurrent_sequences == 16
    assert capped.metrics.ttft_mean_s > 3 * free.metrics.ttft_mean_s  # they wait for room
    # vLLM allocates at the current length and preempts instead
    vk = kv_budget(small, EnginePreset.from_name("vllm"), 1, 1, prof.identity.memory_capacity_bytes)
    # a pool of 2.2 requests at full length (512 + 512) admits 4 prompts of 512, which then outgrow it
    v_cap = (vk.weights_bytes + vk.activation_bytes + vk.comm_buffer_bytes
             + 2.2 * vk.kv_bytes_per_token * 1024) / 0.9
    v = _run(prof, small, "vllm", 16, 512, 512, n=32, capacity=v_cap)
    assert v.feasible and v.preemptions > 0


def test_infeasible_says_which(prof):
    res = predict_serving(prof, "llama3-70b", "vllm", concurrency=1, isl=128, osl=16)
    assert not res.feasible and "weights + reserves do not fit" in res.reason and "GB" in res.reason
    small = ModelConfig.from_name("small")
    tight = kv_budget(small, EnginePreset.from_name("vllm"), 1, 1, prof.identity.memory_capacity_bytes)
    with pytest.raises(Infeasible, match="one request of 10000000 \\+ 16 tokens needs"):
        tight.check_request(10_000_000, 16)


def test_sampler_runs_over_the_whole_vocabulary_at_every_tp(prof, small):
    # Every rank samples from the logits all-gathered to the whole vocabulary, so the sampler's share of a step
    # is the same at TP 1 and TP 2 (the h100_like fixture has no sampler section: the copy-bandwidth estimate).
    base = EnginePreset.from_name("vllm").with_overrides({"sampler": "argmax"}, "test")
    sort = base.with_overrides({"sampler": "top_k_top_p_sort"}, "test")
    batch, kv = 16, 700
    logits = batch * small.vocab_size
    extra = prof.memory_time_s(logits * 282, "copy").time_s - prof.memory_time_s(logits * 4, "copy").time_s
    for tp in (1, 2):
        par = Parallelism(tp=tp)
        assert (StepCoster(prof, small, par, sort).step_s(batch, kv) - StepCoster(prof, small, par, base).step_s(batch, kv)
                == pytest.approx(extra, rel=1e-9)), tp
    assert EnginePreset.from_name("vllm").sampler == "top_k_top_p_sort"
    assert "forward_native" in EnginePreset.from_name("vllm").sources["sampler"]


def test_presets_load_and_cite_sources():
    from accelcal.planner.serving.engine import _NOT_KEYS

    assert {"vllm", "sglang", "trtllm", "static"} <= set(engine_names())
    for name in engine_names():
        e = EnginePreset.from_name(name)
        keys = [f.name for f in dataclasses.fields(e) if f.name not in ("name", "version", *_NOT_KEYS)]
        for k in keys:
            if k in e.sources or getattr(type(e), k, None) == getattr(e, k):
                continue
            raise AssertionError(f"{name}: {k} has no source")
        assert all(len(s) > 10 for s in e.sources.values())
        assert all(len(src) > 10 for _, _, srcs in e.since for src in srcs.values())  # later releases cite too
        assert all(len(src) > 10 for _, _, srcs in e.device_rules for src in srcs.values())  # and device rules
    assert "max_num_batched_tokens" in EnginePreset.from_name("vllm").sources["token_budget"]
    assert not EnginePreset.from_name("sglang").mixed_steps


def test_preset_without_source_is_an_error(tmp_path):
    bad = tmp_path / "e.yaml"
    bad.write_text("name: x\nversion: '1'\ntoken_budget: {value: 8}\n")
    with pytest.raises(ValueError, match="token_budget must be"):
        EnginePreset.from_yaml(bad)


def test_steady_state_matches_simulation(prof, small):
    for name in ("vllm", "sglang", "trtllm"):
        engine = EnginePreset.from_name(name)
        kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
        sc = StepCoster(prof, small, Parallelism(), engine)
        for c in (4, 32):
            sim = simulate(engine, sc, kv, ServingWorkload(isl=1024, osl=128, concurrency=c, num_requests=30 * c,
                                                           range_ratio=0.5)).metrics
            s = steady_state(engine, sc, kv, 1024, 128, c)
            assert s.tpot_s == pytest.approx(sim.tpot_mean_s, rel=STEADY_REL_TOL), (name, c)
            assert s.output_tokens_per_s == pytest.approx(sim.output_tokens_per_s, rel=STEADY_REL_TOL), (name, c)


def test_open_loop_light_load_has_no_queueing(prof, small):
    # the engine's queueing alone: no client turnaround noise on either side, and no overlap scheduling (under
    # it a closed-loop client's next request also waits for the step its last one rides along in)
    vllm = EnginePreset.from_name("vllm").for_version("0.12.0")[0]
    assert not vllm.overlap_scheduling
    res = predict_serving(prof, small, vllm, request_rate_per_s=0.5, isl=256, osl=16, num_requests=50, turnaround_s=0.0)
    lone = _run(prof, small, vllm, 1, 256, 16, n=5, turnaround=0.0)
    assert res.metrics.ttft_p50_s == pytest.approx(lone.metrics.ttft_p50_s, rel=0.1)


@pytest.fixture(scope="module")
def prof_path(tmp_path_factory, prof):
    p = tmp_path_factory.mktemp("serving") / "h100-like.yaml"
    prof.save(p)
    return str(p)


def test_predict_json_schema_and_exit_codes(prof_path, capsys):
    rc = main(["predict", "--profile", prof_path, "--model", "small", "--engine", "vllm", "--concurrency", "4",
               "--isl", "256", "--osl", "32", "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["feasible"] is True and out["reason"] == ""
    for k in JSON_KEYS + ("max_concurrent_sequences", "memory", "steps_simulated", "feasible", "reason", "decode_step"):
        assert k in out, k
    assert out["steps_simulated"] > 0 and out["memory"]["kv_pool_bytes"] > 0 and out["decode_step"]["total_s"] > 0
    assert {"compute_s", "memory_s", "communication_s", "batch"} <= set(out["decode_step"])
    rc = main(["predict", "--profile", prof_path, "--model", "llama3-70b", "--engine", "vllm", "--concurrency", "4",
               "--isl", "256", "--osl", "32", "--format", "json"])
    cap = capsys.readouterr()
    assert rc == 3 and json.loads(cap.out)["feasible"] is False and "do not fit" in cap.err


@pytest.mark.parametrize("argv, message", [
    (["--concurrency", "0"], "--concurrency must be >= 1"),
    (["--concurrency", "4", "--isl-override", "0"], "--isl must be >= 1"),
    (["--concurrency", "4", "--engine-override", "nosuch"], "unknown engine 'nosuch'"),
    (["--concurrency", "4", "--engine-arg", "token_budget"], "--engine-arg 'token_budget': expected KEY=VALUE"),
    (["--concurrency", "4", "--engine-arg", "token_budgt=64"], "--engine-arg: unknown engine key(s) ['token_budgt']"),
    (["--concurrency", "4", "--engine-arg", "max_seqs=lots"], "--engine-arg: engine override max_seqs must be an integer"),
    (["--concurrency", "4", "--warmup-requests", "-3"], "--warmup-requests must be an integer >= 0"),
    (["--concurrency", "4", "--warmup-drains"], "--warmup-drains: there is no warm-up to drain"),
    (["--concurrency", "4", "--engine-arg", "overlap_scheduling=maybe"], "overlap_scheduling must be true/false"),
    # a default the user did not give is named as the default, with the way out
    (["--concurrency", "200000"], "--concurrency 200000 sends 2000000 requests by default (10 per client), more "
                                  "than the 1000000 one simulated run holds"),
    (["--concurrency", "600", "--dp", "600", "--num-requests", "100"], "--num-requests 100 < dp 600"),
    (["--request-rate", "5", "--dp", "600000"], "--dp 600000 with --request-rate runs 2 requests per replica by "
                                                "default (1200000), more than the 1000000 one simulated run holds; "
                                                "pass --num-requests N with 600000 <= N <= 1000000"),
])
def test_bad_input(prof_path, capsys, argv, message):
    isl = "0" if "--isl-override" in argv else "256"
    engine = "nosuch" if "--engine-override" in argv else "vllm"
    argv = argv[:2] + ([] if argv[2:3] in (["--isl-override"], ["--engine-override"]) else argv[2:])
    rc = main(["predict", "--profile", prof_path, "--model", "small", "--engine", engine, "--isl", isl, "--osl", "8"]
              + argv)
    assert rc == 2
    assert message in capsys.readouterr().err


def test_predict_refuses_a_second_engine(prof_path, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's refusal, as for any bad option
        main(["predict", "--profile", prof_path, "--model", "small", "--engine", "vllm", "--engine", "sglang",
              "--concurrency", "4", "--isl", "64", "--osl", "8"])
    assert exc.value.code == 2
    assert "--engine given twice (vllm, sglang): predict runs one engine; accelcal plan --engine A --engine B" in \
        capsys.readouterr().err


def test_predict_takes_engine_args_and_a_recipe(prof_path, capsys):
    common = ["predict", "--profile", prof_path, "--model", "small", "--engine", "vllm", "--concurrency", "16",
              "--isl", "1024", "--osl", "16", "--format", "json", "--turnaround-ms", "0"]
    assert main(common) == 0
    wide = json.loads(capsys.readouterr().out)
    # a budget of one prompt per step: prompts are prefilled one step each instead of many to a step
    assert main(common + ["--engine-arg", "token_budget=1040", "--engine-arg", "max_seqs=16"]) == 0
    narrow = json.loads(capsys.readouterr().out)
    assert narrow["steps_simulated"] > wide["steps_simulated"] and narrow["ttft_mean_s"] != wide["ttft_mean_s"]
    # vLLM refuses fewer tokens per step than sequences (SchedulerConfig._verify_args): so does the preset
    assert main(common + ["--engine-arg", "token_budget=1000", "--engine-arg", "max_seqs=1024"]) == 2
    assert "token_budget 1000 < max_seqs 1024: vllm refuses to start" in capsys.readouterr().err
    assert main(common + ["--deployment", "aiconfigurator", "--engine-version", "0.12.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any("16 + 1024 + 1500 = 2540" in n for n in out["notes"])


def test_search_meets_targets_and_explains(prof):
    res = search_serving(prof, "llama3-8b", 8, ["vllm", "sglang"], [1, 4, 16, 64, 256], 1024, 128,
                         ServingTargets(ttft_s=1.0, tpot_s=0.02))
    best = res.best
    assert not best.misses and best.tpot_s <= 0.02 and best.ttft_s <= 1.0
    # mean targets too are confirmed by the step-level simulation (the steady state assumes desynchronised
    # clients), and the figures shown are the simulated ones
    assert best.checked_by == "simulate (mean)"
    assert all(c.per_device <= best.per_device for c in res.ranked if not c.misses)
    assert best.why and best.why[0].startswith("binding: ") and "ms" in best.why[0]
    front = res.pareto
    assert all(a.per_user >= b.per_user and a.per_device <= b.per_device for a, b in zip(front, front[1:]))
    plain = search_serving(prof, "llama3-8b", 8, ["vllm"], [1, 16], 1024, 128, top=4)
    # no targets: the latency ranking, the 4 fastest (the rows a table of 4 shows) re-checked by simulation first
    sim = [c for c in plain.ranked if c.checked_by != "steady"]
    assert len(plain.ranked) > 4 and plain.ranked[:4] == sim
    for part in (sim, plain.ranked[4:]):
        lat = [c.request_latency_s for c in part]
        assert lat == sorted(lat)
    first = plain.ranked[0]
    m = predict_serving(prof, "llama3-8b", "vllm", tp=first.tp, pp=first.pp, dp=first.dp,
                        concurrency=first.concurrency, isl=1024, osl=128).metrics
    assert (first.ttft_s, first.tpot_s, first.request_latency_s) == (m.ttft_mean_s, m.tpot_mean_s,
                                                                      m.request_latency_mean_s)



def test_search_rechecks_steady_near_misses(prof):
    # A TPOT target just below the steady state's figure for the highest-throughput point: the steady state
    # rejects it, but its TPOT is only checked to STEADY_REL_TOL, so the simulation decides.
    plain = search_serving(prof, "llama3-8b", 8, ["vllm"], [64, 256], 1024, 128)
    top = max(plain.ranked, key=lambda c: c.per_device)
    target = top.tpot_s / (1.0 + STEADY_REL_TOL / 3)
    res = search_serving(prof, "llama3-8b", 8, ["vllm"], [64, 256], 1024, 128, ServingTargets(ttft_s=1e3, tpot_s=target))
    again = next(c for c in res.ranked if c.label == top.label)
    assert again.checked_by == "simulate (mean)"
    # far misses are left to the steady state (nothing simulated that cannot pass)
    far = search_serving(prof, "llama3-8b", 8, ["vllm"], [64, 256], 1024, 128,
                         ServingTargets(ttft_s=1e3, tpot_s=min(c.tpot_s for c in plain.ranked) / 2))
    assert all(c.checked_by == "steady" for c in far.ranked)

def test_fp8_on_a_profile_without_fp8_says_so(prof_path, capsys):
    rc = main(["predict", "--profile", prof_path, "--model", "small", "--engine", "vllm", "--concurrency", "2",
               "--isl", "64", "--osl", "8", "--weight-dtype", "fp8_e4m3"])
    assert rc == 2
    assert "no fp8_e4m3 GEMM measurements (compute.fp8_e4m3)" in capsys.readouterr().err


def test_a_profile_of_fp32_only_says_how_to_get_a_serving_prediction(capsys, tmp_path):
    # what a CPU --smoke calibration writes: fp32 compute only, which no serving engine runs weights in
    d = h100_like()
    d["compute"] = {"fp32": d["compute"]["bf16"]}
    d["attention"] = {"fp32": d["attention"]["bf16"]} if "attention" in d else {}
    p = tmp_path / "fp32.yaml"
    Profile.from_dict(d).save(p)
    rc = main(["predict", "--profile", str(p), "--model", "small", "--engine", "vllm", "--concurrency", "2",
               "--isl", "64", "--osl", "8"])
    err = capsys.readouterr().err
    assert rc == 2 and "profile h100-like has no bf16 GEMM measurements (compute.bf16); it has ['fp32']" in err
    assert "measure bf16 with accelcal calibrate --quick" in err and "accelcal plan without --engine" in err


def test_tp_without_collectives_names_what_is_missing(capsys, tmp_path):
    d = h100_like()
    d["collectives"] = []
    p = tmp_path / "nocoll.yaml"
    Profile.from_dict(d).save(p)
    rc = main(["predict", "--profile", str(p), "--model", "small", "--engine", "sglang", "--tp", "2",
               "--concurrency", "2", "--isl", "64", "--osl", "8"])
    assert rc == 2
    assert "all_reduce over 2 devices" in capsys.readouterr().err


def test_a_missing_device_measurement_is_named_not_blamed_on_the_fabric(capsys, tmp_path):
    d = h100_like()
    del d["memory"]["copy"]
    d["collectives"], d["identity"]["devices_per_node"] = [], 1  # one device, as a single-GPU calibration writes
    p = tmp_path / "nocopy.yaml"
    Profile.from_dict(d).save(p)
    rc = main(["predict", "--profile", str(p), "--model", "small", "--engine", "vllm", "--tp", "1",
               "--concurrency", "2", "--isl", "64", "--osl", "8"])
    err = capsys.readouterr().err
    assert rc == 2 and "no memory data for pattern 'copy'" in err
    assert "collectives" not in err and "--interconnect" not in err  # one device needs no fabric
    rc = main(["plan", "--profile", str(p), "--model", "small", "--devices-per-node", "1"])
    err = capsys.readouterr().err
    assert rc == 3 and "no memory data for pattern 'copy'" in err and "no collective measurements" not in err


def test_search_p99_targets_are_checked_by_simulation_and_plotted(prof, tmp_path):
    from accelcal.planner.serving.search import plot_pareto

    res = search_serving(prof, "small", 2, ["vllm"], [1, 8, 32], 256, 32,
                         ServingTargets(ttft_s=0.05, tpot_s=0.01, stat="p99"))
    assert res.best.checked_by == "simulate (p99)" and not res.best.misses
    out = tmp_path / "front.png"
    plot_pareto(res, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_serving_weights_follow_the_planner_memory_rule_for_tied_embeddings():
    # One formula for the weights on a device (planner.memory.stage_weight_bytes): the serving KV budget and the
    # planner's memory estimate agree, and tied embeddings keep one vocab x hidden matrix on a single stage.
    import dataclasses

    from accelcal.models import ModelConfig
    from accelcal.planner.memory import device_memory
    from accelcal.planner.serving.kv import weight_bytes
    from accelcal.planner.workload import Workload

    untied = ModelConfig.from_name("small")
    tied = dataclasses.replace(untied, tie_word_embeddings=True)
    assert weight_bytes(untied, 1, 1, "bf16") == device_memory(untied, Workload()).weights_bytes
    assert weight_bytes(tied, 1, 1, "bf16") == device_memory(tied, Workload()).weights_bytes
    assert weight_bytes(untied, 1, 1, "bf16") - weight_bytes(tied, 1, 1, "bf16") == \
        untied.vocab_size * untied.hidden_size * 2


def test_engine_overrides_are_checked_like_preset_files():
    e = EnginePreset.from_name("vllm").with_overrides({"token_budget": 2048, "cuda_graph_sizes": [8, 1, 4]}, "my flags")
    assert e.token_budget == 2048 and e.cuda_graph_sizes == (1, 4, 8) and e.sources["token_budget"] == "my flags"
    with pytest.raises(ValueError, match=r"unknown engine key\(s\) \['token_budgt'\]"):
        e.with_overrides({"token_budgt": 1}, "x")
    with pytest.raises(ValueError, match="token_budget must be an integer >= 0, got 'many'"):
        e.with_overrides({"token_budget": "many"}, "x")
    with pytest.raises(ValueError, match="priority = 'middle'"):
        e.with_overrides({"priority": "middle"}, "x")


def test_a_preset_applies_the_defaults_a_later_release_changed(tmp_path):
    from accelcal.planner.serving.engine import version_key

    assert version_key("0.5.1.post1") > version_key("0.5.1") and version_key("0.14.0") > version_key("0.13.0")
    assert version_key("") > version_key("99.0")  # no version: the newest rules
    vllm = EnginePreset.from_name("vllm")
    assert not vllm.overlap_scheduling and vllm.version == "0.12.0"  # the file's own release
    for release, overlap in (("0.12.0", False), ("0.13.0", False), ("0.14.0", True), ("0.18.0", True), ("", True)):
        e, notes = vllm.for_version(release)
        assert e.overlap_scheduling is overlap, release
        assert bool(notes) is overlap and all("since 0.14.0" in n for n in notes)
    assert vllm.for_version("0.14.0")[0].sources["overlap_scheduling"].startswith("vllm 0.14.0 sdist")
    # the recipe applies the release's defaults first (the 0.12.0 rows keep async scheduling off)
    from accelcal.planner.serving.deployment import apply_deployment
    assert not apply_deployment("aiconfigurator", vllm, "0.12.0", 1024, 128, 8)[0].overlap_scheduling
    assert apply_deployment("default", vllm, "0.18.0", 1024, 128, 8)[0].overlap_scheduling
    # a bad entry names the file and what was expected
    from accelcal.planner.serving.engine import PRESET_DIR

    body = (PRESET_DIR / "vllm.yaml").read_text()
    bad = tmp_path / "x.yaml"
    bad.write_text(body.split("since:")[0] + 'since:\n  - version: "0.2"\n    overlap_scheduling: {value: true}\n')
    with pytest.raises(ValueError, match=r"x.yaml: since\[0\]: overlap_scheduling must be .* citing the release"):
        EnginePreset.from_yaml(bad)
    bad.write_text(body.split("since:")[0] + 'since:\n  - {version: "0.3", max_seqs: {value: 1, source: a}}\n'
                   '  - {version: "0.2", max_seqs: {value: 2, source: b}}\n')
    with pytest.raises(ValueError, match="ascending version order"):
        EnginePreset.from_yaml(bad)


def test_fp8_kv_note_says_whether_decode_attention_gains():
    from accelcal.planner.serving.step_cost import StepCoster

    h100, h200 = (Profile.load(f"profiles/nvidia-{d}.yaml") for d in ("h100", "h200"))
    moe, dense = ModelConfig.from_name("qwen3-30b-a3b"), ModelConfig.from_name("llama3-8b")  # 8 and 4 q per KV head
    gain = StepCoster._kv_dtype_gain
    args = ("bf16", "fp8_e4m3")
    t = [h100.attention_time_s("decode", 32, 1, 2048, 32, 4, 128, "bf16", kv_dtype=k).time_s for k in args]
    assert gain(h100, moe, 1, *args) == f"; decode attention {t[1] / t[0]:.2f}x the bf16 cache's (a reference step: 32 sequences at 2048 tokens, whatever the load)"
    assert t[1] < 0.99 * t[0]
    # the H200's decode cases ran bandwidth-bound at 4 and 8 query heads per KV head: its fit holds the FLOP rate
    # at the prefill rate, so the fp8 cache's halved K/V bytes show at 8 as at 4
    assert gain(h200, moe, 1, *args).startswith("; decode attention 0.")
    assert gain(h200, dense, 1, *args).startswith("; decode attention 0.")
    # a decode fit that is compute-bound at 8 query heads per KV head (a FLOP rate the cases showed): the fp8 cache
    # adds capacity only, and the note says why
    slow = copy.deepcopy(h200)
    slow.attention["bf16"]["decode"] = dataclasses.replace(slow.attention["bf16"]["decode"], flop_per_s=3.5e13)
    t = [slow.attention_time_s("decode", 32, 1, 2048, 32, 4, 128, "bf16", kv_dtype=k).time_s for k in args]
    assert t[1] >= 0.99 * t[0] and "fit is compute-bound, so the fp8_e4m3 cache adds capacity only" in gain(slow, moe, 1, *args)


def test_vllm_runs_pipeline_stages_without_async_scheduling(prof, small):
    vllm, _ = EnginePreset.from_name("vllm").for_version("")
    assert vllm.overlap_scheduling and vllm.overlap_scheduling_max_pp == 1
    assert vllm.for_layout(1, 1) == (vllm, [])
    off, notes = vllm.for_layout(1, 2)
    assert not off.overlap_scheduling and "overlap scheduling off with PP 2" in notes[0]
    assert "pipeline_parallel_size > 1" in off.sources["overlap_scheduling"]
    for name in ("sglang", "trtllm"):  # no such rule in their presets: any PP keeps what the preset says
        e, _ = EnginePreset.from_name(name).for_version("")
        assert e.for_layout(4, 4) == (e, [])
    # predict applies it: the PP 2 run says so, and costs what the same preset with the scheduler off costs
    kw = dict(concurrency=8, isl=256, osl=32, num_requests=24)
    r = predict_serving(prof, small, vllm, tp=1, pp=2, **kw)
    assert any("overlap scheduling off with PP 2" in n for n in r.notes)
    same = predict_serving(prof, small, off, tp=1, pp=2, **kw)
    assert r.feasible and r.metrics.ttft_mean_s == same.metrics.ttft_mean_s and r.metrics.tpot_mean_s == same.metrics.tpot_mean_s


def test_aiconfigurator_recipe_settings():
    from accelcal.planner.serving.deployment import apply_deployment, deployment_settings

    e, kv, notes = apply_deployment("aiconfigurator", EnginePreset.from_name("trtllm"), "1.0.0rc3", 4096, 128, 32,
                                    "fp8_e4m3")
    # max_num_tokens = batch + isl + 1500; the batch size is the benchmark concurrency; fp8 weights -> fp8 KV
    assert (e.token_budget, e.max_seqs, e.chunked_prefill, e.memory_fraction) == (32 + 4096 + 1500, 32, False, 0.8)
    # the generator behind the 1.0.0rc3 template sets agg's graphs at every batch 1..32 and the overlap scheduler on
    assert kv == "fp8_e4m3" and e.cuda_graph_sizes == tuple(range(1, 33)) and e.cuda_graph_padding
    assert e.overlap_scheduling and any("961028348" in n for n in notes)
    assert all("aiconfigurator" in n for n in notes)
    # the user's own --kv-dtype stays, and the notes say what the recipe would have run
    _, kv, notes = apply_deployment("aiconfigurator", EnginePreset.from_name("trtllm"), "1.0.0rc3", 4096, 128, 32,
                                    "fp8_e4m3", "bf16", kv_dtype_given=True)
    assert kv == "bf16" and not any(n.startswith("KV cache fp8_e4m3 for fp8 weights") for n in notes)
    assert any(n.startswith("KV cache bf16 as --kv-dtype gives; --deployment aiconfigurator alone would run "
                            "fp8_e4m3") for n in notes)
    newer, kv, _ = apply_deployment("aiconfigurator", EnginePreset.from_name("trtllm"), "1.2.0rc6", 1024, 128, 8, "bf16")
    assert newer.cuda_graph_sizes == tuple(range(1, 9)) and not newer.cuda_graph_padding and kv == "bf16"
    assert newer.overlap_scheduling
    sg, _, _ = apply_deployment("aiconfigurator", EnginePreset.from_name("sglang"), "0.5.6.post2", 1024, 128, 16)
    # max_prefill_tokens caps a prefill batch; chunked_prefill_size (which also sizes SGLang's reserved memory) stays
    assert sg.prefill_batch_tokens == 1024 + 1500 and sg.token_budget == 8192 and sg.step_tokens == 2524
    assert sg.mixed_steps
    # 0.5.1.post1's own template wrote neither flag before 2026-01-19; the rule's batch and graph sizes applied
    old, _, _ = apply_deployment("aiconfigurator", EnginePreset.from_name("sglang"), "0.5.1.post1", 1024, 128, 16)
    assert old.prefill_batch_tokens == 16384 and old.step_tokens == 8192 and not old.mixed_steps
    assert old.max_seqs == 16 and old.cuda_graph_sizes == tuple(range(1, 17))
    # a version older than 0.5.6 without a template of its own took the generic one: max-prefill-tokens, no mixing
    generic, _, _ = apply_deployment("aiconfigurator", EnginePreset.from_name("sglang"), "0.5.2", 1024, 128, 16)
    assert generic.step_tokens == 2524 and not generic.mixed_steps
    long_prompt, _, _ = apply_deployment("aiconfigurator", EnginePreset.from_name("sglang"), "0.5.8", 16384, 128, 16)
    assert long_prompt.step_tokens == 8192 and long_prompt.mixed_steps  # chunked_prefill_size still splits it
    assert EnginePreset.from_name("sglang").step_tokens == 8192  # default: 8192 chunks under a 16384 batch cap
    assert deployment_settings("default", "vllm", "0.12.0", 1024, 128, 8).overrides == {}
    with pytest.raises(ValueError, match="unknown --deployment 'magic'"):
        deployment_settings("magic", "vllm", "", 1024, 128, 8)


def test_turnaround_and_warmup(prof, small):
    base = dict(isl=512, osl=32, concurrency=8, num_requests=40)
    w = ServingWorkload(**base, warmup_requests=16)
    assert w.requests == 56 and len(w.turnaround_delays_s()) == 56 and w.turnaround_delays_s().max() <= w.turnaround_s
    engine = EnginePreset.from_name("vllm")
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(), engine)
    run = simulate(engine, sc, kv, w)
    assert run.metrics.requests == 40 and len(run.times_s) == 40  # the warm-up ran but is not measured
    assert min(a for a, _, _ in run.times_s) > 0  # measured requests were sent after the warm-up began
    # the client's clock starts when it sends: TTFT includes the turnaround, and a zero turnaround is exact
    lone = simulate(engine, sc, kv, ServingWorkload(isl=512, osl=32, concurrency=1, num_requests=4, turnaround_s=0.0))
    late = simulate(engine, sc, kv, ServingWorkload(isl=512, osl=32, concurrency=1, num_requests=4, turnaround_s=0.05))
    assert late.metrics.ttft_mean_s > lone.metrics.ttft_mean_s
    assert late.metrics.ttft_mean_s - lone.metrics.ttft_mean_s <= 0.05
    with pytest.raises(ValueError, match="--warmup-requests must be an integer >= 0"):
        ServingWorkload(**base, warmup_requests=-1)
    with pytest.raises(ValueError, match="--turnaround-ms must be between 0 and 10000 ms"):
        ServingWorkload(**base, turnaround_s=-0.001)


def _knife_edge(prof, small):
    """(one prompt's prefill step, ttft(turnaround_s, client_gap_s)) for identical requests at one prompt per step."""
    # A budget of one prompt plus the decodes.  Overlap scheduling off: it delays every admission by a step,
    # which the knife edge is not about.
    engine = EnginePreset.from_name("trtllm").with_overrides({"token_budget": 8 + 2048 + 100, "max_seqs": 8,
                                                              "overlap_scheduling": False}, "test")
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(), engine)

    def ttft(turnaround, gap=0.0):
        w = ServingWorkload(isl=2048, osl=64, concurrency=8, num_requests=160, warmup_requests=16,
                            turnaround_s=turnaround, client_gap_s=gap)
        return simulate(engine, sc, kv, w).metrics.ttft_mean_s
    return sc.step_s(0, 0.0, ((2048, 2048),)), ttft


def test_a_turnaround_breaks_the_knife_edge_of_identical_requests(prof, small):
    # With no delay at all the first burst leaves every later arrival landing exactly on a step boundary and
    # prefilled alone; any delay lets arrivals that land inside a prefill step queue behind it, and such
    # clusters persist.
    prefill, ttft = _knife_edge(prof, small)
    exact, delayed = ttft(0.0), ttft(prefill / 10)
    assert exact < 1.5 * prefill < delayed


def test_client_gap_is_outside_ttft_and_a_think_time_in_littles_law(prof, small):
    engine = EnginePreset.from_name("vllm")
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(), engine)
    base = dict(isl=512, osl=32, turnaround_s=0.0)
    # one client: a pause between requests changes no request's own TTFT or latency, only when it is sent
    lone = simulate(engine, sc, kv, ServingWorkload(**base, concurrency=1, num_requests=4))
    paused = simulate(engine, sc, kv, ServingWorkload(**base, concurrency=1, num_requests=4, client_gap_s=0.2))
    assert paused.metrics.ttft_mean_s == pytest.approx(lone.metrics.ttft_mean_s, rel=1e-9)
    assert paused.metrics.request_latency_mean_s == pytest.approx(lone.metrics.request_latency_mean_s, rel=1e-9)
    sends = [a for a, _, _ in paused.times_s]
    finishes = [f for _, _, f in paused.times_s]
    assert [b - f for f, b in zip(finishes, sends[1:])] == pytest.approx([0.2] * 3)
    # C clients each cycling through latency + gap: C = throughput x (latency + gap) (Little's law, think time)
    gap = 0.05
    run = simulate(engine, sc, kv, ServingWorkload(isl=512, osl=64, concurrency=8, num_requests=800, range_ratio=0.5,
                                                   client_gap_s=gap))
    m = run.metrics
    assert m.requests_per_s * (m.request_latency_mean_s + gap) == pytest.approx(8, rel=0.02)
    with pytest.raises(ValueError, match="--client-gap-ms must be between 0 and 10000 ms"):
        ServingWorkload(**base, concurrency=1, client_gap_s=-0.001)


def test_a_client_gap_clusters_arrivals_behind_prefill_steps(prof, small):
    # The same knife edge from the client's side: requests that finish a decode step apart come back a gap
    # later; a gap longer than the spread of their finishes lands them together in one prefill step's queue, so
    # TTFT (which the gap is not part of) rises.
    prefill, ttft = _knife_edge(prof, small)
    assert ttft(0.0) < 1.5 * prefill < 2.5 * prefill < ttft(0.0, 2 * prefill)


def test_predict_cli_client_gap(tmp_path, capsys):
    prof_path = tmp_path / "p.yaml"
    Profile.from_dict(h100_like()).save(prof_path)
    args = ["predict", "--profile", str(prof_path), "--model", "small", "--engine", "vllm", "--concurrency", "4",
            "--isl", "256", "--osl", "8", "--num-requests", "8", "--format", "json", "--turnaround-ms", "0"]
    assert main(args + ["--client-gap-ms", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["feasible"] and out["workload"]["client_gap_s"] == pytest.approx(0.1)
    assert main(args[:-4] + ["--client-gap-ms", "100"]) == 0  # the table says which gap it assumed
    assert "concurrency 4 (client gap 100 ms)" in capsys.readouterr().out
    assert main(args + ["--client-gap-ms", "-5"]) == 2
    assert "--client-gap-ms must be between 0 and 10000 ms" in capsys.readouterr().err


class _UnitSteps:
    """A coster whose every step takes one second: step counts read straight off the clock."""

    def step_s(self, decode_seqs, decode_kv_mean=0.0, chunks=(), logits=None):
        assert decode_seqs + sum(q for q, _ in chunks) >= 1
        return 1.0

    def _round_kv(self, kv):
        return int(kv)

    def breakdown(self, *a, **k):
        return {}


@pytest.mark.parametrize("name", ["vllm", "sglang", "trtllm"])
def test_overlap_scheduling_delays_admission_by_one_step(prof, small, name):
    # One client, no turnaround: a request is sent the moment the last one finishes.  Without overlap its
    # prefill is the next step (TTFT 1 s).  With overlap the next step was formed while the finishing step ran
    # and carries the finished request as a wasted decode, so the new prefill is the step after (TTFT 2 s).
    w = ServingWorkload(isl=64, osl=3, concurrency=1, num_requests=5, turnaround_s=0.0)
    out = {}
    for overlap in (False, True):
        engine = EnginePreset.from_name(name).with_overrides({"overlap_scheduling": overlap}, "test")
        kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
        run = simulate(engine, _UnitSteps(), kv, w)
        out[overlap] = run
    assert [f - a for a, f, _ in out[False].times_s] == [1.0] * 5
    assert out[True].times_s[0][1] == 1.0  # the first request meets an idle engine
    assert [f - a for a, f, _ in out[True].times_s[1:]] == [2.0] * 4
    # osl 3: prefill + 2 decodes per request, plus one wasted decode between requests under overlap
    assert out[False].steps == 5 * 3 and out[True].steps == 5 * 3 + 4


def test_overlap_keeps_finished_requests_in_the_next_step(prof, small):
    seen = []

    class Recording(_UnitSteps):
        def step_s(self, decode_seqs, decode_kv_mean=0.0, chunks=(), logits=None):
            seen.append((decode_seqs, len(chunks)))
            return 1.0

    engine = EnginePreset.from_name("trtllm").with_overrides({"overlap_scheduling": True}, "test")
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    simulate(engine, Recording(), kv, ServingWorkload(isl=64, osl=2, concurrency=1, num_requests=2, turnaround_s=0.0))
    # request 0: prefill, decode (finishes), a wasted decode; request 1: prefill, decode
    assert seen == [(0, 1), (1, 0), (1, 0), (0, 1), (1, 0)]


def test_warmup_that_drains_measures_a_fresh_burst(prof, small):
    engine = EnginePreset.from_name("vllm")
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(), engine)
    base = dict(isl=512, osl=16, concurrency=4, num_requests=12, warmup_requests=8, turnaround_s=0.0)
    loop = simulate(engine, sc, kv, ServingWorkload(**base))
    fresh = simulate(engine, sc, kv, ServingWorkload(**base, warmup_drains=True))
    assert min(a for a, _, _ in loop.times_s) > 0  # measured requests follow the warm-up in one loop
    assert sorted(a for a, _, _ in fresh.times_s)[:4] == [0.0] * 4  # all four clients start together
    assert fresh.metrics.requests == loop.metrics.requests == 12


def test_fp8_kv_cache_attention_reads_kv_at_one_byte(prof, small):
    from accelcal.vocab import attention_flop_bytes
    from accelcal.planner.parallelism import Parallelism

    # bytes: Q and O at 2 B (8 heads x 1 token), K and V at 1 B (2 kv heads x 4096 tokens), head_dim 64, batch 3
    _, b16 = attention_flop_bytes(3, 1, 4096, 8, 2, 64, 2)
    _, b8 = attention_flop_bytes(3, 1, 4096, 8, 2, 64, 2, kv_elsize=1)
    assert b16 == 3 * 64 * (2 * 2 * 8 * 1 + 2 * 2 * 2 * 4096)
    assert b8 == 3 * 64 * (2 * 2 * 8 * 1 + 1 * 2 * 2 * 4096)
    e16 = prof.attention_time_s("decode", 64, 1, 4096, 32, 8, 128, "bf16")
    e8 = prof.attention_time_s("decode", 64, 1, 4096, 32, 8, 128, "bf16", kv_dtype="fp8_e4m3")
    same = prof.attention_time_s("decode", 64, 1, 4096, 32, 8, 128, "bf16", kv_dtype="bf16")
    assert same == e16 and "kv-dtype-not-measured" not in e16.flags
    assert "kv-dtype-not-measured" in e8.flags and "fp8_e4m3" in e8.detail
    lat = prof.attention["bf16"]["decode"].latency_s
    _, n16 = attention_flop_bytes(64, 1, 4096, 32, 8, 128, 2)
    _, n8 = attention_flop_bytes(64, 1, 4096, 32, 8, 128, 2, kv_elsize=1)
    # a long decode is memory-bound: the time above the call latency scales with the bytes read
    assert (e8.time_s - lat) / (e16.time_s - lat) == pytest.approx(n8 / n16, rel=1e-9)
    with pytest.raises(ValueError, match="unknown kv_dtype 'fp4'"):
        prof.attention_time_s("decode", 1, 1, 64, 8, 2, 64, "bf16", kv_dtype="fp4")
    engine = EnginePreset.from_name("vllm")
    sc16 = StepCoster(prof, small, Parallelism(tp=1), engine, "bf16", "bf16")
    sc8 = StepCoster(prof, small, Parallelism(tp=1), engine, "bf16", "fp8_e4m3")
    assert sc8.step_s(64, 4000.0) < sc16.step_s(64, 4000.0)
    assert sc8.step_s(0, 0.0, ((512, 512),)) <= sc16.step_s(0, 0.0, ((512, 512),))
    assert any("fp8_e4m3 KV cache" in n and "attention.bf16" in n for n in sc8.notes)


def test_eager_steps_charge_the_profiles_layer_dispatch_cost(small):
    """An eager step's host floor uses the figure the planner's Coster uses: the measured per-op dispatch of a
    real layer (overheads.eager_dispatch_s) where the profile has it, not the bare kernel launch."""
    from accelcal.planner.parallelism import Parallelism

    d = h100_like()
    d["overheads"]["eager_dispatch_s"] = 2e-3  # far above any layer's device time here: host-bound
    slow = Profile.from_dict(d)
    base = Profile.from_dict(h100_like())
    engine = EnginePreset.from_name("vllm")
    sc_slow = StepCoster(slow, small, Parallelism(tp=1), engine, "bf16", "bf16")
    sc_base = StepCoster(base, small, Parallelism(tp=1), engine, "bf16", "bf16")
    _, _, overlap, (kernels, graph_kernels) = sc_slow._layer(520, False)
    assert overlap and kernels >= 5 and graph_kernels <= kernels
    bd = sc_slow.breakdown(8, 600.0, ((512, 512),))
    assert not bd["cuda_graphs"]
    # host-bound: every layer takes kernels x dispatch; the launch share is what exceeds the device time
    assert bd["total"] == pytest.approx(sc_slow.step_s(8, 600.0, ((512, 512),)))
    assert bd["total"] >= small.layers * kernels * 2e-3
    assert sc_slow.step_s(8, 600.0, ((512, 512),)) > 10 * sc_base.step_s(8, 600.0, ((512, 512),))
    # graph-mode decode steps replay graphs: the dispatch figure does not apply to them
    assert sc_slow.step_s(8, 600.0) == pytest.approx(sc_base.step_s(8, 600.0))


def test_fp8_serving_steps_quantize_each_projection_input(small):
    """fp8 weights on bf16 activations: the step adds one act_quant kernel per projection input, costed from the
    profile's copy bandwidth (3 bytes per input element); bf16 weights add none."""
    from accelcal.planner.parallelism import Parallelism

    d = h100_like()
    d["compute"]["fp8_e4m3"] = dict(d["compute"]["bf16"], peak_flop_per_s=2 * d["compute"]["bf16"]["peak_flop_per_s"])
    p = Profile.from_dict(d)
    engine = EnginePreset.from_name("vllm")
    fp8 = StepCoster(p, small, Parallelism(tp=1), engine, "fp8_e4m3", "bf16")
    b16 = StepCoster(p, small, Parallelism(tp=1), engine, "bf16", "bf16")
    assert fp8._dag_options.gemm_input_quant and not b16._dag_options.gemm_input_quant
    assert any("input is quantized first" in n and "act_quant" in n for n in fp8.notes)
    assert not any("quantized" in n for n in b16.notes)
    tokens = 512
    _, bd8, _, _ = fp8._layer(tokens, False)
    _, bd16, _, _ = b16._layer(tokens, False)
    h, f, q = small.hidden_size, small.ffn_size, small.heads * small.head_dim
    quant_s = sum(p.memory_time_s(3 * tokens * w, "copy").time_s for w in (h, q, h, f))
    gemm_delta = sum(p.gemm_time_s(tokens, n, k, "fp8_e4m3").time_s - p.gemm_time_s(tokens, n, k, "bf16").time_s
                     for n, k in (((small.heads + 2 * small.kv_heads) * small.head_dim, h), (h, q), (2 * f, h), (h, f)))
    total8, total16 = sum(bd8.values()), sum(bd16.values())
    assert total8 - total16 == pytest.approx(quant_s + gemm_delta, rel=1e-6)


def test_expert_parallel_replica_spreads_experts_over_its_tp_group(prof):
    moe = ModelConfig.from_name("small-moe")
    kw = dict(concurrency=8, isl=256, osl=32, num_requests=32)
    tp_split = predict_serving(prof, moe, "vllm", tp=2, **kw)
    ep = predict_serving(prof, moe, "vllm", tp=2, ep=2, **kw)
    assert tp_split.feasible and ep.feasible
    assert ep.layout["ep"] == 2 and ep.layout["devices"] == 2
    from accelcal.planner.serving.cli import format_prediction
    assert "TP2 PP1 DP1 EP2 (2 devices)" in format_prediction(ep)
    assert "TP2 PP1 DP1 (2 devices)" in format_prediction(tp_split)
    # without attention DP the engines keep every token on every rank: each runs its own experts whole and one
    # all-reduce sums them (the preset's ep_comm); the planner's default dispatches to the experts' devices
    from accelcal.planner.dag import DagOptions, build_layer_dag
    from accelcal.planner.serving.step_cost import replica_parallelism
    par = replica_parallelism(2, 1, 1, 8, ep=2)
    a2a = {n.name: n for n in build_layer_dag(moe, "prefill", 1, 64, 64, par).nodes}
    ar = {n.name: n for n in build_layer_dag(moe, "prefill", 1, 64, 64, par, options=DagOptions(ep_comm="all_reduce")).nodes}
    split = {n.name: n for n in build_layer_dag(moe, "prefill", 1, 64, 64, replica_parallelism(2, 1, 1, 8)).nodes}
    assert {"ep_dispatch_all_to_all", "ep_combine_all_to_all", "tp_moe_all_gather"} <= set(a2a)
    assert not any("all_to_all" in n for n in list(ar) + list(split))
    assert ar["tp_mlp_all_reduce"].p["nbytes"] == split["tp_mlp_all_reduce"].p["nbytes"] == 64 * moe.hidden_size * 2
    # whole experts on each rank (not TP-split)
    assert ar["experts_gate_up"].p["n"] == 2 * moe.expert_ffn_size == 2 * split["experts_gate_up"].p["n"]
    assert EnginePreset.from_name("vllm").ep_comm == "all_reduce" and "use_all2all_kernels" in \
        EnginePreset.from_name("vllm").sources["ep_comm"]
    assert ep.metrics.tpot_mean_s != tp_split.metrics.tpot_mean_s
    with pytest.raises(ValueError, match=r"ep_comm must be one of \['all_to_all', 'all_reduce'\], got 'deepep'"):
        DagOptions(ep_comm="deepep")
    # EP wider than the TP group spans data-parallel replicas (attention DP): only with enough of them
    with pytest.raises(ValueError, match=r"--ep 4: --ep 4 with --tp 2 spreads the experts over 2 replicas, so --dp "
                                         r"must be a multiple of 2 .* here one of \[1, 2\]"):
        predict_serving(prof, moe, "vllm", tp=2, ep=4, **kw)
    with pytest.raises(ValueError, match=r"--ep 2: .* e\.g\. --tp 1 --dp 2 --ep 2\), got --dp 1"):
        predict_serving(prof, moe, "vllm", tp=1, ep=2, **kw)
    with pytest.raises(ValueError, match="--ep 2: small is a dense model"):
        predict_serving(prof, "small", "vllm", tp=2, ep=2, **kw)


def test_search_report_groups_rejections_by_reason(small):
    from accelcal.planner.serving.search import format_search

    d = h100_like()
    # no pipeline hand-offs measured, nor the all-reduce they could be costed from
    d["collectives"] = [c for c in d["collectives"] if c["op"] not in ("send_recv", "all_reduce")]
    res = search_serving(Profile.from_dict(d), small, 4, ["vllm", "sglang"], [4, 16], 128, 16,
                         ServingTargets(ttft_s=10.0, tpot_s=1.0))
    pp_rejected = [r for r in res.rejected if "send_recv" in r]
    assert pp_rejected and all(" PP1 " not in r.split(":")[0] for r in pp_rejected)
    text = format_search(res)
    block = text[text.index(f"rejected {len(res.rejected)}:"):].splitlines()[1:]
    # one line per distinct reason with its count and the candidates it names; counts add up
    assert sum(int(line.split()[0]) for line in block if re.match(r"  \d+ candidates?: ", line)) == len(res.rejected)
    # the layout is in each candidate's label, so every PP layout's send_recv reason is one line
    assert any(line.startswith(f"  {len(pp_rejected)} candidates: send_recv over 2 devices") and "[vllm TP1 PP2" in line
               and "sglang TP" in line for line in block)


def test_pp_hand_offs_without_send_recv_are_costed_from_all_reduce_and_noted(prof, small):
    d = h100_like()
    d["collectives"] = [c for c in d["collectives"] if c["op"] != "send_recv"]
    no_sr = Profile.from_dict(d)
    kw = dict(concurrency=4, isl=256, osl=16, num_requests=8)
    r = predict_serving(no_sr, small, "sglang", tp=1, pp=2, **kw)
    assert r.feasible
    note = next(n for n in r.notes if n.startswith("PP hand-offs (intra_node): send_recv not measured"))
    assert any(n.startswith("PP 2: a step's sequences run as up to 2 micro-batches in flight") for n in r.notes)
    assert r.to_json()["decode_step"]["micro_batch_sequences"] == r.to_json()["decode_step"]["batch"] // 2
    assert "all_reduce" in note and "sendrecv_perf" in note
    # with a measured send_recv nothing is derived, and the hand-offs cost what that measurement says
    measured = predict_serving(prof, small, "sglang", tp=1, pp=2, **kw)
    assert not any(n.startswith("PP hand-offs") for n in measured.notes)
    assert not any(n.startswith(("PP hand-offs", "PP ")) for n in predict_serving(no_sr, small, "sglang", tp=2, **kw).notes)


def test_serving_search_tries_expert_parallel_replicas_for_moe(prof):
    moe = ModelConfig.from_name("small-moe")
    res = search_serving(prof, moe, 2, ["vllm"], [4, 16], 128, 16)
    eps = {(c.tp, c.dp, c.ep) for c in res.ranked}
    # EP over the replica's TP group, TP-split experts, and TP1 x DP2 with attention data-parallel and EP2
    assert {(2, 1, 2), (2, 1, 1), (1, 2, 1), (1, 2, 2)} <= eps
    ep = next(c for c in res.ranked if c.ep == 2)
    assert " EP2 " in ep.label and ep.to_dict()["ep"] == 2
    dense = search_serving(prof, "small", 2, ["vllm"], [4], 128, 16)
    assert {c.ep for c in dense.ranked} == {1}



def test_fp8_gemms_are_labelled_by_their_fp8_bytes():
    """A GEMM's compute/memory label compares its time with its traffic at the GEMM's own element size
    (accelcal.vocab.gemm_bytes: fp8 inputs, bf16 output), not at the activations' bf16: on the H100 profile a
    1024-token fp8 prefill of Qwen3-32B is compute-bound (at bf16 bytes its gate/up GEMM read as memory-bound),
    a decode step stays memory-bound."""
    from pathlib import Path

    from accelcal.vocab import gemm_bytes

    prof = Profile.load(str(Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml"))
    model = ModelConfig.resolve("qwen3-32b")
    sc = StepCoster(prof, model, Parallelism(tp=1), EnginePreset.from_name("trtllm"), "fp8_e4m3", "fp8_e4m3")
    c = sc._costers[False]
    m, n, k = 1024, 2 * model.ffn_size, model.hidden_size
    t = c.gemm(m, n, k).time_s
    assert c.read(gemm_bytes(m, n, k, "fp8_e4m3")).time_s < 0.5 * t <= c.read(gemm_bytes(m, n, k, "bf16")).time_s
    prefill = sc.breakdown(0, 0.0, ((1024, 1024),))
    decode = sc.breakdown(8, 1024.0)
    assert prefill["compute"] > prefill["memory"] and decode["compute"] == 0.0 and decode["memory"] > 0


def test_search_splits_clients_over_replicas_as_predict_does(prof, small):
    # C = 5 on DP 4 is 2 + 1 + 1 + 1 clients, not 2 per replica: the search's steady figures equal predict's
    res = search_serving(prof, small, 4, ["vllm"], [5, 8], 1024, 128, top=0)  # top=0: the steady figures kept
    dp4 = {c.concurrency: c for c in res.ranked if (c.tp, c.dp) == (1, 4)}
    one = predict_serving(prof, small, "vllm", dp=4, concurrency=5, isl=1024, osl=128, method="steady").metrics
    assert dp4[5].per_device == pytest.approx(one.output_tokens_per_s_per_device, rel=1e-9)
    assert dp4[5].requests_per_s == pytest.approx(one.requests_per_s, rel=1e-9)
    assert dp4[5].per_device < 0.8 * dp4[8].per_device  # 5 clients keep fewer requests in flight than 8


def test_dp_replicas_run_with_their_own_seed_and_pool_their_requests(prof, small):
    wl = ServingWorkload(isl=512, osl=32, request_rate_per_s=8.0, num_requests=120)
    res = predict_serving(prof, small, "vllm", dp=2, request_rate_per_s=8.0, isl=512, osl=32, num_requests=120)
    engine = EnginePreset.from_name("vllm").for_version("")[0]
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(), engine)
    runs = [simulate(engine, sc, kv, share) for share in wl.replica_shares(2)]
    assert runs[0].times_s != runs[1].times_s  # different arrivals: not one replica counted twice
    ttft = np.array([f - a for run in runs for a, f, _ in run.times_s])
    m = res.metrics
    assert m.requests == 120
    assert m.ttft_mean_s == pytest.approx(ttft.mean(), rel=1e-9)
    assert m.ttft_p90_s == pytest.approx(np.percentile(ttft, 90), rel=1e-9)  # over the pooled requests


@pytest.mark.parametrize("name, c, isl, osl", [
    ("vllm", 128, 1024, 1),     # prefill-bound: the token budget, not the clients, sets the rate
    ("vllm", 64, 4096, 16),     # prefill-bound with decodes beside the chunks
    ("trtllm", 32, 8192, 64),   # no chunking and a prompt as large as the budget: one request at a time
    ("vllm", 1, 8192, 64),      # one client: its prompt has the whole budget, its decode steps carry no prefill
    ("trtllm", 8, 8191, 64),    # no chunking: once budget - isl requests decode, no prompt can start
    ("trtllm", 256, 8000, 512),
    ("vllm", 32, 8192, 256),    # chunked: a prompt over two steps costs its tokens, not two full chunks
    ("sglang", 32, 1024, 1),    # separate prefill batches, one output token: the batches set the rate
])
def test_steady_state_matches_simulation_where_prefill_binds(prof, small, name, c, isl, osl):
    engine = EnginePreset.from_name(name).with_overrides({"token_budget": 8192}, "test")
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(), engine)
    sim = simulate(engine, sc, kv, ServingWorkload(isl=isl, osl=osl, concurrency=c, num_requests=8 * c + 8)).metrics
    s = steady_state(engine, sc, kv, isl, osl, c)
    assert s.output_tokens_per_s == pytest.approx(sim.output_tokens_per_s, rel=STEADY_REL_TOL)
    if osl == 1:
        assert s.tpot_s == 0.0 == sim.tpot_mean_s  # one output token: no time per output token
    else:
        assert s.tpot_s == pytest.approx(sim.tpot_mean_s, rel=STEADY_REL_TOL)
    if c == 1:
        assert s.tpot_s == pytest.approx(sc.step_s(1, isl + osl / 2), rel=1e-9)  # decode-only steps


def test_priority_prefill_first_pauses_decodes_for_prompts(prof, small):
    # mixed steps with a budget too small for prompts and decodes together: the preset's priority decides
    # (max_seqs no higher than the budget, as vLLM requires; 32 clients never reach it)
    base = EnginePreset.from_name("vllm").with_overrides({"token_budget": 512, "max_seqs": 512}, "test")
    tpot = {}
    for pr in ("decode_first", "prefill_first"):
        e = base.with_overrides({"priority": pr}, "test")
        kv = kv_budget(small, e, 1, 1, prof.identity.memory_capacity_bytes)
        run = simulate(e, StepCoster(prof, small, Parallelism(), e), kv,
                       ServingWorkload(isl=1024, osl=64, concurrency=32, num_requests=320))
        tpot[pr] = run.metrics.tpot_mean_s
    assert tpot["prefill_first"] > 1.1 * tpot["decode_first"]


def test_reserve_ratio_admission_in_mixed_steps_admits_beyond_full_length_and_preempts(prof, small):
    # SGLang with --enable-mixed-chunk keeps its PrefillAdder admission: more requests start than fit at full
    # length (the running ones' outputs count x new_token_ratio), and decode retracts when the pool fills
    sg = EnginePreset.from_name("sglang").with_overrides(
        {"mixed_steps": True, "memory_fraction_of": "total", "memory_fraction": 0.9}, "test")
    assert sg.priority == "decode_first"  # the preset's rule for mixed steps (PrefillAdder)
    runs = {}
    for adm, full in (("reserve_ratio", "preempt"), ("full_request", "queue")):
        e = sg.with_overrides({"admission": adm, "kv_full": full}, "test")
        kv = kv_budget(small, e, 1, 1, 1.4e9)
        runs[adm] = simulate(e, StepCoster(prof, small, Parallelism(), e), kv,
                             ServingWorkload(isl=1024, osl=1024, concurrency=64, num_requests=256))
    at_full_length = kv.tokens // 2048
    assert runs["full_request"].max_running == at_full_length and runs["full_request"].preemptions == 0
    assert runs["reserve_ratio"].max_running > at_full_length and runs["reserve_ratio"].preemptions > 0


@pytest.mark.parametrize("over, msg", [
    ({"kv_full": "queue"}, "kv_full = 'queue' with admission = 'current_length'"),
    ({"admission": "full_request"}, "kv_full = 'preempt' with admission = 'full_request'"),
    ({"chunked_prefill": False}, "chunked_prefill false with admission = 'current_length'"),
    ({"mixed_steps": False}, "mixed_steps false with admission = 'current_length'; separate prefill steps are "
                             "modelled as SGLang runs them"),
])
def test_engine_keys_that_contradict_each_other_are_refused(over, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        EnginePreset.from_name("vllm").with_overrides(over, "test")


def test_sglang_fills_a_chunked_prompts_last_batch_with_new_requests(prof, small):
    # two 12000-token prompts, 8192-token batches: [A 8192], [A 3808 + B 4384], [B 7616]; B does not wait for a
    # batch of its own after A's last chunk (scheduler.get_new_batch_prefill adds the waiting queue after it)
    e = EnginePreset.from_name("sglang").with_overrides({"overlap_scheduling": False}, "test")
    kv = kv_budget(small, e, 1, 1, prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(), e)
    run = simulate(e, sc, kv, ServingWorkload(isl=12000, osl=2, concurrency=2, num_requests=2, turnaround_s=0.0))
    batches = [((8192, 8192),), ((3808, 12000), (4384, 4384)), ((7616, 12000),)]
    cost = [sc.step_s(0, 0.0, b, sum(1 for q, ctx in b if ctx == 12000)) for b in batches]
    (a0, fa, _), (b0, fb, _) = run.times_s
    assert fa - a0 == pytest.approx(cost[0] + cost[1], rel=1e-9)
    assert fb - b0 == pytest.approx(sum(cost), rel=1e-9)


def test_search_ranks_the_closest_miss_first_when_nothing_meets_the_targets(prof, small):
    res = search_serving(prof, small, 1, ["vllm"], [1, 8, 64, 256], 1024, 128, ServingTargets(ttft_s=1e-6, tpot_s=1e-6))
    assert all(c.misses for c in res.ranked)
    assert [c.miss_factor for c in res.ranked] == sorted(c.miss_factor for c in res.ranked)
    assert res.best.concurrency == 1  # one client is the nearest to both targets, not the most tokens/s
    assert "closest (none meets the targets): vllm TP1 PP1 DP1 C1" in format_search(res)


def test_a_prompt_over_an_unchunked_budget_is_infeasible_in_predict_steady_and_search(prof, small):
    from accelcal.planner.serving.search import NoServingLayout

    eng = EnginePreset.from_name("trtllm")  # no chunked prefill, 8192-token budget
    res = predict_serving(prof, small, eng, concurrency=4, isl=20000, osl=8)
    assert not res.feasible and "no step can hold it (chunked_prefill=true or token_budget >= 20000" in res.reason
    kv = kv_budget(small, eng, 1, 1, prof.identity.memory_capacity_bytes)
    with pytest.raises(Infeasible, match="exceeds the trtllm token budget 8192"):
        steady_state(eng, StepCoster(prof, small, Parallelism(), eng), kv, 20000, 8, 4)
    with pytest.raises(NoServingLayout, match="exceeds the trtllm token budget 8192"):
        search_serving(prof, small, 1, ["trtllm"], [1, 4], 20000, 8)
    both = search_serving(prof, small, 1, ["trtllm", "vllm"], [1, 4], 20000, 8, ServingTargets(ttft_s=100.0))
    assert {c.engine for c in both.ranked} == {"vllm"} and any("trtllm" in r for r in both.rejected)


def test_a_chunked_prompts_last_chunk_counts_against_the_pool_when_others_join(prof, small):
    # two 500 + 20 token requests cannot share a 1000-token pool: the chunk in flight holds its tokens
    import dataclasses

    e = EnginePreset.from_name("sglang").with_overrides({"token_budget": 256, "overlap_scheduling": False}, "test")
    kv = dataclasses.replace(kv_budget(small, e, 1, 1, prof.identity.memory_capacity_bytes), blocks=1000)
    run = simulate(e, StepCoster(prof, small, Parallelism(), e), kv,
                   ServingWorkload(isl=500, osl=20, concurrency=4, num_requests=40, turnaround_s=0.0))
    assert run.max_running == 1 and run.preemptions == 0


def test_a_request_sglang_never_admits_is_infeasible_not_a_stall(prof, small):
    import dataclasses

    e = EnginePreset.from_name("sglang")
    kv = dataclasses.replace(kv_budget(small, e, 1, 1, prof.identity.memory_capacity_bytes), blocks=1000)
    kv.check_request(900, 100)  # the pool holds its 1000 tokens ...
    with pytest.raises(Infeasible, match=r"prompt and output \(900 \+ 100 = 1000 tokens\) are fewer than the pool's "
                                         r"free tokens, and the whole pool holds 1000"):
        simulate(e, StepCoster(prof, small, Parallelism(), e), kv, ServingWorkload(isl=900, osl=100, concurrency=1))


def test_the_search_shows_the_figures_predict_reproduces(prof, small):
    res = search_serving(prof, small, 2, ["vllm"], [4, 16], 1024, 64, ServingTargets(ttft_s=10.0, tpot_s=1.0, stat="p90"))
    best = res.best
    assert best.checked_by == "simulate (p90)"
    m = predict_serving(prof, small, "vllm", tp=best.tp, pp=best.pp, dp=best.dp, concurrency=best.concurrency,
                        isl=1024, osl=64).metrics
    assert (best.ttft_s, best.tpot_s) == (m.ttft_p90_s, m.tpot_p90_s)
    assert best.per_device == pytest.approx(m.output_tokens_per_s_per_device, rel=1e-12)


def test_predict_json_for_one_output_token_has_no_decode_step_and_names_the_request_count(prof, small):
    res = predict_serving(prof, small, "vllm", concurrency=4, isl=128, osl=1)
    j = res.to_json()
    assert j["decode_step"] == {} and j["tpot_mean_s"] is None
    assert j["workload"]["num_requests"] == j["requests"] == 100  # the default it ran (at least 100)


def test_an_overloaded_open_loop_says_so_and_a_light_one_does_not(prof, small):
    # the small model completes about 900 requests/s here: 3000/s for a second builds a queue throughout
    heavy = predict_serving(prof, small, "vllm", request_rate_per_s=3000.0, isl=1024, osl=64, num_requests=3000)
    assert heavy.notes[0].startswith("overloaded: 3000 requests/s offered, ")
    assert "completed; the backlog grows over the run" in heavy.notes[0]
    # an engine that admits every request at once falls behind in its decode steps, not in TTFT: still overloaded
    # (this small model completes about 221 requests/s of 2048 x 256 here)
    admitted = predict_serving(prof, small, "vllm", request_rate_per_s=330.0, isl=2048, osl=256, num_requests=400)
    assert admitted.notes[0].startswith("overloaded: 330 requests/s offered, ")
    light = predict_serving(prof, small, "vllm", request_rate_per_s=5.0, isl=1024, osl=64)
    assert not any(n.startswith("overloaded") for n in light.notes)


def test_a_short_light_open_loop_is_not_called_overloaded():
    # 40 requests at 5/s whose latency (~1.3 s) is long next to the middle half of the arrivals (~4 s): counted over
    # the arrivals' own span, the completions looked short and the run read as overloaded though TTFT was flat
    from pathlib import Path
    from accelcal.calibrate.profile import Profile as P

    h100 = P.load(Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml")
    res = predict_serving(h100, "gpt-oss-20b", "vllm", request_rate_per_s=5.0, isl=1024, osl=256, num_requests=40)
    assert not any(n.startswith("overloaded") for n in res.notes)
    assert any("requests/s completed of the 5 offered: the rate is the requests over the run's span" in n
               for n in res.notes)


def test_max_seqs_has_one_rule_and_message(capsys):
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match=rf"max_seqs must be an integer >= 1, got {bad!r}"):
            EnginePreset.from_name("vllm").with_overrides({"max_seqs": bad}, "test")


def test_a_retracted_sglang_request_reserves_only_its_remaining_output(prof, small):
    # a pool a little over one request: after a retraction the request's prompt includes what it emitted, and
    # reserving its whole output again would never let it back in (the run stalled)
    import dataclasses

    e = EnginePreset.from_name("sglang")
    kv = dataclasses.replace(kv_budget(small, e, 1, 1, prof.identity.memory_capacity_bytes), blocks=1614)
    run = simulate(e, StepCoster(prof, small, Parallelism(), e), kv,
                   ServingWorkload(isl=100, osl=1000, concurrency=2, num_requests=6))
    assert run.metrics.requests == 6 and run.preemptions > 0


@pytest.mark.parametrize("name, over, capacity, pp", [
    ("vllm", {}, None, 1),
    ("vllm", {}, None, 2),  # PP: steps as micro-batches in flight
    ("vllm", {"priority": "prefill_first", "token_budget": 512, "max_seqs": 512}, None, 1),
    ("vllm", {}, 1.2e9, 1),  # a pool that runs short: preemption inside what would be a decode stretch
    ("sglang", {}, None, 1),
    ("sglang", {"memory_fraction_of": "total", "memory_fraction": 0.9}, 1.4e9, 1),  # retraction
    ("sglang", {"mixed_steps": True, "memory_fraction_of": "total", "memory_fraction": 0.9}, 1.4e9, 1),
    ("vllm", {}, 1.2e9, 2),  # PP and preemption
    ("trtllm", {}, None, 1),  # overlap scheduling, whole requests reserved
    ("static", {}, None, 1),
])
def test_decode_stretches_fast_forwarded_give_the_same_run(prof, small, name, over, capacity, pp):
    # simulate() runs stretches of pure decode steps without visiting each request every step; the run (every
    # request's times, the step count, preemptions, the decode-step histogram) must be the step-by-step one
    engine = EnginePreset.from_name(name).with_overrides(over, "test") if over else EnginePreset.from_name(name)
    kv = kv_budget(small, engine, 1, pp, capacity or prof.identity.memory_capacity_bytes)
    sc = StepCoster(prof, small, Parallelism(pp=pp), engine)
    for w in (ServingWorkload(isl=1024, osl=300, concurrency=24, num_requests=96, range_ratio=0.5),
              ServingWorkload(isl=256, osl=512, concurrency=8, num_requests=32, warmup_requests=8, warmup_drains=True),
              ServingWorkload(isl=512, osl=200, request_rate_per_s=20.0, num_requests=60),
              ServingWorkload(isl=1024, osl=1024, concurrency=64, num_requests=128)):  # with capacity: preemption
        fast = simulate(engine, sc, kv, w)
        slow = simulate(engine, sc, kv, w, fast_forward=False)
        assert fast.times_s == slow.times_s
        assert (fast.steps, fast.max_running, fast.preemptions, fast.kv_limited_steps) == \
               (slow.steps, slow.max_running, slow.preemptions, slow.kv_limited_steps)
        assert fast.decode_step == slow.decode_step and fast.metrics == slow.metrics
        assert fast.prefill_share_of_decode_time == slow.prefill_share_of_decode_time
        if capacity and name != "trtllm":
            preempted = fast.preemptions
    assert slow.steps > 200  # long decode phases, which is where the stretches run
    if capacity:
        assert preempted > 0  # the pool ran short in the last workload: evictions inside decode stretches


def test_search_defers_rechecks_its_engines_clustering_already_rules_out(prof, small, monkeypatch):
    # A TTFT target that high-concurrency rows meet only at the steady state: in throughput order the re-checks run
    # out on them (every engine and layout has a high-concurrency row); scaling the steady TTFT by what the
    # simulation gave the same engine at the same or a higher concurrency puts the rows it rules out last, and the
    # search confirms a pass by simulation
    import math

    import accelcal.planner.serving.search as S

    args = (prof, small, 8, ["vllm", "sglang"], [1, 2, 4, 8, 16, 32, 64, 128], 2048, 256, ServingTargets(ttft_s=0.005))
    monkeypatch.setattr(S, "DEFER_FACTOR", math.inf)  # no deferral: throughput order only
    plain = search_serving(*args)
    assert plain.best.checked_by == "steady" and any("not confirmed" in n for n in plain.notes)
    monkeypatch.setattr(S, "DEFER_FACTOR", 1.5)
    res = search_serving(*args)
    assert res.best.checked_by == "simulate (mean)" and not res.best.misses and res.best.ttft_s <= 0.005
    assert sum(c.checked_by != "steady" for c in res.ranked) <= S.UNCONFIRMED_CHECKS


def test_search_says_why_a_steady_pass_above_the_best_was_not_simulated(prof, small):
    # the deferred rows keep their steady figures; a user reading a steady row with more tokens/s per device than
    # the best is told why no simulation checked it (a likely miss, with the scaled figure), in the table and JSON
    from accelcal.planner.serving.search import format_search

    res = search_serving(prof, small, 8, ["vllm", "sglang"], [1, 2, 4, 8, 16, 32, 64, 128], 2048, 256,
                         ServingTargets(ttft_s=0.005))
    above = [c for c in res.ranked if c.checked_by == "steady" and not c.misses and c.per_device > res.best.per_device]
    assert above and all(c.unchecked for c in above)
    assert all(not c.unchecked for c in res.ranked if c not in above)
    assert any(c.unchecked.startswith("likely misses: TTFT ") and "> 1.5 x target 5 ms" in c.unchecked for c in above)
    assert above[0].to_dict()["unchecked"] == above[0].unchecked
    text = format_search(res, top=len(res.ranked))
    assert "(likely misses)" in text
    assert "show more tokens/s per device than the best but no simulation confirmed it" in text or \
        "shows more tokens/s per device than the best" in text


def test_search_keeps_rechecking_until_a_simulated_candidate_passes(prof, small, monkeypatch):
    # A TTFT target the steady state's optimistic (declustered) TTFT meets at every concurrency, but that the
    # simulated closed loop misses at the high ones: the best row must be one the simulation confirms, however
    # many higher-throughput rows fail it first; when the re-checks allowed run out first, the result says its best
    # row is only the steady state's estimate.
    import accelcal.planner.serving.search as S

    conc = [1, 2, 4, 8, 16, 32, 64, 128]
    kw = {}
    plain = search_serving(prof, small, 4, ["vllm"], conc, 2048, 256, top=0, **kw)
    steady_ttft = {c.label: c.ttft_s for c in plain.ranked}
    # at least what the simulation gives one mid-concurrency row, so some row can pass there
    mid = predict_serving(prof, small, "vllm", tp=1, dp=4, concurrency=8, isl=2048, osl=256).metrics.ttft_mean_s
    target = ServingTargets(ttft_s=max(1.05 * max(steady_ttft.values()), 1.02 * mid), tpot_s=1.0)
    # enough re-checks for this case's 48 rows (PP layouts included) to reach one the simulation passes
    monkeypatch.setattr(S, "UNCONFIRMED_CHECKS", 64)
    res = search_serving(prof, small, 4, ["vllm"], conc, 2048, 256, target, verify=1, **kw)
    failed = [c for c in res.ranked if c.checked_by != "steady" and c.misses]
    assert len(failed) > 1  # more re-checks failed than the verify limit (1) allows after a pass
    assert res.best.checked_by == "simulate (mean)" and not res.best.misses
    assert not any("not confirmed" in n for n in res.notes)
    monkeypatch.setattr(S, "UNCONFIRMED_CHECKS", 1)
    capped = search_serving(prof, small, 4, ["vllm"], conc, 2048, 256, target, verify=1, **kw)
    assert capped.best.checked_by == "steady" and not capped.best.misses
    assert any(n.startswith("none of the 1 candidates re-checked by simulation meets the targets; the best row is "
                            "the steady state's estimate, not confirmed") for n in capped.notes)


def test_an_open_loop_that_completes_less_than_offered_without_a_queue_says_why(prof, small):
    # few requests: the run's span (the seeded arrivals, then the last latency) sets the completed rate, not a queue
    few = predict_serving(prof, small, "vllm", request_rate_per_s=20.0, isl=256, osl=64, num_requests=20)
    m = few.metrics
    assert m.requests_per_s < 0.97 * 20.0
    assert few.notes[0] == (f"{m.requests_per_s:.4g} requests/s completed of the 20 offered: the rate is the requests "
                            f"over the run's span, as benchmark clients report it (the seeded arrivals of 20 requests, "
                            f"then the last ones' latency), and comes closer to the offered rate with more "
                            f"--num-requests")
    many = predict_serving(prof, small, "vllm", request_rate_per_s=20.0, isl=256, osl=64, num_requests=4000)
    assert many.metrics.requests_per_s > m.requests_per_s
    assert not any("requests/s completed of the" in n or n.startswith("overloaded") for n in many.notes)


def test_a_clustered_closed_loop_says_what_spread_out_clients_would_see(prof, small):
    # identical requests from clients that start together: the simulated TTFT is the clustered one; the note gives
    # the steady state's desynchronised figure beside it, when they differ by CLUSTERING_NOTE_RATIO or more
    from accelcal.planner.serving.predict import CLUSTERING_NOTE_RATIO

    res = predict_serving(prof, small, "vllm", concurrency=16, isl=2048, osl=256)
    steady = predict_serving(prof, small, "vllm", concurrency=16, isl=2048, osl=256, method="steady").metrics
    ttft = res.metrics.ttft_mean_s
    spread = steady.ttft_mean_s + ServingWorkload.turnaround_s / 2  # the simulation adds the client turnaround
    assert ttft >= CLUSTERING_NOTE_RATIO * spread
    assert any(f"TTFT: {ttft * 1e3:.4g} ms mean here, where clients that start together stay clustered" in n and
               f"would see about {spread * 1e3:.4g} ms (the steady state, --method steady, with the client "
               f"turnaround)" in n for n in res.notes)
    lone = predict_serving(prof, small, "vllm", concurrency=1, isl=2048, osl=256)
    assert not any("stay clustered" in n for n in lone.notes)


def test_an_open_loop_over_many_replicas_sends_enough_requests_by_default(prof):
    # 200 requests by default, but at least OPEN_LOOP_MIN_PER_REPLICA per replica: DP 256 had been an error
    # ("--num-requests 200 < dp 256") for a flag the user never gave
    from accelcal.planner.serving.predict import OPEN_LOOP_MIN_PER_REPLICA

    res = predict_serving(prof, "tiny", "vllm", dp=256, request_rate_per_s=50.0, isl=64, osl=8)
    assert res.feasible and res.workload["num_requests"] == OPEN_LOOP_MIN_PER_REPLICA * 256 == res.metrics.requests
    few = predict_serving(prof, "tiny", "vllm", dp=2, request_rate_per_s=50.0, isl=64, osl=8)
    assert few.workload["num_requests"] == 200
    with pytest.raises(ValueError, match="--num-requests 100 < dp 256"):
        predict_serving(prof, "tiny", "vllm", dp=256, request_rate_per_s=50.0, isl=64, osl=8, num_requests=100)


def test_typical_decode_step_is_where_the_median_output_token_was_decoded():
    from accelcal.planner.serving.simulate import _typical_decode_key

    # an open loop's ramp: 60 steps at batch 2, 30 at batch 10 (300 tokens), 5 at batch 40 (200 tokens);
    # the most common step (batch 2, 120 tokens) is not where the load decodes: the median token is at batch 10
    hist = {(2, 1024): 60, (10, 1024): 20, (10, 1088): 10, (40, 1152): 5}
    assert _typical_decode_key(hist) == (10, 1024)
    # a closed loop at its concurrency: the same answer as the most common step
    assert _typical_decode_key({(32, 2112): 900, (31, 2112): 20, (1, 2112): 30}) == (32, 2112)
    # a long decode at one batch: every KV bucket equally often, first seen first; the middle one stands for it
    assert _typical_decode_key({(64, 160 + 32 * i): 32 for i in range(128)}) == (64, 160 + 32 * 63)


def test_typical_decode_step_of_a_long_decode_explains_its_tpot(prof, small):
    """128 prompt tokens, 2048 output: the reported step is at the decode's middle KV, and with no prefill work
    mixed in it is about TPOT (as the steady state says), not the step at the start of the decode."""
    res = predict_serving(prof, small, "vllm", concurrency=8, isl=128, osl=2048, num_requests=8)
    step = res.decode_step
    assert abs(step["kv_len_mean"] - (128 + 1024)) <= 64
    assert step["total"] == pytest.approx(res.metrics.tpot_mean_s, rel=0.1)


def test_open_loop_replicas_share_one_poisson_stream_round_robin():
    # the client sends one stream; every replica takes every dp-th request, the warm-up ones first, so the
    # replicas' arrivals together are exactly the single replica's stream (same rate, same seed)
    import numpy as np

    w = ServingWorkload(isl=64, osl=8, request_rate_per_s=20.0, num_requests=203, warmup_requests=5, seed=3)
    whole = w.arrivals_s()
    shares = w.replica_shares(4)
    assert sum(s.num_requests for s in shares) == 203 and sum(s.warmup_requests for s in shares) == 5
    assert all(s.request_rate_per_s == 5.0 for s in shares)
    assert np.array_equal(np.sort(np.concatenate([s.arrivals_s() for s in shares])), whole)
    for r, s in enumerate(shares):
        assert np.array_equal(s.arrivals_s(), whole[r::4])
        assert s.warmup_requests == len(range(r, 5, 4))  # stream positions 0..4 are the warm-up


def test_closed_loop_replica_shares_split_clients_and_requests_over_many_replicas():
    # one split over all the replicas (it was redone per replica: --dp 10000 took minutes before simulating)
    w = ServingWorkload(isl=16, osl=2, concurrency=20003, num_requests=200041, warmup_requests=7)
    shares = w.replica_shares(10000)
    assert len(shares) == 10000 and sum(s.concurrency for s in shares) == 20003
    assert sorted({s.concurrency for s in shares}) == [2, 3] and shares[0].concurrency == 3  # 3 of them get 3
    assert sum(s.num_requests for s in shares) == 200041 and min(s.num_requests for s in shares) >= 1
    assert sum(s.warmup_requests for s in shares) == 7
    assert [s.seed for s in shares[:3]] == [w.seed, w.seed + 1, w.seed + 2]


def test_steady_binding_code_reads_no_rounding_as_a_prefill_bound_engine():
    # every request is served (k x s / p_steps = E, up to rounding) and the prefill share is 1.5-2.3%: the decode
    # step binds (these points read "prefill_interference" while the rounding counted as requests not served);
    # a prompt far larger than its output, at load, is prefill-bound
    from accelcal.planner.serving.kv import memory_in_use_bytes
    from accelcal.planner.serving.steady import PREFILL_BINDS_SHARE

    h100, model = Profile.load("profiles/nvidia-h100.yaml"), ModelConfig.from_name("llama3-8b")
    for name in ("vllm", "trtllm"):
        engine, _ = EnginePreset.from_name(name).for_version("")
        kv = kv_budget(model, engine, 1, 1, h100.identity.memory_capacity_bytes,
                       in_use_bytes=memory_in_use_bytes(h100))
        sc = StepCoster(h100, model, Parallelism(), engine)
        for isl, osl in ((1024, 128), (512, 64)):
            s = steady_state(engine, sc, kv, isl, osl, 2)
            assert 0 < s.prefill_share < 0.03 and s.binding == "decode", (name, isl, s.prefill_share)
        s = steady_state(engine, sc, kv, 4096, 2, 64)
        assert s.prefill_share > PREFILL_BINDS_SHARE and s.binding == "prefill_interference", (name, s.prefill_share)


def test_a_best_row_at_the_top_of_the_sweep_says_a_larger_concurrency_was_not_tried(prof):
    loose = ServingTargets(ttft_s=1e3, tpot_s=10.0)
    res = search_serving(prof, "llama3-8b", 8, ["vllm"], [1, 4], 1024, 128, loose)
    assert res.best.concurrency == 4
    assert any(w.startswith("sweep: C4 is the largest concurrency tried and meets the targets") for w in res.best.why)
    # where a larger concurrency was tried and missed, the row below it does not say so
    tight = search_serving(prof, "llama3-8b", 8, ["vllm"], [1, 256], 1024, 128,
                           ServingTargets(ttft_s=1e3, tpot_s=res.best.tpot_s * 1.05))
    assert tight.best.concurrency < 256 and not any(w.startswith("sweep:") for w in tight.best.why)


def test_engines_set_their_defaults_by_device_as_their_code_does(tmp_path):
    """vLLM's get_batch_defaults (8192 / 1024 only from 70 GiB and not on an A100) and SGLang's memory tiers
    (server_args.py) are preset data (device_rules), applied by for_device after the release's defaults."""
    gib = 2 ** 30
    vllm, _ = EnginePreset.from_name("vllm").for_version("")
    h100, notes = vllm.for_device(79.2 * gib, "NVIDIA H100 80GB HBM3")
    assert (h100.token_budget, h100.max_seqs, notes) == (8192, 1024, [])
    for cap, name in ((79.2, "NVIDIA A100-SXM4-80GB"), (44.4, "NVIDIA L40S"), (23.6, "NVIDIA GeForce RTX 4090")):
        e, notes = vllm.for_device(cap * gib, name)
        assert (e.token_budget, e.max_seqs) == (2048, 256), name
        assert notes == [f"vllm on {name} ({cap:.0f} GiB): token_budget = 2048, max_seqs = 256 (the engine's own "
                         f"default for such a device; cited in the preset)"]
        assert "get_batch_defaults" in e.sources["token_budget"]
    sglang = EnginePreset.from_name("sglang")
    new, _ = sglang.for_version("")
    # 20-35 GiB: chunk 2048, graphs to 24 below TP 4 and to 80 from it
    small, _ = new.for_device(23.6 * gib, "NVIDIA GeForce RTX 4090")
    assert small.token_budget == 2048
    assert max(small.for_layout(2, 1)[0].cuda_graph_sizes) == 24 and max(small.for_layout(4, 1)[0].cuda_graph_sizes) == 80
    mid, _ = new.for_device(39.4 * gib, "NVIDIA A100-PCIE-40GB")
    assert mid.token_budget == 4096 and max(mid.for_layout(1, 1)[0].cuda_graph_sizes) == 32
    # H100 and H200 keep the preset's values; 160 GiB and more: chunk 16384, graphs to 512 at any TP
    assert new.for_device(139.8 * gib, "NVIDIA H200")[0] == new
    big, _ = new.for_device(178.4 * gib, "NVIDIA B200")
    assert big.token_budget == 16384 and max(big.for_layout(1, 1)[0].cuda_graph_sizes) == 512
    # 0.5.1: graphs to 160, to 256 over 90 GiB (cuda_graph_runner.py), chunk 2048 below 35 GiB with 8 below TP 4
    old, _ = sglang.for_version("0.5.1.post1")
    assert max(old.for_device(79.2 * gib, "NVIDIA H100 80GB HBM3", "0.5.1.post1")[0].cuda_graph_sizes) == 160
    assert max(old.for_device(139.8 * gib, "NVIDIA H200", "0.5.1.post1")[0].cuda_graph_sizes) == 256
    tiny, _ = old.for_device(23.6 * gib, "NVIDIA GeForce RTX 4090", "0.5.1.post1")
    assert tiny.token_budget == 2048 and max(tiny.for_layout(2, 1)[0].cuda_graph_sizes) == 8
    # TensorRT-LLM's defaults do not depend on the device
    trt, _ = EnginePreset.from_name("trtllm").for_version("")
    assert trt.for_device(23.6 * gib, "NVIDIA GeForce RTX 4090") == (trt, [])
    # bad rules name the file, the rule and what was expected
    from accelcal.planner.serving.engine import PRESET_DIR

    text = (PRESET_DIR / "vllm.yaml").read_text()
    for bad, message in (("when: {memory_gib_below: 70}", None),
                         ("when: {memory_gb_below: 70}", r"device_rules\[0\]: unknown condition\(s\) \['memory_gb_below'\]"),
                         ("when: {memory_gib_below: -1}", r"device_rules\[0\]: when.memory_gib_below must be a number of GiB > 0"),
                         ("when: {}", r"device_rules\[0\] needs a when mapping")):
        path = tmp_path / "vllm.yaml"
        path.write_text(text.replace("when: {memory_gib_below: 70}", bad))
        if message is None:
            EnginePreset.from_yaml(path)
        else:
            with pytest.raises(ValueError, match=message):
                EnginePreset.from_yaml(path)


def test_an_engine_cap_on_sequences_binds_and_extra_clients_only_queue():
    # max_seqs 8: past 8 clients per replica throughput is the cap's, so more clients buy queueing only
    h100 = Profile.load("profiles/nvidia-h100.yaml")
    res = search_serving(h100, "llama3-8b", 1, ["vllm"], [4, 8, 16, 64, 256], 1024, 64, ServingTargets(tpot_s=0.05),
                         engine_overrides={"max_seqs": 8})
    capped = [c for c in res.ranked if c.concurrency > 8]
    assert capped and all(c.binding == "max_seqs" for c in capped[:3] if c.why)
    best = res.best
    # the best capped row is the smallest capped concurrency: the others tie with it on throughput, lose on TTFT
    assert best.concurrency == 16 and best.ttft_s <= min(c.ttft_s for c in capped)
    assert best.why[0].startswith("binding: max sequences: the engine runs at most 8 requests at once per replica")
    assert not any(w.startswith("sweep:") for w in best.why)
    kv = kv_budget(ModelConfig.from_name("llama3-8b"), EnginePreset.from_name("vllm"), 1, 1,
                   float(h100.identity.memory_capacity_bytes), "bf16", "bf16")
    coster = StepCoster(h100, ModelConfig.from_name("llama3-8b"), Parallelism(), EnginePreset.from_name("vllm"), "bf16",
                        "bf16")
    eng = EnginePreset.from_name("vllm").with_overrides({"max_seqs": 8}, "test")
    assert steady_state(eng, coster, kv, 1024, 64, 64).binding == "max_seqs"
    assert steady_state(EnginePreset.from_name("vllm"), coster, kv, 1024, 64, 64).binding != "max_seqs"


def test_a_row_that_misses_names_its_own_misses_not_the_next_concurrencys():
    h100 = Profile.load("profiles/nvidia-h100.yaml")
    res = search_serving(h100, "llama3-8b", 1, ["vllm"], [1, 2, 4], 512, 32, ServingTargets(ttft_s=1e-4, tpot_s=1e-4))
    best = res.best
    assert best.misses  # nothing meets 0.1 ms
    tpot_line = next(w for w in best.why if "TPOT target" in w)
    assert "(simulated): TPOT" not in tpot_line and "(steady state): TPOT" not in tpot_line
    assert any(w.startswith("misses: ") for w in best.why)


def test_concurrencies_below_every_layouts_replica_count_are_named(prof):
    from accelcal.planner.serving.search import NoServingLayout

    # tiny (4 layers, 8 heads) takes at most TP8 x PP4 = 32 devices a replica: on 128 every layout has DP >= 4, so a
    # closed loop of 2 clients leaves replicas idle and no row of it is costed
    with pytest.raises(NoServingLayout) as exc:
        search_serving(prof, "tiny", 128, ["vllm"], [2], 512, 32)
    msg = str(exc.value)
    assert msg.startswith("no layout of tiny on 128 devices ran: --concurrency 2: below every layout's replica count")
    assert "the fewest replicas any has is DP4" in msg and "give a concurrency >= 4" in msg
    # beside a concurrency that runs, the idle one is a note, not a silent gap in the table
    res = search_serving(prof, "tiny", 128, ["vllm"], [2, 8], 512, 32, top=3)
    assert {c.concurrency for c in res.ranked} == {8}
    assert any(n.startswith("--concurrency 2 not evaluated: below every layout's replica count") for n in res.notes)


def test_a_steady_rows_miss_of_a_p99_target_names_both_statistics(prof):
    # 0.55 ms: the fastest layouts' steady TPOT meets it (they are simulated, at p99), the others' mean misses it
    res = search_serving(prof, "small", 8, ["vllm"], [4, 16], 512, 32, ServingTargets(None, 5.5e-4, "p99"))
    steady = [c for c in res.ranked if c.checked_by == "steady" and c.misses]
    simulated = [c for c in res.ranked if c.checked_by != "steady"]
    assert steady and simulated
    # a mean from the steady state against the p99 target says so; a simulated p99 against it is plain
    assert all(any(re.fullmatch(r"TPOT mean [0-9.]+ ms > p99 target 0\.55 ms", m) for m in c.misses) for c in steady)
    assert all(re.fullmatch(r"TPOT p99 [0-9.]+ ms > target 0\.55 ms", m) for c in simulated for m in c.misses)
