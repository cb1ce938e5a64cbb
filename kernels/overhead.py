"""Launch and synchronisation overheads: the fixed costs the planner adds per kernel.

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.overhead import run_overheads
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_overheads(ctx, queue_len=50)
    print(ctx.results.frame()[["op", "figure", "method", "median_s", "status", "reason"]])

Ops (median_s is the cost per kernel or per call):

* ``launch_eager``: tiny kernels issued back to back from Python, per kernel
  (on an accelerator the device idles waiting for launches, so the span between
  two events over the queue is the host's launch rate).  figure ``eager``.
* ``launch_sync``: one tiny kernel plus a synchronise, back to back, per round
  trip.  figure ``eager``.
* ``sync``: synchronising an idle device, per call (a no-op on the CPU, which
  has no asynchronous queue: the figure is then Python call overhead).  figure ``eager``.
* ``graph_kernel``: per kernel inside a replayed graph of ``queue_len`` tiny
  kernels.  figure ``device``; a recorded skip where the backend has no graphs.

All use the timing core's samplers (``kernels.timing``); nothing here owns a clock.
"""

from __future__ import annotations

from typing import Callable

import torch

from .cases import SweepContext
from .device import Device
from .timing import Stats, sample_graph, sample_queue, warmup

__all__ = ["OVERHEAD_OPS", "make_tiny_run", "run_overheads"]

OVERHEAD_OPS: tuple[str, ...] = ("launch_eager", "launch_sync", "sync", "graph_kernel")
_TINY_SETS = 4


def make_tiny_run(device: Device) -> Callable[[int], object]:
    """``run(i)``: one elementwise kernel on a one-element tensor (launch cost, no work), rotating 4 tensors."""
    bufs = [torch.randn(1, device=device.torch) for _ in range(_TINY_SETS)]

    def run(i: int) -> object:
        return bufs[i % _TINY_SETS].mul_(1.0001)

    return run


def run_overheads(ctx: SweepContext, queue_len: int = 100, ops: tuple[str, ...] = OVERHEAD_OPS) -> None:
    """Measure each overhead op; rows (and the graph skip where unsupported) go to ``ctx.results``."""
    if queue_len < 1:
        raise ValueError(f"queue_len must be >= 1, got {queue_len}")
    for op in ops:
        if op not in OVERHEAD_OPS:
            raise ValueError(f"unknown overhead op {op!r}; expected one of {list(OVERHEAD_OPS)}")
    dev, cfg = ctx.device, ctx.cfg
    reps = max(cfg.min_reps, 15)
    # Round trips are far slower than queued launches; fewer per sample keeps the budget.
    sync_len = max(1, queue_len // 10)
    tiny = make_tiny_run(dev)

    def tiny_then_sync(i: int) -> object:
        out = tiny(i)
        dev.synchronize()
        return out

    def idle_sync(i: int) -> object:
        dev.synchronize()
        return None

    queued = "queue" if dev.has_events else "host-queue"
    plan: dict[str, tuple[str, str, Callable[[], list[float]]]] = {
        "launch_eager": ("eager", queued, lambda: sample_queue(tiny, dev, reps, queue_len)),
        "launch_sync": ("eager", queued, lambda: sample_queue(tiny_then_sync, dev, reps, sync_len)),
        "sync": ("eager", queued, lambda: sample_queue(idle_sync, dev, reps, sync_len)),
        "graph_kernel": ("device", "graph", lambda: sample_graph(tiny, dev, reps, queue_len)),
    }
    ctx.plan("overhead", len(ops))
    warmup(tiny, dev, cfg.warmup_s)
    for op in ops:
        figure, method, sampler = plan[op]
        params = {"queue_len": sync_len if op in ("launch_sync", "sync") else queue_len}
        ctx.step("overhead", f"{op} ({params['queue_len']} per sample x {reps} samples)")
        if op == "graph_kernel" and not dev.has_graphs:
            ctx.skip(op, op, params, "fp32", f"device {dev.spec} ({dev.type}) has no graph capture; graphs are CUDA/HIP only")
            continue
        try:
            stats = Stats.from_samples(sampler())
        except (RuntimeError, NotImplementedError) as exc:
            ctx.skip(op, op, params, "fp32", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        note = "; sync is a no-op on the CPU (no asynchronous queue)" if (op == "sync" and dev.is_cpu) else ""
        if stats.noisy:
            note += f"; {figure} time is noisy: IQR/median = {stats.rel_iqr:.1%}"
        ctx.results.add_stats(op=op, case=op, params=params, dtype="fp32", figure=figure, method=method, stats=stats,
                              note=note.lstrip("; "))
        if ctx.progress is not None:
            ctx.progress(f"    {stats.median_s * 1e6:.2f} us per call ({method})")
