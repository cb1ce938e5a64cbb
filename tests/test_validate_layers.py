"""validate.layers: the layer math against a plain reference, KV-cache decode, MoE routing, TP shards."""

import math

import pytest
import torch

from accelcal.validate.layers import KVCache, LayerDims, build_layer, check_tp

DENSE = LayerDims(hidden_size=64, heads=8, kv_heads=2, head_dim=8, ffn_size=96, rope_theta=100.0)
MOE = LayerDims(hidden_size=64, heads=4, kv_heads=2, head_dim=16, ffn_size=96, num_experts=4, top_k=2,
                expert_ffn_size=32, shared_experts=1)


def _ref_rms(x, w, eps=1e-5):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


def _ref_swiglu(x, gate_up, down):
    ffn = gate_up.shape[0] // 2
    g = x @ gate_up[:ffn].T
    u = x @ gate_up[ffn:].T
    return (g * torch.sigmoid(g) * u) @ down.T


def _ref_rope(t, theta):
    """Rotate each (i, i + d/2) pair of t [b, s, heads, d] by angle pos * theta^(-2i/d), one pair at a time."""
    b, s, nh, d = t.shape
    out = t.clone()
    for p in range(s):
        for i in range(d // 2):
            a = p * theta ** (-2 * i / d)
            x1, x2 = t[:, p, :, i], t[:, p, :, i + d // 2]
            out[:, p, :, i] = x1 * math.cos(a) - x2 * math.sin(a)
            out[:, p, :, i + d // 2] = x2 * math.cos(a) + x1 * math.sin(a)
    return out


def _ref_attention(layer, x):
    """Textbook causal GQA: explicit rotations, scores, mask, softmax, KV heads repeated."""
    d = layer.dims
    b, s, _ = x.shape
    qkv = x @ layer.qkv.T
    q = qkv[..., : d.heads * d.head_dim].reshape(b, s, d.heads, d.head_dim)
    k = qkv[..., d.heads * d.head_dim: (d.heads + d.kv_heads) * d.head_dim].reshape(b, s, d.kv_heads, d.head_dim)
    v = qkv[..., (d.heads + d.kv_heads) * d.head_dim:].reshape(b, s, d.kv_heads, d.head_dim)
    if d.qk_norm == "per_head":  # Qwen3: each head's query and key over head_dim
        q, k = _ref_rms(q, layer.q_norm), _ref_rms(k, layer.k_norm)
    elif d.qk_norm == "per_layer":  # MiniMax-M2: all heads under one RMS
        q = _ref_rms(q.reshape(b, s, -1), layer.q_norm).reshape(q.shape)
        k = _ref_rms(k.reshape(b, s, -1), layer.k_norm).reshape(k.shape)
    q, k = _ref_rope(q, d.rope_theta), _ref_rope(k, d.rope_theta)
    group = d.heads // d.kv_heads
    out = torch.empty(b, s, d.heads, d.head_dim)
    for h in range(d.heads):
        kh, vh = k[:, :, h // group], v[:, :, h // group]
        scores = q[:, :, h] @ kh.transpose(1, 2) / math.sqrt(d.head_dim)
        mask = torch.ones(s, s).tril().bool()
        scores = scores.masked_fill(~mask, float("-inf"))
        out[:, :, h] = scores.softmax(-1) @ vh
    return out.reshape(b, s, -1) @ layer.o.T


def test_dense_layer_matches_reference():
    torch.manual_seed(0)
    layer = build_layer(DENSE, torch.float32, "cpu", seed=3)
    x = torch.randn(2, 7, DENSE.hidden_size)
    with torch.no_grad():
        got = layer(x)
        h = x + _ref_attention(layer, _ref_rms(x, layer.attn_norm))
        want = h + _ref_swiglu(_ref_rms(h, layer.mlp_norm), layer.mlp.gate_up, layer.mlp.down)
    assert got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert want.abs().mean() > 0.1  # the comparison is on real numbers, not zeros


@pytest.mark.parametrize("kind", ["per_head", "per_layer"])
def test_qk_norm_layers_match_the_reference(kind):
    import dataclasses

    dims = dataclasses.replace(DENSE, qk_norm=kind)
    layer = build_layer(dims, torch.float32, "cpu", seed=3)
    plain = build_layer(DENSE, torch.float32, "cpu", seed=3)
    assert layer.q_norm.shape == ((DENSE.head_dim,) if kind == "per_head" else (DENSE.heads * DENSE.head_dim,))
    torch.testing.assert_close(layer.qkv, plain.qkv)  # the norm weights are drawn last: the rest is unchanged
    x = torch.randn(2, 7, DENSE.hidden_size)
    with torch.no_grad():
        got = layer.attention(x, None, 0)
        torch.testing.assert_close(got, _ref_attention(layer, x), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(got, plain.attention(x, None, 0), atol=1e-3)  # the norm changed the numbers
    with pytest.raises(ValueError, match="qk_norm must be '', 'per_head' or 'per_layer', got 'rms'"):
        dataclasses.replace(DENSE, qk_norm="rms").check()


def test_decode_with_cache_equals_last_prefill_token():
    layer = build_layer(DENSE, torch.float32, "cpu", seed=1)
    x = torch.randn(3, 9, DENSE.hidden_size)
    cache = KVCache.empty(DENSE, batch=3, max_len=12, dtype=torch.float32, device="cpu")
    with torch.no_grad():
        full = layer(x)  # causal prefill over all 9 tokens, no cache
        layer(x[:, :8], cache, pos=0)  # prefill 8 tokens into the cache
        step = layer(x[:, 8:9], cache, pos=8)  # decode the 9th
        # A 2-token chunk after a cached prefix uses the explicit offset mask.
        cache2 = KVCache.empty(DENSE, batch=3, max_len=12, dtype=torch.float32, device="cpu")
        layer(x[:, :7], cache2, pos=0)
        chunk = layer(x[:, 7:9], cache2, pos=7)
    torch.testing.assert_close(step[:, 0], full[:, 8], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(chunk, full[:, 7:9], rtol=1e-4, atol=1e-5)


def test_cache_overflow_is_a_clear_error():
    layer = build_layer(DENSE, torch.float32, "cpu")
    cache = KVCache.empty(DENSE, batch=1, max_len=4, dtype=torch.float32, device="cpu")
    with pytest.raises(ValueError, match=r"pos\(4\) \+ tokens\(1\) = 5 > max_len\(4\)"):
        layer(torch.randn(1, 1, DENSE.hidden_size), cache, pos=4)


def test_moe_layer_routes_top_k_and_adds_shared_expert():
    layer = build_layer(MOE, torch.float32, "cpu", seed=2)
    x = torch.randn(2, 5, MOE.hidden_size)
    moe = layer.mlp
    with torch.no_grad():
        y = moe(x)
        flat = x.reshape(-1, MOE.hidden_size)
        probs = (flat @ moe.router.T).softmax(-1)
        w, ids = probs.topk(2, -1)
        w = w / w.sum(-1, keepdim=True)
        want = torch.stack([
            sum(w[t, j] * moe.experts[int(ids[t, j])](flat[t:t + 1])[0] for j in range(2)) for t in range(flat.shape[0])
        ]) + moe.shared(flat)
        assert layer(x).shape == x.shape
    torch.testing.assert_close(y.reshape(-1, MOE.hidden_size), want, rtol=1e-4, atol=1e-5)


def test_tp_shards_sum_to_the_unsharded_layer_without_communication():
    # Row-parallel outputs summed over ranks == the full projection; checked here
    # by calling each shard's halves by hand (the real all-reduce runs in
    # test_validate_run.py on two gloo ranks).
    full = build_layer(DENSE, torch.float32, "cpu", seed=5)
    shards = [build_layer(DENSE, torch.float32, "cpu", seed=5, tp=2, rank=r) for r in range(2)]
    for s in shards:
        s.communicate = False
    x = torch.randn(2, 6, DENSE.hidden_size)
    with torch.no_grad():
        attn = sum(s.attention(x, None, 0) for s in shards)
        mlp = sum(s.mlp(x) for s in shards)
        torch.testing.assert_close(attn, full.attention(x, None, 0), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(mlp, full.mlp(x), rtol=1e-4, atol=1e-5)
    assert shards[0].qkv.shape[0] == (DENSE.heads // 2 + 2 * DENSE.kv_heads // 2) * DENSE.head_dim


def test_bad_tp_and_dims_show_the_arithmetic():
    with pytest.raises(ValueError, match=r"kv_heads: 2 % 4 = 2"):
        check_tp(DENSE, 4)
    with pytest.raises(ValueError, match=r"heads\(6\) % kv_heads\(4\) = 2"):
        LayerDims(hidden_size=8, heads=6, kv_heads=4, head_dim=2, ffn_size=8).check()


# -- the planner's torch-eager preset counts what these layers really dispatch -----------------------------

@pytest.mark.parametrize("model,phase,batch,length,qk_norm", [("tiny", "decode", 1, 64, ""),
                                                               ("tiny", "prefill", 2, 32, ""),
                                                               ("tiny-moe", "decode", 1, 64, ""),
                                                               ("tiny", "decode", 1, 64, "per_head"),
                                                               ("tiny", "prefill", 2, 32, "per_layer")])
def test_torch_eager_preset_counts_the_ops_the_layer_dispatches(model, phase, batch, length, qk_norm):
    import dataclasses

    from accelcal.kernels.device import resolve_device
    from accelcal.planner.dag import build_layer_dag
    from accelcal.models import ModelConfig
    from accelcal.validate.breakdown import count_ops
    from accelcal.validate.configs import Case

    mc = dataclasses.replace(ModelConfig.from_name(model), weight_dtype="fp32", kv_dtype="fp32", qk_norm=qk_norm)
    case = Case(model, phase, batch, length if phase == "prefill" else 1, length)
    _, work = count_ops(case, LayerDims.from_model(mc), "fp32", resolve_device("cpu"))
    # decode of one token routes to exactly top_k experts, as the DAG's expected-hit count says
    dag = build_layer_dag(mc, phase, batch, case.q_len, length, implementation="torch-eager")
    assert sum(n.kernels for n in dag.nodes) == work
    fused = build_layer_dag(mc, phase, batch, case.q_len, length, implementation="fused")
    assert sum(n.kernels for n in fused.nodes) < work / 2


# -- ... and the bytes those ops move, per activation dtype ------------------------------------------------

def _bytes_moved(fn, *args) -> int:
    """Bytes of every tensor each dispatched op reads or writes (views and no-op casts move nothing)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from accelcal.validate.breakdown import VIEW_OPS

    class _Bytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            ins = [t for t in tree_leaves((args, kwargs or {})) if isinstance(t, torch.Tensor)]
            outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            name = func.overloadpacket.__name__
            if name in VIEW_OPS or (name == "to" and outs and any(o is i for o in outs for i in ins)):
                return out
            self.total += sum(t.numel() * t.element_size() for t in ins + outs)
            return out

    with torch.inference_mode(), _Bytes() as b:
        fn(*args)
    return b.total


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_eager_preset_traffic_matches_the_bytes_the_ops_move(dtype):
    from accelcal.models.implementation import Implementation
    from accelcal.validate.layers import apply_rope, rms_norm

    impl = Implementation.from_name("torch-eager")
    el = torch.empty((), dtype=dtype).element_size()
    tokens, hidden = 512, 256
    x = torch.randn(tokens, hidden, dtype=dtype)
    w = torch.ones(hidden, dtype=dtype)
    moved = _bytes_moved(rms_norm, x, w, 1e-5)
    # per-token values (mean, rsqrt) and the hidden-sized weight are small beside the tensor passes
    expect = impl.norm.bytes_per_element(el) * tokens * hidden
    assert moved == pytest.approx(expect, rel=0.02), (dtype, moved, expect)

    q = torch.randn(2, 64, 4, 32, dtype=dtype).transpose(1, 2)  # [b, heads, s, d] as the layer's view
    cos, sin = torch.randn(64, 32, dtype=dtype), torch.randn(64, 32, dtype=dtype)
    moved = _bytes_moved(apply_rope, q, cos, sin)
    expect = impl.rope.bytes_per_element(el) * q.numel()
    # cos and sin ([s, d]) are read once per mul: 2 x 64 x 32 elements beside the 16k-element tensor
    assert moved == pytest.approx(expect, rel=0.15), (dtype, moved, expect)

    g, u = torch.randn(tokens, hidden, dtype=dtype), torch.randn(tokens, hidden, dtype=dtype)
    moved = _bytes_moved(lambda a, b: torch.nn.functional.silu(a) * b, g, u)
    assert moved == pytest.approx(impl.act_mul.bytes_per_element(el) * tokens * hidden, rel=0.01)


def test_fp32_casts_in_the_preset_apply_only_to_lower_precision_activations():
    from accelcal.models.implementation import ElementwiseGroup

    g = ElementwiseGroup(kernels=3, passes=1, fp32_passes=2, cast_passes=1)
    assert g.bytes_per_element(4) == 1 * 4 + 2 * 4           # fp32: the cast is a no-op
    assert g.bytes_per_element(2) == 1 * 2 + 2 * 4 + (2 + 4)  # bf16: the cast reads 2 and writes 4 bytes
