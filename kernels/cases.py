"""What every kernel sweep shares: cache size, memory checks, OOM skips, progress, dtypes.

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"), timing="quick")
    print(ctx.cache_bytes, ctx.free_bytes)

Each op module (gemm, memory, overhead, attention) builds its inputs, then hands
``run(i)`` to :meth:`SweepContext.measure`, which times it through
``kernels.timing.time_op`` and turns out-of-memory into a recorded skip.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from accelcal.results import ResultSet
from accelcal.vocab import dtype_bytes

from .device import Device
from .timing import TimingConfig, rotation_count, time_op

__all__ = [
    "FALLBACK_CACHE_BYTES",
    "SweepContext",
    "TORCH_DTYPES",
    "calls_per_case",
    "element_bytes",
    "graph_replay_note",
    "is_oom",
    "last_level_cache_bytes",
    "replicas",
]

FALLBACK_CACHE_BYTES = 64 << 20
"""Cache size assumed when the device does not say (64 MiB: above every current L2/LLC we rotate against)."""

MEMORY_HEADROOM = 0.8
"""Fraction of free memory a case may use (the allocator and the framework need the rest)."""

TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "tf32": torch.float32,  # storage is fp32; the matmul mode differs
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp8_e4m3": torch.float8_e4m3fn,
}


REPLICA_ALIGN_BYTES = 256
"""Each replica starts on this byte boundary inside its buffer: at least what the allocators give a tensor of
its own (CUDA 256-512 bytes, CPU 64), so kernels that check operand alignment pick the same path."""


def replicas(first: Any, sets: int) -> list:
    """``sets`` input sets with the values of ``first`` (a tensor, or a tuple/list of tensors), each at its own address.

    What a rotated set must differ in is its address, not its values: a kernel reading a copy misses the cache
    as it would reading new random data.  Each tensor position gets one buffer of ``sets`` aligned slots filled
    by one broadcast copy, so tens of thousands of small sets (rotated past a last-level cache of hundreds of MiB,
    :func:`accelcal.kernels.timing.rotation_count`) cost one memcpy, not a random draw or an allocation each.
    """
    if sets < 1:
        raise ValueError(f"sets must be >= 1, got {sets}")

    def block(x: torch.Tensor) -> list[torch.Tensor]:
        if not x.is_contiguous():
            return [x.clone() for _ in range(sets)]
        n, size = x.numel(), x.element_size()
        slot = -(-max(n, 1) * size // REPLICA_ALIGN_BYTES) * REPLICA_ALIGN_BYTES // size
        grid = torch.empty(sets * slot, dtype=x.dtype, device=x.device).view(sets, slot)[:, :n]
        grid.copy_(x.reshape(1, n).expand(sets, n))
        return [grid[i].view(x.shape) for i in range(sets)]

    def build(x: Any) -> list:
        if isinstance(x, torch.Tensor):
            return block(x)
        if isinstance(x, (tuple, list)):
            return [type(x)(parts) for parts in zip(*(build(v) for v in x))] if len(x) else [type(x)() for _ in range(sets)]
        raise TypeError(f"replicas: expected a tensor or a tuple/list of tensors, got {type(x).__name__}")

    return build(first)


def graph_replay_note(device_method: str, queue_len: int, bytes_moved: float | None, cache_bytes: int) -> str:
    """A note for a device figure that may be of cache-resident inputs, else "".

    A graph replays the ``queue_len`` calls it captured, on the same ``queue_len`` input sets every replay,
    whatever the rotation: when those sets together are under twice the cache they may stay in it (a GPU's L2),
    so the figure can be faster than the same kernel streaming its inputs from memory.
    """
    if device_method != "graph" or not bytes_moved or bytes_moved <= 0:
        return ""
    total = queue_len * float(bytes_moved)
    if total >= 2 * cache_bytes:
        return ""
    return (f"graph replays re-read the same {queue_len} input sets (about {total / 2**20:.1f} MiB < twice the "
            f"{cache_bytes / 2**20:.0f} MiB cache): the device figure may be of cache-resident inputs")


def element_bytes(dtype: str) -> int:
    """Element size of ``dtype`` (accelcal.vocab.DTYPE_BYTES); ValueError for an unknown name."""
    return dtype_bytes(dtype)


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1] in mult:
        return int(text[:-1]) * mult[text[-1]]
    return int(text)


def last_level_cache_bytes(device: Device, sysfs: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """L2 on CUDA (device properties), the highest-level data/unified cache on the CPU, else 64 MiB."""
    if device.type == "cuda":
        size = int(getattr(torch.cuda.get_device_properties(device.index), "L2_cache_size", 0) or 0)
        return size if size > 0 else FALLBACK_CACHE_BYTES
    if device.is_cpu:
        best_level, best_size = -1, 0
        for idx in sorted(Path(sysfs).glob("index*")):
            try:
                kind = (idx / "type").read_text().strip()
                level = int((idx / "level").read_text())
                size = _parse_size((idx / "size").read_text())
            except (OSError, ValueError):
                continue
            if kind != "Instruction" and level > best_level:
                best_level, best_size = level, size
        return best_size if best_size > 0 else FALLBACK_CACHE_BYTES
    return FALLBACK_CACHE_BYTES


def is_oom(exc: BaseException) -> bool:
    """Out of memory on any backend (torch.OutOfMemoryError, or a CPU allocator failure)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def calls_per_case(cfg: TimingConfig) -> int:
    """Fewest calls one ``time_op`` makes (warm-up, device queue, eager), for time estimates."""
    return 2 + cfg.min_reps * cfg.queue_len + cfg.min_reps


@dataclass
class SweepContext:
    """The state one kernel-suite run shares across its ops."""

    device: Device
    """Where everything runs."""
    results: ResultSet
    """Where rows go."""
    cfg: TimingConfig
    """How each case is timed."""
    cache_bytes: int
    """Last-level cache size that rotated inputs must exceed (twice over)."""
    free_bytes: int
    """Free device memory at the start of the run."""
    case_budget_s: float = 2.0
    """Cases estimated to take longer than this to measure are skipped and recorded."""
    progress: Callable[[str], Any] | None = print
    """Where progress lines go (None: silent)."""
    counts: dict[str, list[int]] = field(default_factory=dict)
    """op group -> [done, total], for progress lines."""
    bar: Any = None
    """An :class:`accelcal.progress.StageProgress` (a bar per op group with elapsed time and ETA), or None."""

    @classmethod
    def create(cls, device: Device, results: ResultSet, timing: str | TimingConfig = "quick",
               case_budget_s: float = 2.0, progress: Callable[[str], Any] | None = print,
               bar: Any = None) -> "SweepContext":
        cfg = timing if isinstance(timing, TimingConfig) else TimingConfig.preset(timing)
        free, _ = device.memory_bytes()
        return cls(device, results, cfg, last_level_cache_bytes(device), free, case_budget_s, progress, bar=bar)

    # -- memory -----------------------------------------------------------
    def current_free_bytes(self) -> int:
        try:
            return int(self.device.memory_bytes()[0])
        except NotImplementedError:
            return self.free_bytes

    def fit_sets(self, bytes_per_set: int) -> tuple[int, str]:
        """(input sets to rotate, "") or (0, reason) when not even one set fits in free memory."""
        usable = int(self.current_free_bytes() * MEMORY_HEADROOM)
        if bytes_per_set > usable:
            return 0, (f"needs {bytes_per_set / 2**20:.1f} MiB for one input set > {MEMORY_HEADROOM:.0%} of free "
                       f"memory ({usable / 2**20:.1f} MiB usable)")
        # Rotated inputs get at most half the usable memory; one set always fits.
        return rotation_count(bytes_per_set, self.cache_bytes, max(bytes_per_set, usable // 2)), ""

    # -- progress ---------------------------------------------------------
    def plan(self, group: str, total: int) -> None:
        self.counts[group] = [0, total]
        if self.bar is not None:
            self.bar.start(group, total)

    def step(self, group: str, text: str) -> None:
        done_total = self.counts.setdefault(group, [0, 0])
        done_total[0] += 1
        if self.bar is not None:
            self.bar.advance(text)
        if self.progress is not None:
            self.progress(f"[{group} {done_total[0]}/{done_total[1]}] {text}")

    # -- measuring --------------------------------------------------------
    def skip(self, op: str, case: str, params: Mapping[str, Any], dtype: str, reason: str) -> None:
        self.results.add_skip(op=op, case=case, params=params, dtype=dtype, reason=reason)
        if self.bar is not None:
            self.bar.skipped()
        if self.progress is not None:
            self.progress(f"    skipped: {reason}")

    def measure(self, op: str, case: str, params: Mapping[str, Any], dtype: str, build: Callable[[], Callable[[int], object]],
                flop: float | None, bytes_moved: float | None) -> list[dict[str, Any]]:
        """Build inputs with ``build()`` (returns ``run(i)``) and time them; OOM and
        unsupported ops become recorded skips.  Returns the rows added (none when skipped)."""
        try:
            run = build()
            timing = time_op(run, self.device, self.cfg)
        except (RuntimeError, NotImplementedError, MemoryError) as exc:
            # torch reports unsupported dtypes/shapes and OOM this way; the sweep goes on.
            # Anything else (TypeError, ValueError) is a bug here and propagates.
            if is_oom(exc):
                reason = f"out of memory: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
            else:
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no message'}"
            run = None
            self._release()
            self.skip(op, case, params, dtype, reason)
            return []
        run = None
        resident = graph_replay_note(timing.device_method, self.cfg.queue_len, bytes_moved, self.cache_bytes)
        if resident:
            timing = dataclasses.replace(timing, warnings=tuple(timing.warnings) + (resident,))
        rows = self.results.add_timing(op=op, case=case, params=params, dtype=dtype, timing=timing, flop=flop,
                                bytes_moved=bytes_moved)
        if self.progress is not None:
            med = timing.device.median_s
            rate = ""
            if flop and med > 0:
                rate = f"  {flop / med / 1e12:.3f} TFLOP/s"
            elif bytes_moved and med > 0:
                rate = f"  {bytes_moved / med / 1e9:.2f} GB/s"
            self.progress(f"    device {med * 1e6:.1f} us ({timing.device_method}), eager {timing.eager.median_s * 1e6:.1f} us{rate}")
        self._release()
        return rows

    def _release(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
