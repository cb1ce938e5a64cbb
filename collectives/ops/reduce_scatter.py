"""reduce_scatter (tensor form, sum): rank i ends with chunk i of the elementwise sum of all inputs.

    from accelcal.collectives.ops import get_op
    get_op("reduce_scatter").busbw_factor(4)   # 0.75

S = the per-rank input, count x elsize with count = n x chunk.  Bus bandwidth
factor (n-1)/n: in a ring each rank passes on n-1 partial chunks of S/n, so
its link carries (n-1)/n x S.
"""

from __future__ import annotations

import torch.distributed as dist

from .base import CollectiveOp, compare, filled, pattern

_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


class ReduceScatter(CollectiveOp):
    name = "reduce_scatter"
    total_style = True

    def make_buffers(self, count, g, dtype, device, fill):
        chunk = count // g.size
        return {"inp": filled(count, g.index, dtype, device, fill), "out": filled(chunk, g.index, dtype, device, "empty")}

    def run(self, bufs, g):
        _scatter(bufs["out"], bufs["inp"], group=g.group)

    def check(self, bufs, g, count, dtype):
        chunk = count // g.size
        expected = sum(pattern(q, g.index * chunk, chunk) for q in range(g.size))
        return compare(bufs["out"], expected, dtype, f"reduce_scatter chunk {g.index}")


OP = ReduceScatter()
