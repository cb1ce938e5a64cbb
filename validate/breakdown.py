"""Per-op diagnosis: time each piece of a real layer and set it beside the planner's DAG node.

    from accelcal.calibrate.profile import Profile
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import TimingConfig
    from accelcal.validate.breakdown import node_breakdown, format_breakdown
    from accelcal.validate.configs import Case
    rows = node_breakdown(Profile.load("profiles/cpu.yaml"), "tiny", Case("tiny", "decode", 8, 1, 512), "fp32",
                          resolve_device("cpu"), TimingConfig.quick())
    print(format_breakdown(rows))

When a whole-layer prediction misses, this says which op's prediction is off
and by how much: each planner node (``qkv``, ``attention``, ``gate_up``, ...)
is re-run alone from the same layer, on the same shapes, through the timing
core, and compared with that node's ``device_s``.  Single-rank cases only (the
all-reduce is validated by the collectives suite and the TP cases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from accelcal.kernels.device import Device
from accelcal.kernels.elementwise import apply_rope, rms_norm
from accelcal.kernels.timing import TimingConfig, time_op

from .compare import predict_case, prediction_model
from .configs import Case
from .layers import KVCache, LayerDims, build_layer
from .measure import TORCH_DTYPES, cpu_threads, profile_threads

__all__ = ["NodeRow", "count_ops", "node_breakdown", "format_breakdown"]

VIEW_OPS = frozenset({"view", "transpose", "slice", "alias", "split_with_sizes", "split", "reshape", "chunk",
                      "unsqueeze", "squeeze", "expand", "t", "_unsafe_view", "detach", "select", "as_strided"})
"""aten ops that only make a new view (no work launched); excluded from the work-op count."""

NSETS = 4
"""Input sets rotated per op (enough to avoid re-reading the same activations each call)."""


@dataclass(frozen=True)
class NodeRow:
    """One planner node (or group of nodes) beside the same op run alone."""

    node: str
    """Planner node name(s), ``+``-joined for groups."""
    measured_s: float
    """Median seconds of the op alone (device figure)."""
    predicted_s: float
    """Sum of the nodes' ``device_s`` plus their attributable ``launch_s`` (CPU: dispatches beyond the first)."""

    @property
    def rel_err(self) -> float:
        return self.predicted_s / self.measured_s - 1.0

    @property
    def abs_err_s(self) -> float:
        return self.predicted_s - self.measured_s


def _ops(case: Case, dims: LayerDims, dtype: torch.dtype, device: Device) -> dict[str, Callable[[int], object]]:
    layer = build_layer(dims, dtype, device.torch, seed=0)
    gen = torch.Generator().manual_seed(7)
    b, s, d = case.batch, case.q_len, dims.head_dim
    pos = case.kv_len - s
    sets = []
    with torch.inference_mode():
        for _ in range(NSETS):
            x = torch.randn(b, s, dims.hidden_size, generator=gen).to(device.torch, dtype)
            cache = KVCache.empty(dims, b, case.kv_len, dtype, device.torch, generator=gen)
            xn = rms_norm(x, layer.attn_norm, dims.norm_eps)
            qkv = F.linear(xn, layer.qkv)
            q, k, v = qkv.split([dims.heads * d, dims.kv_heads * d, dims.kv_heads * d], dim=-1)
            q = q.view(b, s, dims.heads, d).transpose(1, 2).contiguous()
            k = k.view(b, s, dims.kv_heads, d).transpose(1, 2).contiguous()
            v = v.view(b, s, dims.kv_heads, d).transpose(1, 2).contiguous()
            cos, sin = layer._rope_for(pos, s, x)
            o = torch.randn(b, s, dims.heads * d, generator=gen).to(device.torch, dtype)
            qf, kf = q.transpose(1, 2).reshape(b, s, dims.heads * d), k.transpose(1, 2).reshape(b, s, dims.kv_heads * d)
            sets.append(dict(x=x, xn=xn, cache=cache, q=q, k=k, v=v, cos=cos, sin=sin, o=o, qf=qf, kf=kf))
    causal = s > 1

    def attn(i):
        z = sets[i % NSETS]
        c = z["cache"]
        kk, vv = c.k[:, :, :case.kv_len], c.v[:, :, :case.kv_len]
        return F.scaled_dot_product_attention(z["q"], kk, vv, is_causal=causal, enable_gqa=dims.heads != dims.kv_heads)

    def kv_write(i):
        z = sets[i % NSETS]
        z["cache"].k[:, :, pos:pos + s].copy_(z["k"])
        z["cache"].v[:, :, pos:pos + s].copy_(z["v"])

    ops: dict[str, Callable[[int], object]] = {
        "attn_norm": lambda i: sets[i % NSETS]["x"] + rms_norm(sets[i % NSETS]["x"], layer.attn_norm, dims.norm_eps),
        "qkv": lambda i: F.linear(sets[i % NSETS]["xn"], layer.qkv),
        "rope": lambda i: (apply_rope(sets[i % NSETS]["q"], sets[i % NSETS]["cos"], sets[i % NSETS]["sin"]),
                           apply_rope(sets[i % NSETS]["k"], sets[i % NSETS]["cos"], sets[i % NSETS]["sin"])),
        "kv_cache_write": kv_write,
        **({"qk_norm": lambda i: layer._qk_norm(sets[i % NSETS]["qf"], sets[i % NSETS]["kf"])} if dims.qk_norm else {}),
        "attention": attn,
        "o_proj": lambda i: F.linear(sets[i % NSETS]["o"], layer.o),
        "mlp_norm": lambda i: sets[i % NSETS]["x"] + rms_norm(sets[i % NSETS]["x"], layer.mlp_norm, dims.norm_eps),
    }
    if dims.is_moe:
        moe = layer.mlp
        ops["router+topk"] = lambda i: F.linear(sets[i % NSETS]["xn"].reshape(-1, dims.hidden_size), moe.router).float().softmax(-1).topk(moe.top_k, -1)
        ops["experts_gate_up+experts_act_mul+experts_down" + ("+shared_gate_up+shared_act_mul+shared_down" if moe.shared is not None else "")] = \
            lambda i: moe(sets[i % NSETS]["xn"])  # the whole routed block (router included: small beside it)
    else:
        mlp = layer.mlp
        ffn = dims.ffn_size
        gu = [F.linear(z["xn"], mlp.gate_up) for z in sets]
        hs = [torch.randn(b, s, ffn, generator=gen).to(device.torch, dtype) for _ in range(NSETS)]
        ops["gate_up"] = lambda i: F.linear(sets[i % NSETS]["xn"], mlp.gate_up)
        ops["act_mul"] = lambda i: F.silu(gu[i % NSETS][..., :ffn]) * gu[i % NSETS][..., ffn:]
        ops["down"] = lambda i: F.linear(hs[i % NSETS], mlp.down)
    return ops


def dispatched_op_names(fn: Any) -> list[str]:
    """Names of the aten ops one call of ``fn()`` dispatches (views included), counted with a TorchDispatchMode."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with _Count() as c:
        fn()
    return c.names


def count_ops(case: Case, dims: LayerDims, dtype: str, device: Device) -> tuple[int, int]:
    """(all aten ops, ops that do work) one forward of ``case`` dispatches: compare with the planner's kernel count."""
    from .measure import build_runner

    run, nsets = build_runner(case, dims, dtype, device)
    with torch.inference_mode():
        # Build every rotated layer copy's lazily-made tables (rope) outside the count, as the
        # timed warm-up does: counting a copy's first call would add its table build (~13 ops).
        for i in range(nsets):
            run(i)
        names = dispatched_op_names(lambda: run(nsets))
    return len(names), sum(1 for n in names if n not in VIEW_OPS)


def node_breakdown(profile: Any, model: Any, case: Case, dtype: str, device: Device, cfg: TimingConfig) -> list[NodeRow]:
    """Measured vs predicted per planner node for a single-rank ``case``."""
    from accelcal.models import ModelConfig

    if case.ranks != 1:
        raise ValueError(f"node breakdown runs single-rank cases; {case.name} needs {case.ranks} ranks")
    cfg_model = ModelConfig.resolve(model)
    dims = LayerDims.from_model(cfg_model)
    pred = predict_case(profile, prediction_model(cfg_model, dtype), case)
    # device time plus, on a CPU (host = device), the node's own extra kernel dispatches
    by_name = {n.name: n.device_s + n.launch_s for n in pred.nodes}
    rows = []
    # the profile's device: on a CPU, the thread count its kernels were measured with
    with torch.inference_mode(), cpu_threads(profile_threads(profile, device)):
        for name, run in _ops(case, dims, TORCH_DTYPES[dtype], device).items():
            parts = [p for p in name.split("+") if p in by_name]
            if not parts:
                continue
            t = time_op(run, device, cfg)
            rows.append(NodeRow(node=name, measured_s=t.device.median_s, predicted_s=sum(by_name[p] for p in parts)))
    return rows


def format_breakdown(rows: list[NodeRow], title: str = "") -> str:
    head = f"{'node':<44} {'measured_ms':>11} {'predicted_ms':>12} {'rel_err':>8} {'pred-meas_ms':>12}"
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.node[:44]:<44} {r.measured_s * 1e3:>11.4f} {r.predicted_s * 1e3:>12.4f} {r.rel_err:>+8.1%} "
                     f"{r.abs_err_s * 1e3:>+12.4f}")
    if rows:
        worst = max(rows, key=lambda r: abs(r.abs_err_s))
        lines.append(f"largest contribution to the layer error: {worst.node} "
                     f"({worst.predicted_s * 1e3:.4f} ms predicted vs {worst.measured_s * 1e3:.4f} ms measured, "
                     f"{worst.rel_err:+.0%})")
    return "\n".join(lines)
