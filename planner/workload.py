"""What the served traffic looks like: prompt/output lengths, batch, targets.

    from accelcal.planner.workload import Workload
    w = Workload(prompt_len=2048, output_len=256, batch=16, ttft_s=1.0, tpot_s=0.05)

``batch`` is the number of sequences one model replica decodes together
(continuous batching).  A prompt is prefilled on its own (batch 1, the latency
a user waits for); TTFT is that prefill's time.  ``request_rate_per_s``, when
given, is checked against the cluster's sustainable request rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["Workload", "miss_factor"]


@dataclass(frozen=True)
class Workload:
    """The traffic a plan is sized for."""

    prompt_len: int = 2048
    """Prompt tokens per request (prefill length)."""
    output_len: int = 256
    """Generated tokens per request."""
    batch: int = 8
    """Sequences decoded together by one model replica."""
    ttft_s: float | None = None
    """Time-to-first-token target in seconds (None: no target)."""
    tpot_s: float | None = None
    """Time-per-output-token target in seconds (None: no target)."""
    request_rate_per_s: float | None = None
    """Offered load for the whole cluster, requests per second (None: not checked)."""

    def __post_init__(self) -> None:
        for f in ("prompt_len", "output_len", "batch"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"workload: {f} must be an integer >= 1, got {v!r}")
        for f in ("ttft_s", "tpot_s", "request_rate_per_s"):
            v = getattr(self, f)
            if v is not None and not (isinstance(v, (int, float)) and v > 0):
                raise ValueError(f"workload: {f} must be a number > 0 or None, got {v!r}")

    @property
    def context_len(self) -> int:
        """Tokens in the KV cache at the end of a request."""
        return self.prompt_len + self.output_len

    @property
    def mean_decode_kv_len(self) -> int:
        """KV length of the average decode step (prompt + half the output)."""
        return self.prompt_len + max(1, self.output_len // 2)

    def to_dict(self) -> dict:
        return asdict(self)


def miss_factor(ttft_s: float, tpot_s: float, requests_per_s: float, ttft_target_s: float | None,
                tpot_target_s: float | None, offered_per_s: float | None) -> float:
    """How far a plan is from its targets, the one rule both searches rank misses by: the largest of TTFT /
    target, TPOT / target and offered / completed requests/s over the targets it misses (infinite when nothing
    completes); 0 when it meets them all."""
    factors = [v / t for v, t in ((ttft_s, ttft_target_s), (tpot_s, tpot_target_s)) if t is not None and v > t]
    if offered_per_s is not None and requests_per_s < offered_per_s:
        factors.append(offered_per_s / requests_per_s if requests_per_s > 0 else math.inf)
    return max(factors, default=0.0)
