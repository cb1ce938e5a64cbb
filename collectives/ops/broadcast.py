"""broadcast from the group's first rank: every rank ends with the root's buffer.

    from accelcal.collectives.ops import get_op
    get_op("broadcast").busbw_factor(8)   # 1.0

S = the buffer, count x elsize.  Bus bandwidth factor 1: in a pipelined
chain every rank but the root receives S once (and forwards it once), so each
link carries S whatever n is.
"""

from __future__ import annotations

import torch.distributed as dist

from .base import CollectiveOp, compare, filled, pattern


class Broadcast(CollectiveOp):
    name = "broadcast"

    def make_buffers(self, count, g, dtype, device, fill):
        # Non-roots start with their own pattern so a broadcast that did nothing is caught.
        return {"x": filled(count, g.index, dtype, device, fill)}

    def run(self, bufs, g):
        dist.broadcast(bufs["x"], src=g.ranks[0], group=g.group)

    def check(self, bufs, g, count, dtype):
        return compare(bufs["x"], pattern(0, 0, count), dtype, f"broadcast from rank {g.ranks[0]}")


OP = Broadcast()
