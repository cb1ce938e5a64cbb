"""Real torch decoder layers (dense and MoE, optionally tensor-parallel) for validation.

    import torch
    from accelcal.validate.layers import LayerDims, build_layer, KVCache
    dims = LayerDims(hidden_size=256, heads=8, kv_heads=2, head_dim=32, ffn_size=688)
    layer = build_layer(dims, dtype=torch.float32, device="cpu", seed=0)
    x = torch.randn(2, 16, 256)
    cache = KVCache.empty(dims, batch=2, max_len=32, dtype=torch.float32, device="cpu")
    y = layer(x, cache, pos=0)          # prefill 16 tokens, fills the cache
    y1 = layer(torch.randn(2, 1, 256), cache, pos=16)   # decode one token

A layer is what the planner costs per decoder layer: RMSNorm, fused QKV
projection, grouped-query attention through ``scaled_dot_product_attention``
with rotary position embeddings on Q and K (Llama's rotate-half form, base
``rope_theta``; before them the model's q/k RMSNorm, per head or over all
heads, when ``dims.qk_norm`` says so) and a KV cache for decode, output projection, residual,
RMSNorm, then either a SwiGLU MLP or an MoE block (top-k router + experts +
optional shared experts), residual.

Tensor parallelism (Megatron layout): QKV and gate/up are column-parallel
(each rank holds ``heads/tp`` query heads, ``kv_heads/tp`` KV heads and
``ffn/tp`` columns), the output and down projections are row-parallel and are
followed by ``dist.all_reduce`` inside the forward.  :func:`build_layer` draws
the full weights from ``seed`` and slices them, so every rank (and the
unsharded reference) holds the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The elementwise ops live with their microbenchmarks, so the planner's torch-eager costs are of these very ops.
from accelcal.kernels.elementwise import apply_rope, rms_norm, rope_tables, silu_mul
from accelcal.models import LayerDims, check_tp

__all__ = ["KVCache", "LayerDims", "DecoderLayer", "build_layer", "check_tp"]  # LayerDims, check_tp: accelcal.models


@dataclass
class KVCache:
    """Preallocated key/value cache of one layer (this rank's KV heads)."""

    k: torch.Tensor
    """Keys, [batch, kv_heads_local, max_len, head_dim]."""
    v: torch.Tensor
    """Values, same shape as ``k``."""

    @classmethod
    def empty(cls, dims: LayerDims, batch: int, max_len: int, dtype: torch.dtype, device: Any, tp: int = 1,
              generator: torch.Generator | None = None) -> "KVCache":
        """A cache filled with random values (stands in for earlier tokens; zeros would run faster)."""
        shape = (batch, dims.kv_heads // tp, max_len, dims.head_dim)
        if torch.device(device).type != "cpu":
            # Large GPU caches are drawn on the device: the host would take seconds per GiB.
            return cls(k=torch.randn(shape, device=device, dtype=dtype), v=torch.randn(shape, device=device, dtype=dtype))
        k = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
        v = torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
        return cls(k=k, v=v)

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2


class SwiGLU(nn.Module):
    """down(silu(x @ gate) * (x @ up)); gate and up fused into one weight."""

    def __init__(self, gate_up: torch.Tensor, down: torch.Tensor):
        super().__init__()
        self.gate_up = nn.Parameter(gate_up, requires_grad=False)  # [2 * ffn_local, hidden]
        self.down = nn.Parameter(down, requires_grad=False)  # [hidden, ffn_local]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(silu_mul(F.linear(x, self.gate_up)), self.down)


class MoE(nn.Module):
    """Top-k routed experts (+ merged shared experts), token-gather per expert."""

    def __init__(self, router: torch.Tensor, experts: list[SwiGLU], shared: SwiGLU | None, top_k: int):
        super().__init__()
        self.router = nn.Parameter(router, requires_grad=False)  # [num_experts, hidden], replicated
        self.experts = nn.ModuleList(experts)
        self.shared = shared
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = F.linear(flat, self.router).float().softmax(dim=-1)
        weights, ids = probs.topk(self.top_k, dim=-1)
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = (ids == e).nonzero(as_tuple=True)
            if token.numel() == 0:
                continue
            y = expert(flat.index_select(0, token)) * weights[token, slot].unsqueeze(-1)
            out.index_add_(0, token, y)
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.reshape(shape)


class DecoderLayer(nn.Module):
    """One pre-norm decoder layer; with ``tp > 1`` this rank's shard plus the all-reduces."""

    def __init__(self, dims: LayerDims, w: dict[str, torch.Tensor], mlp: nn.Module, tp: int = 1, group: Any = None):
        super().__init__()
        self.dims = dims
        self.tp = tp
        self.group = group
        self.communicate = tp > 1
        """Run the all-reduces (tests turn it off to check shard math without a process group)."""
        self.heads = dims.heads // tp
        self.kv_heads = dims.kv_heads // tp
        self.attn_norm = nn.Parameter(w["attn_norm"], requires_grad=False)
        self.mlp_norm = nn.Parameter(w["mlp_norm"], requires_grad=False)
        self.qkv = nn.Parameter(w["qkv"], requires_grad=False)  # [(h + 2 kvh) * d local, hidden]
        self.o = nn.Parameter(w["o"], requires_grad=False)  # [hidden, h * d local]
        # [d] (per_head) or [h * d local], [kvh * d local] (per_layer); None without a q/k norm
        self.q_norm = nn.Parameter(w["q_norm"], requires_grad=False) if dims.qk_norm else None
        self.k_norm = nn.Parameter(w["k_norm"], requires_grad=False) if dims.qk_norm else None
        self.mlp = mlp
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def _rope_for(self, pos: int, s: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Tables are built once (grown on demand), as inference engines precompute them.
        if self._rope is None or self._rope[0].shape[0] < pos + s or self._rope[0].dtype != x.dtype:
            end = max(pos + s, 2 * self._rope[0].shape[0] if self._rope is not None else 0)
            cos, sin = rope_tables(self.dims.head_dim, end, self.dims.rope_theta, x.device)
            self._rope = (cos.to(x.dtype), sin.to(x.dtype))
        return self._rope[0][pos:pos + s], self._rope[1][pos:pos + s]

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        if self.communicate:
            import torch.distributed as dist

            dist.all_reduce(t, group=self.group)
        return t

    def _layer_rms_norm(self, t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # per_layer q/k norm: one RMS over all heads; each rank holds an equal share of them, so the mean of the
        # ranks' mean squares is the whole one (vllm's MiniMaxText01RMSNormTP all-reduces it the same way)
        tf = t.float()
        var = tf.pow(2).mean(-1, keepdim=True)
        if self.communicate:
            var = self._all_reduce(var) / self.tp
        tf = tf * torch.rsqrt(var + self.dims.norm_eps)
        return (tf * weight.float()).to(t.dtype)

    def _qk_norm(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dims.qk_norm == "per_head":
            b, s = q.shape[:2]
            d = self.dims.head_dim
            q = rms_norm(q.view(b, s, self.heads, d), self.q_norm, self.dims.norm_eps).view(b, s, self.heads * d)
            k = rms_norm(k.view(b, s, self.kv_heads, d), self.k_norm, self.dims.norm_eps).view(b, s, self.kv_heads * d)
            return q, k
        return self._layer_rms_norm(q, self.q_norm), self._layer_rms_norm(k, self.k_norm)

    def attention(self, x: torch.Tensor, cache: KVCache | None, pos: int) -> torch.Tensor:
        b, s, _ = x.shape
        d = self.dims.head_dim
        qkv = F.linear(x, self.qkv)
        q, k, v = qkv.split([self.heads * d, self.kv_heads * d, self.kv_heads * d], dim=-1)
        if self.dims.qk_norm:
            q, k = self._qk_norm(q, k)
        q = q.view(b, s, self.heads, d).transpose(1, 2)
        k = k.view(b, s, self.kv_heads, d).transpose(1, 2)
        v = v.view(b, s, self.kv_heads, d).transpose(1, 2)
        cos, sin = self._rope_for(pos, s, x)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            end = pos + s
            if end > cache.k.shape[2]:
                raise ValueError(f"KV cache too short: pos({pos}) + tokens({s}) = {end} > max_len({cache.k.shape[2]})")
            cache.k[:, :, pos:end].copy_(k)
            cache.v[:, :, pos:end].copy_(v)
            k, v = cache.k[:, :, :end], cache.v[:, :, :end]
        kv_len = k.shape[2]
        if s == 1:
            mask, causal = None, False  # one new token sees the whole cache
        elif kv_len == s:
            mask, causal = None, True
        else:
            # Chunk after a cached prefix: query i sits at position pos + i.
            qpos = torch.arange(pos, pos + s, device=x.device).unsqueeze(1)
            mask, causal = torch.arange(kv_len, device=x.device).unsqueeze(0) <= qpos, False
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=self.heads != self.kv_heads)
        o = o.transpose(1, 2).reshape(b, s, self.heads * d)
        return self._all_reduce(F.linear(o, self.o))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, pos: int = 0) -> torch.Tensor:
        h = x + self.attention(rms_norm(x, self.attn_norm, self.dims.norm_eps), cache, pos)
        return h + self._all_reduce(self.mlp(rms_norm(h, self.mlp_norm, self.dims.norm_eps)))


def _randn(gen: torch.Generator, *shape: int, scale: float) -> torch.Tensor:
    # Drawn where the generator lives (the target device): an 8B-class layer's
    # weights take seconds to draw on the host.
    return torch.randn(*shape, generator=gen, dtype=torch.float32, device=gen.device) * scale


def _swiglu_shard(gen: torch.Generator, hidden: int, ffn: int, tp: int, rank: int, dtype: torch.dtype, device: Any) -> SwiGLU:
    gate = _randn(gen, ffn, hidden, scale=hidden ** -0.5)
    up = _randn(gen, ffn, hidden, scale=hidden ** -0.5)
    down = _randn(gen, hidden, ffn, scale=ffn ** -0.5)
    part = ffn // tp
    cols = slice(rank * part, (rank + 1) * part)
    gate_up = torch.cat([gate[cols], up[cols]], dim=0)
    return SwiGLU(gate_up.to(device=device, dtype=dtype), down[:, cols].contiguous().to(device=device, dtype=dtype))


def build_layer(dims: LayerDims, dtype: torch.dtype, device: Any, seed: int = 0, tp: int = 1, rank: int = 0,
                group: Any = None) -> DecoderLayer:
    """Rank ``rank``'s shard of the layer whose full weights are drawn from ``seed``.

    ``tp=1`` gives the whole layer.  Weights are scaled by 1/sqrt(fan_in) so
    activations stay O(1) in bf16.
    """
    dims.check()
    check_tp(dims, tp)
    if not 0 <= rank < tp:
        raise ValueError(f"rank must be in [0, tp={tp}), got {rank}")
    # Same seed and device type on every rank -> the same full weights, sliced per rank.
    gen = torch.Generator(device=torch.device(device)).manual_seed(seed)
    hd, d = dims.hidden_size, dims.head_dim
    wq = _randn(gen, dims.heads * d, hd, scale=hd ** -0.5)
    wk = _randn(gen, dims.kv_heads * d, hd, scale=hd ** -0.5)
    wv = _randn(gen, dims.kv_heads * d, hd, scale=hd ** -0.5)
    wo = _randn(gen, hd, dims.heads * d, scale=(dims.heads * d) ** -0.5)
    w = {
        "attn_norm": 1.0 + 0.1 * _randn(gen, hd, scale=1.0),
        "mlp_norm": 1.0 + 0.1 * _randn(gen, hd, scale=1.0),
    }
    qh, kvh = dims.heads // tp * d, dims.kv_heads // tp * d
    q_rows = slice(rank * qh, (rank + 1) * qh)
    kv_rows = slice(rank * kvh, (rank + 1) * kvh)
    w["qkv"] = torch.cat([wq[q_rows], wk[kv_rows], wv[kv_rows]], dim=0)
    w["o"] = wo[:, q_rows].contiguous()
    w = {k: v.to(device=device, dtype=dtype) for k, v in w.items()}
    mlp: nn.Module
    if dims.is_moe:
        router = _randn(gen, dims.num_experts, hd, scale=hd ** -0.5).to(device=device, dtype=dtype)
        experts = [_swiglu_shard(gen, hd, dims.expert_ffn_size, tp, rank, dtype, device) for _ in range(dims.num_experts)]
        shared = None
        if dims.shared_experts:
            shared = _swiglu_shard(gen, hd, dims.shared_experts * dims.expert_ffn_size, tp, rank, dtype, device)
        mlp = MoE(router, experts, shared, dims.top_k)
    else:
        mlp = _swiglu_shard(gen, hd, dims.ffn_size, tp, rank, dtype, device)
    if dims.qk_norm:
        # drawn last, so a model without a q/k norm keeps the weights it always had
        if dims.qk_norm == "per_head":
            w["q_norm"], w["k_norm"] = (1.0 + 0.1 * _randn(gen, d, scale=1.0) for _ in range(2))
        else:
            wqn = 1.0 + 0.1 * _randn(gen, dims.heads * d, scale=1.0)
            wkn = 1.0 + 0.1 * _randn(gen, dims.kv_heads * d, scale=1.0)
            w["q_norm"], w["k_norm"] = wqn[q_rows].contiguous(), wkn[kv_rows].contiguous()
        w["q_norm"], w["k_norm"] = (w[n].to(device=device, dtype=dtype) for n in ("q_norm", "k_norm"))
    return DecoderLayer(dims, w, mlp, tp=tp, group=group).eval()


def layer_weight_bytes(layer: DecoderLayer) -> int:
    """Bytes of this rank's weights (what one forward reads at least once)."""
    return sum(p.numel() * p.element_size() for p in layer.parameters())
