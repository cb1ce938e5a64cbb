"""all_to_all (single-tensor form): chunk p of rank q's input lands as chunk q of rank p's output.

    from accelcal.collectives.ops import get_op
    get_op("all_to_all").busbw_factor(8)   # 0.875

The MoE dispatch/combine pattern.  S = the per-rank buffer, count x elsize with
count = n x chunk (nccl-tests: count x n x elsize with count per peer).  Bus
bandwidth factor (n-1)/n: a rank keeps its own chunk and exchanges the other
n-1 chunks of S/n.  The count is rounded to a multiple of n because gloo's
all_to_all_single silently returns garbage otherwise.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .base import CollectiveOp, compare, filled, pattern


class AllToAll(CollectiveOp):
    name = "all_to_all"
    total_style = True

    def make_buffers(self, count, g, dtype, device, fill):
        return {"inp": filled(count, g.index, dtype, device, fill), "out": filled(count, g.index, dtype, device, "empty")}

    def run(self, bufs, g):
        dist.all_to_all_single(bufs["out"], bufs["inp"], group=g.group)

    def check(self, bufs, g, count, dtype):
        chunk = count // g.size
        expected = torch.cat([pattern(q, g.index * chunk, chunk) for q in range(g.size)])
        return compare(bufs["out"], expected, dtype, "all_to_all output")


OP = AllToAll()
