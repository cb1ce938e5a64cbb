"""One small module per collective, all behind :class:`base.CollectiveOp`.

    from accelcal.collectives.ops import get_op, OPS
    op = get_op("reduce_scatter")
    print(op.busbw_factor(4), op.bytes_moved(op.count_for(4096, 4, 2), 2))
"""

from __future__ import annotations

from .all_gather import OP as _all_gather
from .all_reduce import OP as _all_reduce
from .all_to_all import OP as _all_to_all
from .base import CollectiveOp, GroupCtx
from .broadcast import OP as _broadcast
from .reduce_scatter import OP as _reduce_scatter
from .send_recv import OP as _send_recv, PINGPONG as _pingpong

__all__ = ["CollectiveOp", "GroupCtx", "OPS", "get_op"]

OPS: dict[str, CollectiveOp] = {
    op.name: op for op in (_all_reduce, _all_gather, _reduce_scatter, _all_to_all, _broadcast, _send_recv, _pingpong)
}


def get_op(name: str) -> CollectiveOp:
    if name not in OPS:
        raise ValueError(f"unknown collective {name!r}; expected one of {list(OPS)}")
    return OPS[name]
