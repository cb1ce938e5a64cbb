"""The ranking check: does the planner order TP=k vs TP=1 x DP=k the way the real layers do?

    from accelcal.validate.ranking import Ranking, format_rankings
    r = Ranking("decode", ["TP=2", "TP=1 x DP=2"], measured_s=[3.0e-3, 1.0e-3], predicted_s=[2.5e-3, 1.2e-3])
    print(r.measured_order, r.predicted_order, r.agree, r.separated)
    print(format_rankings([r]))

Both layouts use the same ``k`` devices and the same global batch, so per
layer step the faster one also has the higher throughput; the ranking is by
time per layer step (MAX over ranks).  With the measured quartiles given, a
ranking whose two fastest layouts' interquartile ranges overlap is reported as
too close to rank rather than as agreeing or disagreeing: the measurement
cannot order them, so it cannot judge the planner's order either.  Imports no
torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelcal.units import fmt_time_s

__all__ = ["Ranking", "format_rankings", "layout_label"]


def layout_label(tp: int, dp: int) -> str:
    return f"TP={tp}" if dp == 1 else f"TP={tp} x DP={dp}"


@dataclass(frozen=True)
class Ranking:
    """Measured and predicted times of the competing layouts for one phase."""

    phase: str
    """prefill or decode."""
    labels: list[str]
    """Layout names, e.g. ``TP=2`` and ``TP=1 x DP=2``."""
    measured_s: list[float]
    """Measured seconds per layer step, per layout."""
    predicted_s: list[float]
    """Planner's seconds per layer step, per layout."""
    measured_q1_s: list[float] | None = None
    """First quartile of each layout's measured samples (None: medians only, every ranking counts)."""
    measured_q3_s: list[float] | None = None
    """Third quartile of each layout's measured samples."""

    def __post_init__(self) -> None:
        if not (len(self.labels) == len(self.measured_s) == len(self.predicted_s) >= 2):
            raise ValueError(f"ranking {self.phase}: need >= 2 layouts with one measured and one predicted time each; got "
                             f"{len(self.labels)} labels, {len(self.measured_s)} measured, {len(self.predicted_s)} predicted")

    @staticmethod
    def _order(labels: list[str], times: list[float]) -> list[str]:
        return [lab for _, lab in sorted(zip(times, labels))]

    @property
    def measured_order(self) -> list[str]:
        """Layouts fastest first, by measurement."""
        return self._order(self.labels, self.measured_s)

    @property
    def predicted_order(self) -> list[str]:
        """Layouts fastest first, by the planner."""
        return self._order(self.labels, self.predicted_s)

    @property
    def agree(self) -> bool:
        return self.measured_order == self.predicted_order

    @property
    def separated(self) -> bool:
        """The measured fastest layout's third quartile is below the runner-up's first quartile."""
        if self.measured_q1_s is None or self.measured_q3_s is None:
            return True
        order = sorted(range(len(self.labels)), key=lambda i: self.measured_s[i])
        a, b = order[0], order[1]
        return self.measured_q3_s[a] < self.measured_q1_s[b]

    @property
    def verdict(self) -> str:
        """``agree``, ``DISAGREE`` or ``too close to rank`` (measured interquartile ranges overlap)."""
        if not self.separated:
            return "too close to rank"
        return "agree" if self.agree else "DISAGREE"


def _fmt(labels: list[str], times: list[float]) -> str:
    pairs = sorted(zip(times, labels))
    return " < ".join(f"{lab} ({fmt_time_s(t)})" for t, lab in pairs)


def format_rankings(rankings: list[Ranking]) -> str:
    lines = []
    for r in rankings:
        lines.append(f"ranking {r.phase}: measured  {_fmt(r.labels, r.measured_s)}")
        why = ""
        if not r.separated:
            t = sorted(r.measured_s)
            why = (f" (measured gap {t[1] / t[0] - 1:.1%}; the two fastest layouts' interquartile ranges overlap, "
                   f"so this run cannot order them; the planner {'agrees' if r.agree else 'orders them the other way'})")
        lines.append(f"ranking {r.phase}: predicted {_fmt(r.labels, r.predicted_s)}  -> {r.verdict}{why}")
    return "\n".join(lines)
