"""all_reduce (sum, in place): every rank ends with the elementwise sum of all buffers.

    from accelcal.collectives.ops import get_op
    get_op("all_reduce").busbw_factor(8)   # 1.75

S = the per-rank buffer (count x elsize).  Bus bandwidth factor 2(n-1)/n: a
ring all-reduce is a reduce-scatter then an all-gather; in each phase every
rank sends (n-1) chunks of S/n, so each rank's link carries 2(n-1)/n x S, and
busbw = algbw x 2(n-1)/n is comparable with the link's raw speed whatever n is.
"""

from __future__ import annotations

import torch.distributed as dist

from .base import CollectiveOp, compare, filled, pattern


class AllReduce(CollectiveOp):
    name = "all_reduce"

    def make_buffers(self, count, g, dtype, device, fill):
        return {"x": filled(count, g.index, dtype, device, fill)}

    def run(self, bufs, g):
        dist.all_reduce(bufs["x"], group=g.group)

    def check(self, bufs, g, count, dtype):
        expected = sum(pattern(q, 0, count) for q in range(g.size))
        return compare(bufs["x"], expected, dtype, "all_reduce sum")


OP = AllReduce()
