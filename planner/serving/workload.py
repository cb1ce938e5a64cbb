"""The benchmark client: closed loop at a concurrency, or open loop at a Poisson request rate.

    from accelcal.planner.serving.workload import ServingWorkload
    w = ServingWorkload(isl=1024, osl=128, concurrency=16, num_requests=160)   # vllm bench serve --max-concurrency 16
    w = ServingWorkload(isl=1024, osl=128, request_rate_per_s=4.0, num_requests=200, seed=0)
    isls, osls = w.lengths()

Closed loop (``concurrency`` C): C clients all start at t = 0 and each sends its
next request the moment its previous one finishes (``vllm bench serve
--max-concurrency C --request-rate inf``, SGLang bench_serving, genai-perf
concurrency mode).  Open loop: requests arrive as a seeded Poisson process.
Lengths are fixed, or drawn uniformly from [x (1 - range_ratio), x (1 + range_ratio)]
as vLLM's random dataset does with ``--random-range-ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ServingWorkload"]


@dataclass(frozen=True)
class ServingWorkload:
    """What the benchmark client sends."""

    isl: int
    """Input (prompt) tokens per request (the mean when range_ratio > 0)."""
    osl: int
    """Output tokens per request (the mean when range_ratio > 0)."""
    concurrency: int | None = None
    """Closed loop: requests in flight (None: open loop)."""
    request_rate_per_s: float | None = None
    """Open loop: Poisson arrival rate, requests per second."""
    num_requests: int | None = None
    """Requests in the run; None = 10 x concurrency (at least 100) closed loop, 200 open loop (modelling
    assumption: the dev data do not record it; vllm bench serve's default is 1000)."""
    range_ratio: float = 0.0
    """Lengths uniform in [x (1 - r), x (1 + r)] (vLLM --random-range-ratio); 0 = fixed."""
    seed: int = 0
    """Seed of the arrival times and lengths."""

    def __post_init__(self) -> None:
        for f in ("isl", "osl"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"--{f} must be an integer >= 1, got {v!r}")
        if (self.concurrency is None) == (self.request_rate_per_s is None):
            raise ValueError("give exactly one of --concurrency (closed loop) and --request-rate (open loop)")
        if self.concurrency is not None and (not isinstance(self.concurrency, int) or self.concurrency < 1):
            raise ValueError(f"--concurrency must be an integer >= 1, got {self.concurrency!r}")
        if self.request_rate_per_s is not None and not self.request_rate_per_s > 0:
            raise ValueError(f"--request-rate must be > 0 requests/s, got {self.request_rate_per_s!r}")
        if self.num_requests is not None and (not isinstance(self.num_requests, int) or self.num_requests < 1):
            raise ValueError(f"--num-requests must be an integer >= 1, got {self.num_requests!r}")
        if not 0.0 <= self.range_ratio < 1.0:
            raise ValueError(f"range_ratio must be in [0, 1), got {self.range_ratio}")

    @property
    def closed_loop(self) -> bool:
        return self.concurrency is not None

    @property
    def requests(self) -> int:
        if self.num_requests is not None:
            return self.num_requests
        return max(100, 10 * self.concurrency) if self.closed_loop else 200

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(isl, osl) per request, in the order the requests are sent."""
        n = self.requests
        if self.range_ratio == 0.0:
            return np.full(n, self.isl, dtype=np.int64), np.full(n, self.osl, dtype=np.int64)
        rng = np.random.default_rng(self.seed + 1)

        def draw(x: int) -> np.ndarray:
            lo, hi = max(1, int(x * (1 - self.range_ratio))), max(1, int(x * (1 + self.range_ratio)))
            return rng.integers(lo, hi + 1, size=n)
        return draw(self.isl), draw(self.osl)

    def arrivals_s(self) -> np.ndarray:
        """Open loop: arrival time of each request (seconds from 0)."""
        rng = np.random.default_rng(self.seed)
        return np.cumsum(rng.exponential(1.0 / self.request_rate_per_s, size=self.requests))

    def per_replica(self, dp: int, replica: int) -> "ServingWorkload":
        """The share of this load one of ``dp`` replicas serves (a load balancer spreading requests evenly)."""
        import dataclasses

        n = self.requests
        share_n = n // dp + (1 if replica < n % dp else 0)
        if self.closed_loop:
            c = self.concurrency // dp + (1 if replica < self.concurrency % dp else 0)
            if c < 1:
                raise ValueError(f"--concurrency {self.concurrency} < dp {dp}: a replica would get no client")
            return dataclasses.replace(self, concurrency=c, num_requests=max(1, share_n), seed=self.seed + replica)
        return dataclasses.replace(self, request_rate_per_s=self.request_rate_per_s / dp, num_requests=max(1, share_n),
                                   seed=self.seed + replica)
