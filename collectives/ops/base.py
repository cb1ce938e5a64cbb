"""The one interface every collective module implements (the nccl-tests shape).

    from accelcal.collectives.ops import get_op
    op = get_op("all_gather")
    count = op.count_for(1000, n=3, elsize=4)    # 750: rounded to a multiple of n
    s = op.bytes_moved(count, elsize=4)           # S in the nccl-tests convention
    f = op.busbw_factor(3)                        # (n-1)/n
    bufs = op.make_buffers(count, group, dtype, device, fill="pattern")
    op.run(bufs, group); err = op.check(bufs, group, count)   # None when right

``count`` is S / element size, as nccl-tests prints it: the per-rank buffer for
all_reduce/broadcast/send_recv, the total across ranks (n chunks) for
all_gather/reduce_scatter/all_to_all.  Correctness data is rank-patterned:
element j of rank r holds ((7 r + j) mod 13) + 1, small integers that every
dtype down to fp8 e4m3 holds exactly, so a gathered chunk from the wrong rank
or a missed reduction shows up as a wrong value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from accelcal.vocab import busbw_factor

__all__ = ["CollectiveOp", "GroupCtx", "TOLERANCE", "pattern", "compare"]


@dataclass
class GroupCtx:
    """The process group a case runs on, as seen from this rank."""

    group: Any
    """torch.distributed ProcessGroup (None means the world)."""
    ranks: tuple[int, ...]
    """Global ranks in the group, in group-rank order."""
    index: int
    """This rank's position in ``ranks`` (its group rank)."""

    @property
    def size(self) -> int:
        return len(self.ranks)


TOLERANCE: dict[torch.dtype, float] = {
    torch.float32: 0.0,
    torch.bfloat16: 2.0 ** -8,
    torch.float16: 2.0 ** -11,
    # A ring reduction in fp8 rounds at every hop.
    torch.float8_e4m3fn: 0.13,
}
"""Relative tolerance per dtype; the patterned sums are exact up to these rounding steps."""


def pattern(group_rank: int, start: int, length: int) -> torch.Tensor:
    """Rank-patterned values (float64) for element indices start .. start+length-1."""
    idx = torch.arange(start, start + length, dtype=torch.float64)
    return torch.remainder(7.0 * group_rank + idx, 13.0) + 1.0


def compare(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> str | None:
    """None when ``got`` matches ``expected`` within the dtype's tolerance, else a message naming the first bad element."""
    g = got.detach().to("cpu").to(torch.float64).reshape(-1)
    e = expected.reshape(-1)
    if g.numel() != e.numel():
        return f"{what}: got {g.numel()} elements, expected {e.numel()}"
    tol = TOLERANCE.get(dtype, 1e-2)
    bad = (g - e).abs() > tol * e.abs() + 1e-12
    bad |= ~torch.isfinite(g)
    if bool(bad.any()):
        j = int(bad.nonzero()[0, 0])
        return (f"{what}: element {j} is {g[j].item():g}, expected {e[j].item():g} "
                f"({int(bad.sum())} of {e.numel()} elements wrong)")
    return None


class CollectiveOp:
    """One collective: bytes moved, bus-bandwidth factor, inputs, run, check."""

    name: str = ""
    """Op name used in records (``all_reduce``, ...)."""
    total_style: bool = False
    """True when S counts all n chunks (all_gather, reduce_scatter, all_to_all)."""
    pair_only: bool = False
    """True for point-to-point ops, which run on groups of exactly two ranks."""
    round_trip: bool = False
    """True when one ``run`` is a round trip; the harness halves the samples."""

    def count_for(self, size_bytes: int, n: int, elsize: int) -> int:
        """Element count for a requested size, rounded down so it divides evenly (at least one element per rank)."""
        if size_bytes <= 0:
            raise ValueError(f"size_bytes must be > 0, got {size_bytes}")
        if self.total_style:
            chunk = max(1, size_bytes // (elsize * n))
            return chunk * n
        return max(1, size_bytes // elsize)

    def bytes_moved(self, count: int, elsize: int) -> int:
        """S in the nccl-tests convention: count x element size."""
        return count * elsize

    def busbw_factor(self, n: int) -> float:
        """busbw / algbw over ``n`` ranks (nccl-tests convention, accelcal.vocab.BUSBW_FACTORS)."""
        return busbw_factor(self.name, n)

    def make_buffers(self, count: int, g: GroupCtx, dtype: torch.dtype, device: torch.device, fill: str) -> dict:
        raise NotImplementedError

    def run(self, bufs: dict, g: GroupCtx) -> None:
        raise NotImplementedError

    def check(self, bufs: dict, g: GroupCtx, count: int, dtype: torch.dtype) -> str | None:
        raise NotImplementedError


def filled(length: int, group_rank: int, dtype: torch.dtype, device: torch.device, fill: str, start: int = 0) -> torch.Tensor:
    """A 1-D buffer: rank-patterned (``pattern``) or random normal (``random``, for timing: never constants)."""
    if fill == "pattern":
        return pattern(group_rank, start, length).to(dtype).to(device)
    if fill == "random":
        return torch.randn(length, dtype=torch.float32, device=device).to(dtype)
    if fill == "empty":
        return torch.empty(length, dtype=dtype, device=device)
    raise ValueError(f"fill must be pattern, random or empty, got {fill!r}")
