"""predict_layer_time_s is the search's own layer cost; costs trace to profile fields."""

from __future__ import annotations

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.planner.cluster import Cluster
from accelcal.planner.predict import predict_layer_time_s
from accelcal.planner.search import PlanOptions, plan
from accelcal.planner.workload import Workload

from planner_profiles import h100_like


@pytest.fixture(scope="module")
def prof():
    return Profile.from_dict(h100_like())


def test_prediction_equals_the_searchs_layer_cost(prof):
    w = Workload(prompt_len=512, output_len=64, batch=4)
    res = plan("llama3-8b", Cluster.homogeneous(prof), w, PlanOptions(tp_comm="all_reduce"))
    for c in res.ranked:
        if c.pp != 1 or c.sp != 1:
            continue
        d = predict_layer_time_s(prof, "llama3-8b", "decode", w.batch, 1, w.mean_decode_kv_len, tp=c.tp)
        assert d.total_s == c.decode.layer.total_s
        pr = predict_layer_time_s(prof, "llama3-8b", "prefill", 1, w.prompt_len, w.prompt_len, tp=c.tp)
        assert pr.total_s == c.prefill.layer.total_s


def test_breakdown_sums_and_every_node_names_its_profile_field(prof):
    pred = predict_layer_time_s(prof, "mixtral-8x7b", "decode", 8, 1, 1024, tp=2, moe={"ep": 2})
    assert sum(pred.breakdown.values()) == pytest.approx(pred.total_s, rel=1e-12)
    assert set(pred.breakdown) == {"compute", "memory", "communication", "launch"}
    names = [n.name for n in pred.nodes]
    assert "ep_dispatch_all_to_all" in names and "ep_combine_all_to_all" in names and "router" in names
    for n in pred.nodes:
        assert n.source.split(".")[0].split("[")[0] in {"compute", "memory", "attention", "collectives"}
        assert n.device_s > 0
    a2a = next(n for n in pred.nodes if n.name == "ep_dispatch_all_to_all")
    assert a2a.source == "collectives[all_to_all,intra_node,2]"
    assert a2a.device_s == prof.collective_time_s("all_to_all", a2a.params["nbytes"], 2).time_s


def test_cuda_graphs_change_only_the_launch_term(prof):
    eager = predict_layer_time_s(prof, "tiny", "decode", 1, 1, 64)
    graph = predict_layer_time_s(prof, "tiny", "decode", 1, 1, 64, cuda_graphs=True)
    kernels = sum(n.kernels for n in eager.nodes)
    dev = sum(n.device_s for n in eager.nodes)
    # tiny decode is launch-bound eager: the host issues one kernel per eager_launch_s
    assert eager.total_s == pytest.approx(max(dev, kernels * prof.launch_overhead_s("eager").time_s))
    assert graph.breakdown["launch"] == pytest.approx(kernels * prof.launch_overhead_s("graph").time_s)
    assert graph.total_s < eager.total_s
    assert {k: v for k, v in eager.breakdown.items() if k != "launch"} == \
        {k: v for k, v in graph.breakdown.items() if k != "launch"}


def test_moe_imbalance_is_computed_and_overridable(prof):
    from accelcal.planner.dag import moe_imbalance
    assert moe_imbalance(8.0, 1) == 1.0
    assert moe_imbalance(8.0, 8) == pytest.approx(1 + (2 * 2.0794415416798357 / 8) ** 0.5)
    assert moe_imbalance(0.5, 8) <= 8.0
    base = predict_layer_time_s(prof, "mixtral-8x7b", "prefill", 1, 512, 512, moe={"ep": 4})
    skew = predict_layer_time_s(prof, "mixtral-8x7b", "prefill", 1, 512, 512, moe={"ep": 4, "imbalance": 3.0})
    assert skew.total_s > base.total_s


def _as_cpu(d: dict) -> dict:
    d = dict(d)
    d["identity"] = dict(d["identity"], device_type="cpu")
    return d


def test_cpu_launches_add_to_device_time_one_per_extra_kernel():
    from planner_profiles import h100_like

    cpu = Profile.from_dict(_as_cpu(h100_like()))
    eager = cpu.launch_overhead_s("eager").time_s
    for impl in ("fused", "torch-eager"):
        pred = predict_layer_time_s(cpu, "llama3-8b", "prefill", 4, 512, 512, implementation=impl)
        extra = sum(max(0, n.kernels - 1) for n in pred.nodes)
        dev = sum(n.device_s for n in pred.nodes)
        # host = device: nothing overlaps, even where device time dwarfs the launches
        assert pred.breakdown["launch"] == pytest.approx(extra * eager)
        assert pred.total_s == pytest.approx(dev + extra * eager)
    gpu_prof = Profile.from_dict(h100_like())
    gpu = predict_layer_time_s(gpu_prof, "llama3-8b", "prefill", 4, 512, 512, implementation="torch-eager")
    graphed = predict_layer_time_s(gpu_prof, "llama3-8b", "prefill", 4, 512, 512, implementation="torch-eager",
                                   cuda_graphs=True)
    # an accelerator hides eager launches behind long kernels, down to what graph replay still costs per kernel
    per_kernel = gpu_prof.launch_overhead_s("graph").time_s
    assert gpu.breakdown["launch"] == pytest.approx(sum(n.kernels for n in gpu.nodes if not n.self_timed) * per_kernel)
    assert gpu.total_s == pytest.approx(graphed.total_s)


def test_eager_is_never_costed_below_graph_mode():
    """Replaying kernels from a CUDA graph removes host work only: host-bound or device-bound, eager >= graph."""
    from planner_profiles import h100_like

    prof = Profile.from_dict(h100_like())
    for phase, batch, q, kv in (("decode", 1, 1, 512), ("decode", 64, 1, 2048), ("prefill", 1, 2048, 2048)):
        eager = predict_layer_time_s(prof, "llama3-8b", phase, batch, q, kv)
        graph = predict_layer_time_s(prof, "llama3-8b", phase, batch, q, kv, cuda_graphs=True)
        assert eager.total_s >= graph.total_s * (1 - 1e-12), (phase, batch, eager.total_s, graph.total_s)


def test_implementation_sets_kernels_and_elementwise_bytes(prof):
    fused = predict_layer_time_s(prof, "tiny-moe", "decode", 4, 1, 256, implementation="fused")
    eager = predict_layer_time_s(prof, "tiny-moe", "decode", 4, 1, 256, implementation="torch-eager")
    kf, ke = (sum(n.kernels for n in p.nodes) for p in (fused, eager))
    assert ke > 3 * kf
    by_f, by_e = ({n.name: n for n in p.nodes} for p in (fused, eager))
    assert by_f["attn_norm"].kernels == 1 and by_e["attn_norm"].kernels == 9
    # tiny-moe is bf16 (2 bytes): the fused norm moves 4 passes x 2 bytes per element; the eager one upcasts,
    # 7 fp32 passes x 4 bytes + 2 casts x (2 + 4) bytes = 40 bytes per element
    assert by_e["attn_norm"].params["nbytes"] == pytest.approx(40 / 8 * by_f["attn_norm"].params["nbytes"])
    assert by_e["attn_norm"].params["group"] == "norm" and "group" not in by_f["attn_norm"].params
    assert "attn_residual" in by_e and "attn_residual" not in by_f  # fused into the norm
    assert by_e["experts_gate_up"].kernels == by_e["experts_gate_up"].params["count"] > 1
    assert by_f["experts_gate_up"].kernels == 1
    # same GEMMs and attention either way
    for name in ("qkv", "attention", "o_proj", "router"):
        assert by_f[name].device_s == by_e[name].device_s
    assert eager.total_s > fused.total_s
    with pytest.raises(ValueError, match="unknown implementation 'nope'.*fused"):
        predict_layer_time_s(prof, "tiny", "decode", 1, 1, 64, implementation="nope")


def test_fp8_gemm_inputs_are_quantized_by_a_kernel_of_their_own():
    from accelcal.models import ModelConfig
    from accelcal.planner.dag import DagOptions, build_layer_dag

    for name in ("tiny", "tiny-moe"):
        model = ModelConfig.from_name(name)
        plain = build_layer_dag(model, "prefill", 2, 64, 64)
        quant = build_layer_dag(model, "prefill", 2, 64, 64, options=DagOptions(gemm_input_quant=True))
        by = {n.name: n for n in quant.nodes}
        added = [n.name for n in quant.nodes if n.name.endswith("_input_quant")]
        assert not any(n.name.endswith("_input_quant") for n in plain.nodes)
        gemms = [n.name for n in quant.nodes if n.op in ("gemm", "grouped_gemm") and n.name != "router"]
        assert sorted(added) == sorted(f"{g}_input_quant" for g in gemms)  # every projection but the router
        for g in gemms:
            q = by[f"{g}_input_quant"]
            assert by[g].deps == (q.name,) and q.op == "memory" and q.kernels == 1
        # fused: the bf16 input read once and written at 1 byte, 3 bytes per element of the GEMM's input
        tok = 2 * 64
        assert by["qkv_input_quant"].p["nbytes"] == 3 * tok * model.hidden_size
        assert by["o_proj_input_quant"].p["nbytes"] == 3 * tok * model.heads * model.head_dim
        if not model.is_moe:
            assert by["down_input_quant"].p["nbytes"] == 3 * tok * model.ffn_size


def test_a_grouped_expert_kernel_costs_as_one_gemm_over_the_stacked_experts(prof):
    fused = predict_layer_time_s(prof, "tiny-moe", "decode", 8, 1, 256, implementation="fused")
    eager = predict_layer_time_s(prof, "tiny-moe", "decode", 8, 1, 256, implementation="torch-eager")
    for name in ("experts_gate_up", "experts_down"):
        f = {n.name: n for n in fused.nodes}[name]
        e = {n.name: n for n in eager.nodes}[name]
        c, m, n, k = (f.params[x] for x in ("count", "m", "n", "k"))
        assert c > 1 and f.kernels == 1 and e.kernels == c
        # one launch streaming every expert's weights: one GEMM with N stacked; per-expert launches: c GEMMs
        assert f.device_s == pytest.approx(prof.gemm_time_s(m, c * n, k, "bf16").time_s)
        assert e.device_s == pytest.approx(c * prof.gemm_time_s(m, n, k, "bf16").time_s)
        assert f.device_s < e.device_s  # c small GEMMs each pay a GEMM's fixed floor


def test_qk_norm_sits_between_the_qkv_projection_and_rope():
    import dataclasses

    from accelcal.models import ModelConfig
    from accelcal.planner.dag import build_layer_dag
    from accelcal.planner.parallelism import Parallelism

    base = ModelConfig.from_name("tiny")
    assert base.qk_norm == ""
    by = {n.name: n for n in build_layer_dag(base, "decode", 4, 1, 64).nodes}
    assert "qk_norm" not in by and by["rope"].deps == ("qkv",)
    tok, tp = 4, 2
    for kind in ("per_head", "per_layer"):
        m = dataclasses.replace(base, qk_norm=kind)
        one = {n.name: n for n in build_layer_dag(m, "decode", tok, 1, 64).nodes}
        # a norm over the queries and one over the keys: the norm group twice, over (heads + kv_heads) x head_dim
        norm = one["qk_norm"]
        assert norm.deps == ("qkv",) and one["rope"].deps == ("qk_norm",)
        assert norm.kernels == 2 * one["attn_norm"].kernels
        per_elem = one["attn_norm"].p["nbytes"] / (tok * m.hidden_size)
        assert norm.p["nbytes"] == pytest.approx(per_elem * tok * (m.heads + m.kv_heads) * m.head_dim)
        assert "qk_norm_all_reduce" not in one  # one device holds every head
        split = {n.name: n for n in build_layer_dag(m, "decode", tok, 1, 64, Parallelism(tp=tp)).nodes}
        assert split["qk_norm"].p["nbytes"] == pytest.approx(norm.p["nbytes"] / tp)
        if kind == "per_head":
            assert "qk_norm_all_reduce" not in split and split["qk_norm"].deps == ("qkv",)
        else:
            # all heads under one RMS: the ranks' fp32 sums of squares for q and k are all-reduced first
            ar = split["qk_norm_all_reduce"]
            assert (ar.op, ar.p["op"], ar.p["nbytes"], ar.p["group_size"]) == ("collective", "all_reduce", tok * 2 * 4, tp)
            assert split["qk_norm"].deps == ("qk_norm_all_reduce",)


def test_engines_that_fuse_rope_and_the_qk_norm_launch_fewer_kernels_for_the_same_traffic():
    import dataclasses

    from accelcal.models import ModelConfig
    from accelcal.planner.dag import DagOptions, build_layer_dag
    from accelcal.planner.serving.engine import EnginePreset

    llama = ModelConfig.from_name("tiny")
    qwen = dataclasses.replace(llama, qk_norm="per_head")
    tok = 6

    def nodes(model, **opt):
        return {n.name: n for n in build_layer_dag(model, "prefill", 1, tok, tok, options=DagOptions(**opt)).nodes}

    plain, fused = nodes(llama), nodes(llama, rope_in_attention=True)
    # no q/k norm: RoPE moves into the attention op's QKV preprocessing, the kernel that writes the KV cache
    assert "rope" in plain and "rope" not in fused
    assert fused["kv_cache_write"].kernels == plain["kv_cache_write"].kernels
    assert fused["kv_cache_write"].p["nbytes"] == pytest.approx(plain["kv_cache_write"].p["nbytes"] + plain["rope"].p["nbytes"])
    assert fused["attention"].deps == ("qkv", "kv_cache_write")
    # a q/k norm: two norm launches and a RoPE kernel, or one kernel doing all three (the norm's traffic)
    sep, one = nodes(qwen), nodes(qwen, qk_norm_kernels=1, rope_in_attention=True)
    assert sep["qk_norm"].kernels == 2 * one["qk_norm"].kernels and "rope" in sep and "rope" not in one
    assert one["qk_norm"].p["nbytes"] == sep["qk_norm"].p["nbytes"]
    assert one["kv_cache_write"].p["nbytes"] == plain["kv_cache_write"].p["nbytes"]
    assert one["attention"].deps == ("qk_norm", "kv_cache_write")
    assert sum(n.kernels for n in one.values()) == sum(n.kernels for n in sep.values()) - 2
    with pytest.raises(ValueError, match=r"qk_norm_kernels must be one of \[1, 2\], got 3"):
        DagOptions(qk_norm_kernels=3)
    # the engines say which they do, each with its source; SGLang fuses the two norms from 0.5.8
    presets = {n: EnginePreset.from_name(n) for n in ("vllm", "sglang", "trtllm", "static")}
    assert {n: (e.qk_norm_kernels, e.rope_in_attention) for n, e in presets.items()} == {
        "vllm": (2, False), "sglang": (2, False), "trtllm": (1, True), "static": (2, False)}
    assert all(e.sources["qk_norm_kernels"] and e.sources["rope_in_attention"] for e in presets.values())
    assert presets["sglang"].for_version("0.5.8.post1")[0].qk_norm_kernels == 1
    assert presets["sglang"].for_version("0.5.1.post1")[0].qk_norm_kernels == 2
    with pytest.raises(ValueError, match=r"qk_norm_kernels = 0; expected one of \[1, 2\]"):
        presets["vllm"].with_overrides({"qk_norm_kernels": 0}, "test")
