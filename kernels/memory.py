"""Memory bandwidth microbenchmarks: device copy, read-only reduction, write-only fill.

    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.memory import run_memory
    from accelcal.results import ResultSet
    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"))
    run_memory(ctx, sizes_bytes=(4096, 1 << 20, 64 << 20))
    print(ctx.results.frame()[["op", "size_bytes", "figure", "bytes_per_s"]])

Rows: ops ``copy`` (an elementwise kernel, ``neg(src, out=dst)``; bytes = 2·size:
every byte is read once and written once),
``read`` (a sum over the buffer, bytes = size) and ``write`` (a fill, bytes =
size); param ``size_bytes`` is the buffer size.  Buffers are fp32 filled with
random values and rotated so the sets together exceed twice the last-level
cache; sizes that do not fit in free memory are recorded as skips.

Why ``copy`` is not ``dst.copy_(src)``: a contiguous same-dtype ``copy_`` is a
``cudaMemcpyAsync``, and graph capture turns it into a memcpy node that runs at
another speed than the kernel an eager call launches (on an H200, 2.70 TB/s
replayed vs 4.17 TB/s eager for 1 GiB, run 2026-11-26).  The planner costs a
layer's elementwise kernels with this pattern, so it measures an elementwise
kernel, which is the same kernel in a graph and eagerly.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .cases import SweepContext, replicas
from .device import Device

__all__ = ["MEMORY_OPS", "memory_bytes_moved", "make_memory_run", "run_memory"]

MEMORY_OPS: tuple[str, ...] = ("copy", "read", "write")
_ELEMENT_BYTES = 4  # fp32 buffers


def memory_bytes_moved(op: str, size_bytes: int) -> int:
    """Bytes that cross the memory interface per call: copy reads and writes, read and write touch once."""
    if op not in MEMORY_OPS:
        raise ValueError(f"unknown memory op {op!r}; expected one of {list(MEMORY_OPS)}")
    return 2 * size_bytes if op == "copy" else size_bytes


def _buffers_per_set(op: str) -> int:
    return 2 if op == "copy" else 1


def make_memory_run(device: Device, op: str, size_bytes: int, sets: int) -> Callable[[int], object]:
    """Allocate ``sets`` random fp32 buffers (source + destination for copy); ``run(i)`` uses set ``i % sets``."""
    if size_bytes < _ELEMENT_BYTES or size_bytes % _ELEMENT_BYTES:
        raise ValueError(f"size_bytes must be a positive multiple of {_ELEMENT_BYTES}, got {size_bytes}")
    numel = size_bytes // _ELEMENT_BYTES
    bufs = replicas([torch.randn(numel, device=device.torch) for _ in range(_buffers_per_set(op))], sets)
    if op == "copy":
        def run(i: int) -> object:
            src, dst = bufs[i % sets]
            return torch.neg(src, out=dst)
    elif op == "read":
        def run(i: int) -> object:
            return torch.sum(bufs[i % sets][0])
    elif op == "write":
        def run(i: int) -> object:
            # A non-zero fill: zero fills can take special (memset) paths.
            return bufs[i % sets][0].fill_(1.5)
    else:
        raise ValueError(f"unknown memory op {op!r}; expected one of {list(MEMORY_OPS)}")
    return run


def _label(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return f"{size}B"


def run_memory(ctx: SweepContext, sizes_bytes: Sequence[int], ops: Sequence[str] = MEMORY_OPS) -> None:
    """Measure every (op, size); rows and skips go to ``ctx.results``."""
    for op in ops:
        if op not in MEMORY_OPS:
            raise ValueError(f"unknown memory op {op!r}; expected one of {list(MEMORY_OPS)}")
    cases = [(op, s) for op in ops for s in sizes_bytes]
    ctx.plan("memory", len(cases))
    for op, size in cases:
        params = {"size_bytes": size}
        case = f"{op}_{_label(size)}"
        ctx.step("memory", f"{op} size={_label(size)}")
        sets, why = ctx.fit_sets(_buffers_per_set(op) * size)
        if not sets:
            ctx.skip(op, case, params, "fp32", why)
            continue
        ctx.measure(op, case, params, "fp32", lambda: make_memory_run(ctx.device, op, size, sets),
                    flop=None, bytes_moved=memory_bytes_moved(op, size))
