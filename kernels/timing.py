"""The one timing core: every benchmark in accelcal measures time through here.

    import torch
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import TimingConfig, time_op

    dev = resolve_device("cpu")
    bufs = [(torch.randn(512, 512), torch.randn(512, 512)) for _ in range(4)]
    t = time_op(lambda i: torch.mm(*bufs[i % len(bufs)]), dev, TimingConfig.quick())
    print(t.device.median_s, t.eager.median_s, t.device_method)

Method:

* ``run(i)`` issues one call of the op on input set ``i``; callers rotate
  several input sets with ``i % n`` so repeats do not measure the cache
  (:func:`rotation_count` sizes the set).
* Warm-up is by time, not count (first calls compile, allocate, set up).
* Two labelled figures per op.  **device** time: the op replayed from a CUDA
  graph where the backend has graphs, else a long back-to-back queue between two
  events (``queue``); on the CPU, a back-to-back queue on the host clock
  (``host-queue``).  **eager** time: one call bracketed as a user's Python would
  issue it (events around one call, or the host clock on the CPU), which
  includes the host's launch latency.
* Every sample is kept; statistics are median, quartiles/IQR, min, max, mean,
  n and coefficient of variation, with a warning when IQR/median > 10%.
* On several ranks (collectives, TP layers) :class:`RankTimer` is the one
  policy: every rank issues the same calls, the ranks agree when the time-based
  warm-up is over and size the repeats from the slowest rank, a barrier
  precedes each sample, and each sample is the MAX over ranks.  It takes the
  all-reduce-MAX and barrier as callables, so this module imports no
  torch.distributed.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

from .device import Device

__all__ = [
    "METHOD_VERSION",
    "NOISY_REL_IQR",
    "OpTiming",
    "RankTimer",
    "Stats",
    "TimingConfig",
    "reps_for",
    "ROTATION_SETS_MAX",
    "rotation_count",
    "sample_eager",
    "sample_graph",
    "sample_queue",
    "time_op",
    "warmup",
]

METHOD_VERSION = 2
"""Bumped whenever how time is measured changes; stored with every result and profile.  2 (2026-12-05): input
sets rotate past twice the last-level cache whatever their size (:func:`rotation_count`), where 1 stopped at 64."""

NOISY_REL_IQR = 0.10
"""IQR/median above this marks a measurement as noisy."""

RunFn = Callable[[int], object]
Hook = Callable[[], object] | None


@dataclass(frozen=True)
class TimingConfig:
    """How long and how often to measure one op."""

    warmup_s: float = 0.1
    """Warm-up budget per op in seconds (by time, not by count)."""
    budget_s: float = 0.5
    """Measuring budget per figure in seconds; reps are derived from it."""
    min_reps: int = 7
    """Fewest samples per figure, whatever the budget."""
    max_reps: int = 200
    """Most samples per figure."""
    queue_len: int = 10
    """Calls per device-time sample (graph or back-to-back queue)."""
    until_stable: bool = False
    """Keep adding samples until IQR/median <= ``stable_rel_iqr`` or ``stable_budget_s`` is spent."""
    stable_rel_iqr: float = NOISY_REL_IQR
    """Target IQR/median when ``until_stable`` is set."""
    stable_budget_s: float = 2.0
    """Extra time allowed for ``until_stable``, in seconds."""
    use_graphs: bool = True
    """Replay from a device graph for the device figure where the backend supports it."""

    @classmethod
    def quick(cls) -> "TimingConfig":
        """Short budgets for a quick sweep (CI, smoke runs)."""
        return cls(warmup_s=0.02, budget_s=0.08, min_reps=5, max_reps=50, queue_len=5)

    @classmethod
    def full(cls) -> "TimingConfig":
        """Long budgets and stability repeats for overnight runs."""
        return cls(warmup_s=0.25, budget_s=1.0, min_reps=15, max_reps=1000, queue_len=20, until_stable=True)

    @classmethod
    def preset(cls, name: str) -> "TimingConfig":
        presets = {"quick": cls.quick, "default": cls, "full": cls.full}
        if name not in presets:
            raise ValueError(f"unknown timing preset {name!r}; expected one of {sorted(presets)}")
        return presets[name]()


@dataclass(frozen=True)
class Stats:
    """Summary of the kept samples of one figure; times in seconds per call."""

    samples_s: tuple[float, ...] = field(repr=False)
    """Every kept sample, in measurement order."""
    n: int
    """Number of samples."""
    median_s: float
    """Median sample."""
    q1_s: float
    """First quartile."""
    q3_s: float
    """Third quartile."""
    iqr_s: float
    """Interquartile range, q3 - q1."""
    min_s: float
    """Fastest sample."""
    max_s: float
    """Slowest sample."""
    mean_s: float
    """Arithmetic mean of the samples (times are averaged, never rates)."""
    stddev_s: float
    """Sample standard deviation (0 for one sample)."""
    cv: float
    """Coefficient of variation, stddev / mean."""

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> "Stats":
        xs = [float(x) for x in samples]
        if not xs:
            raise ValueError("no timing samples: at least one is needed")
        bad = [x for x in xs if not math.isfinite(x) or x < 0]
        if bad:
            raise ValueError(f"timing samples must be finite and >= 0 seconds; got {bad[:3]}")
        ordered = sorted(xs)
        q1, med, q3 = _quartiles(ordered)
        mean = statistics.fmean(xs)
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return cls(
            samples_s=tuple(xs),
            n=len(xs),
            median_s=med,
            q1_s=q1,
            q3_s=q3,
            iqr_s=q3 - q1,
            min_s=ordered[0],
            max_s=ordered[-1],
            mean_s=mean,
            stddev_s=sd,
            cv=sd / mean if mean > 0 else 0.0,
        )

    @property
    def rel_iqr(self) -> float:
        """IQR / median, the noise figure (NOISY_REL_IQR marks a measurement noisy)."""
        return self.iqr_s / self.median_s if self.median_s > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.rel_iqr > NOISY_REL_IQR

    def summary(self) -> dict[str, float]:
        """The statistics without the samples, for tables and records."""
        d = asdict(self)
        d.pop("samples_s")
        d["rel_iqr"] = self.rel_iqr
        return d


def _quartiles(ordered: Sequence[float]) -> tuple[float, float, float]:
    # Linear interpolation between closest ranks (numpy's default), so that
    # small samples get stable quartiles.
    def q(p: float) -> float:
        pos = p * (len(ordered) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return q(0.25), q(0.5), q(0.75)


@dataclass(frozen=True)
class OpTiming:
    """Both labelled figures of one op."""

    device: Stats
    """Per-call time with launch latency hidden (graph replay or back-to-back queue)."""
    eager: Stats
    """Per-call time of one call issued alone, launch latency included."""
    device_method: str
    """How ``device`` was measured: ``graph``, ``queue`` or ``host-queue``."""
    eager_method: str
    """How ``eager`` was measured: ``events`` or ``host``."""
    warnings: tuple[str, ...] = ()
    """Noise and fallback notes worth showing a user."""


ROTATION_SETS_MAX = 1 << 16
"""Most input sets one case rotates: enough for 4 KiB sets to pass twice a 128 MiB cache, few enough that
making them (one random set, the rest copies: :func:`accelcal.kernels.cases.replicas`) stays a fraction of a
second."""


def rotation_count(bytes_per_set: int, cache_bytes: int, budget_bytes: int, lo: int = 2,
                   hi: int = ROTATION_SETS_MAX) -> int:
    """How many input sets to rotate so the sets together exceed twice the cache.

    Capped by ``budget_bytes`` (free memory set aside for inputs) and by ``hi``;
    at least ``lo`` whenever the budget allows, and never below 1.  The cap is on
    bytes first: a fixed count of sets (64 until 2026-12-05) left every small case
    resident in a large last-level cache (480 MiB on the Intel VM of
    benchmarks/RESULTS.md), so repeats measured the cache after all.
    """
    if bytes_per_set <= 0:
        raise ValueError(f"bytes_per_set must be > 0, got {bytes_per_set}")
    want = max(lo, math.ceil(2 * cache_bytes / bytes_per_set))
    fit = max(1, budget_bytes // bytes_per_set)
    return int(max(1, min(want, hi, fit)))


def _host_now() -> float:
    return time.perf_counter()


def warmup(run: RunFn, device: Device, warmup_s: float, start: int = 0) -> tuple[int, float]:
    """Call ``run`` until ``warmup_s`` has passed (at least twice).

    Returns (next input index, rough seconds per synchronised call) so callers
    can size the measurement.
    """
    i = start
    t0 = _host_now()
    calls = 0
    last = 0.0
    while True:
        c0 = _host_now()
        run(i)
        device.synchronize()
        last = _host_now() - c0
        i += 1
        calls += 1
        if calls >= 2 and _host_now() - t0 >= warmup_s:
            break
    return i, last


def _elapsed_s(device: Device, body: Callable[[], object]) -> float:
    """Seconds ``body`` takes: device events around it on an accelerator, the host clock on the CPU."""
    if device.has_events:
        e0, e1 = device.event(), device.event()
        e0.record()
        body()
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1) / 1e3
    t0 = _host_now()
    body()
    return _host_now() - t0


def sample_eager(run: RunFn, device: Device, reps: int, start: int = 0, before_each: Hook = None) -> list[float]:
    """``reps`` samples of one call each, device idle before every call.

    Accelerators: events recorded around the call (what a user's eager Python
    sees, launch latency included).  CPU: the host clock.
    """
    out: list[float] = []
    for r in range(reps):
        if before_each is not None:
            before_each()
        device.synchronize()
        out.append(_elapsed_s(device, lambda: run(start + r)))
    return out


def sample_queue(
    run: RunFn, device: Device, reps: int, queue_len: int, start: int = 0, before_each: Hook = None
) -> list[float]:
    """``reps`` samples, each ``queue_len`` calls issued back to back, per call.

    On an accelerator the queue keeps the device busy so host launch latency is
    hidden; on the CPU this is the steady-state cost of repeated calls.
    """
    out: list[float] = []
    for r in range(reps):
        first = start + r * queue_len
        if before_each is not None:
            before_each()
        device.synchronize()

        def queue() -> None:
            for j in range(queue_len):
                run(first + j)

        out.append(_elapsed_s(device, queue) / queue_len)
    return out


def sample_graph(run: RunFn, device: Device, reps: int, queue_len: int, start: int = 0) -> list[float]:
    """``reps`` replays of a graph holding ``queue_len`` captured calls, per call.

    Raises RuntimeError where the op or backend cannot be captured; callers
    fall back to :func:`sample_queue`.
    """
    if not device.has_graphs:
        raise RuntimeError(f"device {device.spec} has no graph capture")
    import torch

    stream = torch.cuda.Stream(device.torch)
    stream.wait_stream(torch.cuda.current_stream(device.torch))
    # Some ops allocate workspaces on first use; run them once on the capture stream.
    with torch.cuda.stream(stream):
        for j in range(min(queue_len, 3)):
            run(start + j)
    torch.cuda.current_stream(device.torch).wait_stream(stream)
    device.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        for j in range(queue_len):
            run(start + j)
    graph.replay()
    device.synchronize()
    out = [_elapsed_s(device, graph.replay) / queue_len for _ in range(reps)]
    del graph
    return out


def reps_for(per_call_s: float, cfg: TimingConfig, calls_per_sample: int) -> int:
    """Samples to take of a ``per_call_s`` call timed ``calls_per_sample`` calls per sample: the budget's worth,
    clamped to [min_reps, max_reps].  The one repeat rule of every timer (single- and multi-rank)."""
    per_sample = max(per_call_s * calls_per_sample, 1e-7)
    return int(min(cfg.max_reps, max(cfg.min_reps, cfg.budget_s // per_sample)))


class RankTimer:
    """The multi-rank timing policy: the same calls on every rank, agreed warm-up, per-sample MAX over ranks.

        t = RankTimer(device, cfg, world_max=lambda xs: all_reduce_max(xs), barrier=lambda: dist.barrier(group=g))
        i = t.warmup(run)                    # agreed; t.per_call_s = slowest rank's seconds per call
        pipelined = t.queue(run, start=i)    # MAX-over-ranks samples, a barrier before each
        blocking = t.eager(run, start=i)

    ``world_max`` takes a list of floats and returns their elementwise MAX over every
    rank taking part (an all-reduce), so all ranks must call each method together.
    A rank that joins the agreement but not the timed group passes ``active=False``
    (and a no-op ``run``: warm-up rounds still call it): it takes no samples,
    contributes zeros, and still takes part in every all-reduce.
    ``until_stable`` is not used here: extra samples would need one more agreement
    round per chunk, and fixed counts keep every rank in step.
    """

    def __init__(self, device: Device, cfg: TimingConfig, world_max: Callable[[list[float]], list[float]],
                 barrier: Hook = None, active: bool = True) -> None:
        self.device, self.cfg, self.world_max, self.barrier, self.active = device, cfg, world_max, barrier, active
        self.per_call_s = 0.0
        """Slowest rank's seconds per synchronised call, from the last warm-up round (sizes the repeats)."""

    def warmup(self, run: RunFn, start: int = 0) -> int:
        """Warm up by time: rounds of two calls on every rank until no active rank has ``warmup_s`` left.

        Returns the next input index.  Every rank runs the same number of rounds (the
        stop is agreed by the MAX), so collectives inside ``run`` always find their peers.
        """
        i, t0 = start, _host_now()
        while True:
            i, per = warmup(run, self.device, 0.0, start=i)  # exactly two calls on every rank
            not_done = 1.0 if (self.active and _host_now() - t0 < self.cfg.warmup_s) else 0.0
            not_done, self.per_call_s = self.world_max([not_done, per])
            if not_done < 0.5:
                return i

    def queue(self, run: RunFn, start: int) -> list[float]:
        """Back-to-back queues of ``queue_len`` calls (:func:`sample_queue`), MAX over ranks."""
        reps = reps_for(self.per_call_s, self.cfg, self.cfg.queue_len)
        return self._max(lambda: sample_queue(run, self.device, reps, self.cfg.queue_len, start=start,
                                              before_each=self.barrier), reps)

    def graph(self, run: RunFn, start: int) -> list[float]:
        """Graph replays of ``queue_len`` captured calls (:func:`sample_graph`), MAX over ranks.

        Every rank must have agreed beforehand that the op can be captured.
        """
        reps = reps_for(self.per_call_s, self.cfg, self.cfg.queue_len)
        return self._max(lambda: sample_graph(run, self.device, reps, self.cfg.queue_len, start=start), reps)

    def eager(self, run: RunFn, start: int) -> list[float]:
        """Single calls (:func:`sample_eager`), a barrier before each, MAX over ranks."""
        reps = reps_for(self.per_call_s, self.cfg, 1)
        return self._max(lambda: sample_eager(run, self.device, reps, start=start, before_each=self.barrier), reps)

    def _max(self, sample: Callable[[], list[float]], reps: int) -> list[float]:
        return self.world_max(sample() if self.active else [0.0] * reps)


def _until_stable(sampler: Callable[[int], list[float]], first: list[float], cfg: TimingConfig, per_sample_s: float) -> list[float]:
    samples = list(first)
    if not cfg.until_stable:
        return samples
    deadline = _host_now() + cfg.stable_budget_s
    chunk = max(cfg.min_reps, 5)
    while Stats.from_samples(samples).rel_iqr > cfg.stable_rel_iqr and _host_now() + chunk * per_sample_s < deadline:
        samples.extend(sampler(chunk))
    return samples


def time_op(run: RunFn, device: Device, cfg: TimingConfig | None = None) -> OpTiming:
    """Measure ``run`` on ``device``: both figures, every sample kept."""
    cfg = cfg or TimingConfig()
    i, per_call = warmup(run, device, cfg.warmup_s)
    notes: list[str] = []

    device_method = "host-queue"
    device_samples: list[float] | None = None
    reps = reps_for(per_call, cfg, cfg.queue_len)
    if device.has_graphs and cfg.use_graphs:
        try:
            device_samples = sample_graph(run, device, reps, cfg.queue_len, start=i)
            device_method = "graph"

            def more(k: int) -> list[float]:
                return sample_graph(run, device, k, cfg.queue_len, start=i)

        except Exception as exc:  # capture is unsupported for many ops/backends
            notes.append(f"graph capture failed ({type(exc).__name__}: {str(exc)[:120]}); device time from a queue")
            device.synchronize()
    if device_samples is None:
        device_method = "queue" if device.has_events else "host-queue"
        device_samples = sample_queue(run, device, reps, cfg.queue_len, start=i)

        def more(k: int) -> list[float]:
            return sample_queue(run, device, k, cfg.queue_len, start=i)

    device_samples = _until_stable(more, device_samples, cfg, per_call * cfg.queue_len)
    i += cfg.queue_len

    ereps = reps_for(per_call, cfg, 1)
    eager_samples = sample_eager(run, device, ereps, start=i)
    eager_samples = _until_stable(lambda k: sample_eager(run, device, k, start=i), eager_samples, cfg, per_call)

    dev_stats = Stats.from_samples(device_samples)
    eager_stats = Stats.from_samples(eager_samples)
    for label, st in (("device", dev_stats), ("eager", eager_stats)):
        if st.noisy:
            notes.append(f"{label} time is noisy: IQR/median = {st.iqr_s:.3g}/{st.median_s:.3g} = {st.rel_iqr:.1%} > {NOISY_REL_IQR:.0%}")
    return OpTiming(
        device=dev_stats,
        eager=eager_stats,
        device_method=device_method,
        eager_method="events" if device.has_events else "host",
        warnings=tuple(notes),
    )

