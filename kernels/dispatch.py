"""Host cost per op of a decoder layer's own eager op mix (views, casts and reshapes included).

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.dispatch import run_eager_dispatch
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_eager_dispatch(ctx)
    print(ctx.results.frame()[["op", "median_s", "work_ops", "dispatched_ops"]])

``launch_eager`` times a one-element ``mul_`` issued from a loop: the cheapest op PyTorch can dispatch.  A
real eager layer also dispatches views, reshapes, casts, ``index_select``/``cat`` with argument parsing and
tensor-metadata work, so each of its kernels costs the host more.  This case runs one decode step of the
validation layer itself (validate/layers.py: RMSNorm, fused QKV, rotate-half RoPE, KV-cache write, SDPA,
output projection, SwiGLU) at a tiny width, so device work is negligible and the time per step is host
dispatch.  ``median_s`` is that time divided by the step's *work* ops (the kernels the planner's
torch-eager preset counts), so it carries the cost of the view ops between them; the row also records
``work_ops`` and ``dispatched_ops`` (every aten op, views included, counted with a TorchDispatchMode).
figure ``eager``; op ``eager_dispatch`` -> profile ``overheads.eager_dispatch_s``.
"""

from __future__ import annotations

import torch

from .cases import SweepContext
from .timing import Stats, sample_queue, warmup

__all__ = ["EAGER_DISPATCH_DIMS", "run_eager_dispatch", "layer_step_ops"]

EAGER_DISPATCH_DIMS = dict(hidden_size=64, heads=4, kv_heads=2, head_dim=16, ffn_size=128)
"""A decoder layer small enough that a decode step's device work is far below its host dispatch time."""

_KV_LEN = 16
_QUEUE_LEN = 10


def layer_step_ops(ctx: SweepContext):
    """(run, dispatched ops, work ops): one tiny decode step of the validation layer and its op counts."""
    # One list of view ops and one op counter: validate/breakdown.py's.
    from accelcal.validate.breakdown import VIEW_OPS, dispatched_op_names
    from accelcal.validate.layers import KVCache, LayerDims, build_layer

    dev = ctx.device
    dims = LayerDims(**EAGER_DISPATCH_DIMS)
    layer = build_layer(dims, torch.float32, dev.torch, seed=0)
    cache = KVCache.empty(dims, 1, _KV_LEN, torch.float32, dev.torch)
    x = torch.randn(1, 1, dims.hidden_size, device=dev.torch)

    def run(i: int) -> object:
        return layer(x, cache, _KV_LEN - 1)

    with torch.inference_mode():
        run(0)  # lazily built tables (rope) outside the count, as the timed warm-up does
        names = dispatched_op_names(lambda: run(0))
    work = sum(1 for n in names if n not in VIEW_OPS)
    return run, len(names), work


def run_eager_dispatch(ctx: SweepContext) -> None:
    """Measure ``eager_dispatch`` (host seconds per work op of a real layer's eager step); one row to ctx.results."""
    dev, cfg = ctx.device, ctx.cfg
    op, params = "eager_dispatch", {"queue_len": _QUEUE_LEN}
    ctx.plan("dispatch", 1)
    ctx.step("dispatch", f"{op} (tiny decoder-layer decode step, {_QUEUE_LEN} per sample)")
    try:
        run, dispatched, work = layer_step_ops(ctx)
        with torch.inference_mode():
            warmup(run, dev, cfg.warmup_s)
            per_step = sample_queue(run, dev, max(cfg.min_reps, 15), _QUEUE_LEN)
    except (RuntimeError, NotImplementedError) as exc:
        ctx.skip(op, op, params, "fp32", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return
    stats = Stats.from_samples([s / work for s in per_step])
    note = f"{dispatched} aten ops dispatched per step, {work} of them launch work; median_s = step time / {work}"
    if stats.noisy:
        note += f"; eager time is noisy: IQR/median = {stats.rel_iqr:.1%}"
    ctx.results.add_stats(op=op, case=op, params={**params, "work_ops": work, "dispatched_ops": dispatched},
                          dtype="fp32", figure="eager", method="queue" if dev.has_events else "host-queue",
                          stats=stats, note=note)
    if ctx.progress is not None:
        ctx.progress(f"    {stats.median_s * 1e6:.2f} us per work op ({dispatched} dispatched / {work} work ops per step)")
