"""all_gather (tensor form): every rank ends with the n per-rank chunks concatenated in rank order.

    from accelcal.collectives.ops import get_op
    get_op("all_gather").busbw_factor(4)   # 0.75

S = the gathered total, count x elsize with count = n x chunk.  Bus bandwidth
factor (n-1)/n: each rank already holds its own chunk and must receive the
other n-1 chunks of S/n, so its link carries (n-1)/n x S.
"""

from __future__ import annotations

import torch.distributed as dist

from .base import CollectiveOp, compare, filled, pattern

# torch 2.13 renamed the tensor form; older releases only have the old name.
_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class AllGather(CollectiveOp):
    name = "all_gather"
    total_style = True

    def make_buffers(self, count, g, dtype, device, fill):
        chunk = count // g.size
        return {"inp": filled(chunk, g.index, dtype, device, fill), "out": filled(count, g.index, dtype, device, "empty")}

    def run(self, bufs, g):
        _gather(bufs["out"], bufs["inp"], group=g.group)

    def check(self, bufs, g, count, dtype):
        import torch

        chunk = count // g.size
        expected = torch.cat([pattern(q, 0, chunk) for q in range(g.size)])
        return compare(bufs["out"], expected, dtype, "all_gather output")


OP = AllGather()
