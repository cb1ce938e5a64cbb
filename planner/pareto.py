"""The Pareto front of two objectives, one definition for the layout search and the serving search.

    from accelcal.planner.pareto import pareto_front
    front = pareto_front(cands, order=lambda c: (c.request_latency_s,), better=lambda c: c.tokens_per_s_per_device)

Items are walked in ``order`` (best first in the first objective, ties broken by the caller's key); an item
joins the front when its ``better`` value beats every item before it.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

__all__ = ["pareto_front"]

T = TypeVar("T")


def pareto_front(items: Sequence[T], order: Callable[[T], tuple], better: Callable[[T], float]) -> list[T]:
    """Non-dominated items: sorted by ``order``, each kept when ``better(item)`` exceeds the best so far."""
    out: list[T] = []
    best = float("-inf")
    for item in sorted(items, key=order):
        value = better(item)
        if value > best:
            out.append(item)
            best = value
    return out
