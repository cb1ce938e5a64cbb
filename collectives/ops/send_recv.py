"""Point-to-point send/recv between two ranks (the pipeline-stage hand-off): one-way and ping-pong.

    from accelcal.collectives.ops import get_op
    get_op("send_recv").busbw_factor(2)            # 1.0
    get_op("send_recv_pingpong").round_trip        # True: samples are halved

S = the bytes sent, count x elsize.  Bus bandwidth factor 1: the message
crosses one link once.  ``send_recv``: the group's first rank sends, the
second receives; the harness takes the MAX over both ranks, so the time is
the receiver's completion.  ``send_recv_pingpong``: the first rank sends, the
second sends the message back; one run is a round trip and the harness records
half of it (the osu_latency convention), so median_s is a one-way time whose
latency is not hidden by the sender returning early.
"""

from __future__ import annotations

import torch.distributed as dist

from .base import CollectiveOp, compare, filled, pattern


class SendRecv(CollectiveOp):
    name = "send_recv"
    pair_only = True

    def make_buffers(self, count, g, dtype, device, fill):
        # The receiver starts with its own pattern so a lost message is caught.
        return {"x": filled(count, g.index, dtype, device, fill)}

    def run(self, bufs, g):
        a, b = g.ranks
        if g.index == 0:
            dist.send(bufs["x"], dst=b, group=g.group)
        else:
            dist.recv(bufs["x"], src=a, group=g.group)

    def check(self, bufs, g, count, dtype):
        return compare(bufs["x"], pattern(0, 0, count), dtype, f"message received from rank {g.ranks[0]}")


class SendRecvPingPong(SendRecv):
    name = "send_recv_pingpong"
    round_trip = True

    def make_buffers(self, count, g, dtype, device, fill):
        return {"x": filled(count, g.index, dtype, device, fill), "back": filled(count, g.index, dtype, device, fill)}

    def run(self, bufs, g):
        a, b = g.ranks
        if g.index == 0:
            dist.send(bufs["x"], dst=b, group=g.group)
            dist.recv(bufs["back"], src=b, group=g.group)
        else:
            dist.recv(bufs["x"], src=a, group=g.group)
            dist.send(bufs["x"], dst=a, group=g.group)

    def check(self, bufs, g, count, dtype):
        if g.index == 0:
            return compare(bufs["back"], pattern(0, 0, count), dtype, f"reply from rank {g.ranks[1]}")
        return compare(bufs["x"], pattern(0, 0, count), dtype, f"message from rank {g.ranks[0]}")


OP = SendRecv()
PINGPONG = SendRecvPingPong()
