"""Time real decoder layers through the one timing core (kernels/timing.py).

    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import TimingConfig
    from accelcal.validate.configs import Case
    from accelcal.validate.layers import LayerDims
    from accelcal.validate.measure import measure_case
    dims = LayerDims(hidden_size=256, heads=8, kv_heads=2, head_dim=32, ffn_size=688)
    m = measure_case(Case("tiny", "decode", 4, 1, 128), dims, "fp32", resolve_device("cpu"), TimingConfig.quick())
    print(m.measured_s, m.method)

The figure compared with the planner is the *device* figure of
:func:`accelcal.kernels.timing.time_op`: layers issued back to back as
consecutive layers of a model run (``queue`` / ``host-queue``), or replayed
from a CUDA graph for graph cases.  The eager single-call figure is kept too.
Inputs, KV caches and (while they fit in the last-level cache) whole layer
copies are rotated so repeats do not run from cache.

On several ranks (TP or DP cases) every rank must issue the same number of
calls, because each call holds all-reduces; :func:`time_op_ranks` times with
the timing core's multi-rank policy (:class:`accelcal.kernels.timing.RankTimer`:
agreed warm-up and repeat counts, back-to-back queues after a barrier, the
per-sample MAX over ranks), the same one the collective harness uses.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from accelcal.kernels.device import Device
from accelcal.kernels.timing import RankTimer, Stats, TimingConfig, rotation_count, time_op

from .configs import Case
from .layers import KVCache, LayerDims, build_layer, layer_weight_bytes

__all__ = ["CaseSkipped", "Measurement", "TORCH_DTYPES", "cpu_threads", "profile_threads", "last_level_cache_bytes", "measure_case", "time_op_ranks"]

TORCH_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""accelcal dtype names a validation layer can run in."""

MAX_LAYER_COPIES = 8
"""Most weight copies rotated for small layers (they stand in for a model's other layers)."""


class CaseSkipped(RuntimeError):
    """A case this device cannot run (out of memory, graph capture unsupported): recorded, not fatal."""


@dataclass(frozen=True)
class Measurement:
    """Measured time of one case (MAX over ranks when it ran on several)."""

    case: Case
    """What ran."""
    measured_s: float
    """Median seconds per layer forward (device figure)."""
    method: str
    """How: ``graph``, ``queue``, ``host-queue`` (one rank) or ``ranks-queue`` / ``ranks-host-queue``."""
    stats: Stats = field(repr=False)
    """Every sample and its statistics."""
    eager_s: float | None = None
    """Median of one call issued alone (single-rank cases only)."""
    rotated_sets: int = 1
    """Input/KV-cache/weight sets rotated."""
    warnings: tuple[str, ...] = ()
    """Noise and fallback notes from the timing core."""


@contextlib.contextmanager
def cpu_threads(threads: int | None):
    """Run the block with torch's intra-op thread count set to ``threads`` (None: leave it), then restore it.

    A CPU profile's device is one rank's share of the cores
    (``identity.threads_per_device``); layers and ops compared with it must
    run with that many threads, single-rank ones included.
    """
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def profile_threads(profile: Any, device: Device) -> int | None:
    """Threads per device the profile's kernels were measured with (CPU profiles; None elsewhere or unset)."""
    if not device.is_cpu:
        return None
    return getattr(profile.identity, "threads_per_device", None)


def last_level_cache_bytes(device: Device) -> int:
    """L2 on a GPU, the largest CPU cache level otherwise (0 when unknown)."""
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device.index), "L2_cache_size", 0))
    best = 0
    for idx in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (idx / "size").read_text().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
        digits = text[:-1] if text[-1:].isalpha() else text
        if digits.isdigit():
            best = max(best, int(digits) * mult)
    return best


def _free_bytes(device: Device) -> int:
    try:
        return device.memory_bytes()[0]
    except NotImplementedError:
        return 1 << 30


def build_runner(case: Case, dims: LayerDims, dtype: str, device: Device, rank: int = 0, group: Any = None,
                 seed: int = 0) -> tuple[Callable[[int], object], int]:
    """``run(i)`` doing one forward of ``case`` on input set ``i``, and the number of sets."""
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"validation dtype {dtype!r} is not supported; expected one of {sorted(TORCH_DTYPES)}")
    tdt = TORCH_DTYPES[dtype]
    tp_rank = rank % case.tp
    batch = case.replica_batch
    layer = build_layer(dims, tdt, device.torch, seed=seed, tp=case.tp, rank=tp_rank, group=group)
    gen = torch.Generator().manual_seed(seed + 1000 + rank // case.tp)
    x_bytes = batch * case.q_len * dims.hidden_size * layer.qkv.element_size()
    kv_bytes = 2 * batch * (dims.kv_heads // case.tp) * case.kv_len * dims.head_dim * layer.qkv.element_size()
    cache = last_level_cache_bytes(device)
    budget = _free_bytes(device) // 4
    nsets = rotation_count(x_bytes + kv_bytes, cache, budget, lo=2, hi=64)
    wbytes = layer_weight_bytes(layer)
    ncopies = rotation_count(wbytes, cache, budget, lo=1, hi=MAX_LAYER_COPIES) if cache else 1
    # Copies share values but not memory: what matters for the cache is the
    # addresses, and cloning is far cheaper than drawing new random numbers.
    # Every copy keeps the layer's non-zero random values (zeros would run faster).
    layers = [layer] + [copy.deepcopy(layer) for _ in range(1, ncopies)]
    nsets = max(nsets, ncopies)
    xs = [torch.randn(batch, case.q_len, dims.hidden_size, generator=gen).to(device=device.torch, dtype=tdt) for _ in range(nsets)]
    first = KVCache.empty(dims, batch, case.kv_len, tdt, device.torch, tp=case.tp, generator=gen)
    caches = [first] + [KVCache(k=first.k.clone(), v=first.v.clone()) for _ in range(1, nsets)]
    pos = case.kv_len - case.q_len

    def run(i: int) -> object:
        j = i % nsets
        return layers[j % ncopies](xs[j], caches[j], pos)

    return run, nsets


def measure_case(case: Case, dims: LayerDims, dtype: str, device: Device, cfg: TimingConfig) -> Measurement:
    """Time one single-rank case with :func:`time_op` (graph replay when ``case.graphs``)."""
    if case.ranks != 1:
        raise ValueError(f"case {case.name} needs {case.ranks} ranks; run it through validate.tp_worker")
    if case.graphs and not device.has_graphs:
        raise ValueError(f"case {case.name} asks for graph replay but device {device.spec} has no graphs")
    try:
        run, nsets = build_runner(case, dims, dtype, device)
        with torch.inference_mode():
            t = time_op(run, device, dataclasses.replace(cfg, use_graphs=case.graphs))
    except torch.OutOfMemoryError as exc:
        raise CaseSkipped(f"out of memory on {device.spec}: {str(exc).splitlines()[0][:160]}") from None
    notes = list(t.warnings)
    if case.graphs and t.device_method != "graph":
        raise CaseSkipped(f"graph capture failed, no graph figure to report ({'; '.join(notes)[:200]})")
    return Measurement(case=case, measured_s=t.device.median_s, method=t.device_method, stats=t.device,
                       eager_s=t.eager.median_s, rotated_sets=nsets, warnings=tuple(notes))


def _max_over_ranks(values: list[float], device: Device, group: Any = None) -> list[float]:
    import torch.distributed as dist

    # nccl reduces device tensors only; gloo takes CPU ones.
    t = torch.tensor(values, dtype=torch.float64, device=device.torch)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return t.tolist()


def time_op_ranks(run: Callable[[int], object], device: Device, cfg: TimingConfig, group: Any = None) -> tuple[Stats, str]:
    """Device-figure samples of ``run`` on every rank, per-sample MAX over ranks.

    Counts are agreed across ranks (a mismatch would leave an all-reduce
    unmatched): :class:`RankTimer` warms up by time until every rank is done and
    sizes the repeats from the slowest rank's per-call time.
    """
    import torch.distributed as dist

    timer = RankTimer(device, cfg, lambda xs: _max_over_ranks(xs, device, group),
                      barrier=lambda: dist.barrier(group=group))
    i = timer.warmup(run)
    samples = timer.queue(run, start=i)
    method = "ranks-queue" if device.has_events else "ranks-host-queue"
    return Stats.from_samples(samples), method


def check_sharded_output(case: Case, dims: LayerDims, device: Device, rank: int, group: Any = None,
                         seed: int = 0) -> float:
    """Max |difference| between this rank's TP forward (with its all-reduces) and the unsharded layer.

    Run outside the timed loop, in fp32, on a short slice of the case (at most
    8 sequences of 16 tokens) so it stays cheap; raises RuntimeError past 1e-3.
    """
    if case.tp == 1:
        return 0.0
    gen = torch.Generator().manual_seed(seed + 99)
    b, s = min(case.replica_batch, 8), min(case.q_len, 16)
    x = torch.randn(b, s, dims.hidden_size, generator=gen).to(device.torch)
    shard = build_layer(dims, torch.float32, device.torch, seed=seed, tp=case.tp, rank=rank % case.tp, group=group)
    full = build_layer(dims, torch.float32, device.torch, seed=seed)
    with torch.inference_mode():
        err = float((shard(x) - full(x)).abs().max())
    if not err <= 1e-3:
        raise RuntimeError(f"case {case.name}: TP={case.tp} rank {rank} output differs from the unsharded layer by {err:.3g} > 1e-3")
    return err


def measure_case_ranks(case: Case, dims: LayerDims, dtype: str, device: Device, cfg: TimingConfig, rank: int,
                       group: Any = None) -> Measurement:
    """Time a TP and/or DP case on this rank; call on every rank of the group at once."""
    run, nsets = build_runner(case, dims, dtype, device, rank=rank, group=group)
    with torch.inference_mode():
        stats, method = time_op_ranks(run, device, cfg, group)
    notes = ()
    if stats.noisy:
        notes = (f"noisy: IQR/median = {stats.iqr_s:.3g}/{stats.median_s:.3g} = {stats.rel_iqr:.1%}",)
    return Measurement(case=case, measured_s=stats.median_s, method=method, stats=stats, rotated_sets=nsets, warnings=notes)
