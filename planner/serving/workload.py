"""The benchmark client: closed loop at a concurrency, or open loop at a Poisson request rate.

    from accelcal.planner.serving.workload import ServingWorkload
    w = ServingWorkload(isl=1024, osl=128, concurrency=16, num_requests=160)   # vllm bench serve --max-concurrency 16
    w = ServingWorkload(isl=1024, osl=128, request_rate_per_s=4.0, num_requests=200, seed=0)
    isls, osls = w.lengths()

Closed loop (``concurrency`` C): C clients all start at t = 0 and each sends its
next request when its previous one finishes (after ``client_gap_s``; ``vllm bench serve
--max-concurrency C --request-rate inf``, SGLang bench_serving, genai-perf
concurrency mode).  Open loop: requests arrive as a seeded Poisson process.
Lengths are fixed, or drawn uniformly as the client's ``--random-range-ratio`` r says, which
means two things in two families of clients (``range_mode``): ``around`` x (1 - r) .. x (1 + r)
(``vllm bench serve``'s random dataset), ``below`` x r .. x (SGLang's ``bench_serving``, and the
``benchmark_serving.py`` copies InferenceMAX and others run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["LONG_SIMULATION_REQUESTS", "MAX_REQUESTS", "RANGE_MODES", "REQUESTS_PER_CLIENT", "ServingWorkload",
           "client_shares", "default_requests"]

MAX_REQUESTS = 1_000_000
"""Most requests (measured or warm-up) one simulated run takes: about 1 KB of state each."""

LONG_SIMULATION_REQUESTS = 100_000
"""A simulated run of more requests than this takes half a minute or more (`accelcal predict` of Llama-3.1-8B on
vLLM, 1024 + 256 tokens: 8192 clients, so 81,920 requests, 20 s; 6000 clients, 60,000 requests, 19 s; on this
project's 2-core CPU VM), so predict and plan say so before they start."""


REQUESTS_PER_CLIENT = 10
"""Measured requests per closed-loop client when the count is not given (aiconfigurator's automated evaluation's
count: ServingWorkload.num_requests)."""


def default_requests(concurrency: int | None) -> int:
    """Measured requests when none are given: REQUESTS_PER_CLIENT x concurrency (at least 100) closed loop, 200
    open loop."""
    return max(100, REQUESTS_PER_CLIENT * concurrency) if concurrency is not None else 200

RANGE_MODES: tuple[str, ...] = ("around", "below")
"""What a client's --random-range-ratio means (ServingWorkload.range_mode)."""


@dataclass(frozen=True)
class ServingWorkload:
    """What the benchmark client sends."""

    isl: int
    """Input (prompt) tokens per request: the client's --random-input-len (with spread lengths the mean for
    ``range_mode`` around, the longest for below)."""
    osl: int
    """Output tokens per request: the client's --random-output-len (as ``isl``: mean or longest)."""
    concurrency: int | None = None
    """Closed loop: requests in flight (None: open loop)."""
    request_rate_per_s: float | None = None
    """Open loop: Poisson arrival rate, requests per second."""
    num_requests: int | None = None
    """Requests measured in the run (warm-up not counted); None = 10 x concurrency (at least 100) closed loop,
    200 open loop (predict_serving: at least 2 per DP replica; modelling assumption; vllm bench serve's default is 1000, aiconfigurator's automated evaluation
    sent 10 x concurrency after 2 x concurrency of warm-up, its later generated aiperf script 20 x)."""
    range_ratio: float | None = None
    """The client's ``--random-range-ratio`` r; what it means is ``range_mode``'s.  None: fixed lengths, the ratio
    that draws nothing in the mode (0 around, 1 below; set so at construction)."""
    range_mode: str = "around"
    """How r spreads the lengths (integers drawn uniformly, both ends included): ``around`` x (1 - r) .. x (1 + r),
    r in [0, 1), 0 = fixed (``vllm bench serve`` random dataset); ``below`` max(1, x r) .. x, r in [0, 1], 1 = fixed
    and 0 = 1 .. x (SGLang bench_serving ``compute_random_lens``, python/sglang/benchmark/datasets/common.py, whose
    --random-range-ratio defaults to 0.0; kimbochen/bench_serving benchmark_serving.py ``sample_random_requests`` at
    406abc35, the client InferenceMAX's workflow runs with r = 0.8, draws ``randint(int(x r), x + 1)`` without the
    clamp to 1, which differs only where x r < 1).  ``isl``/``osl`` are the client's
    --random-input-len/--random-output-len either way: the mean with ``around``, the longest with ``below``."""
    seed: int = 0
    """Seed of the arrival times, lengths and turnaround delays."""
    turnaround_s: float = 0.005
    """Each request reaches the engine's queue after a delay drawn uniformly from [0, turnaround_s] from the
    moment its client sends it (closed loop: the client handling the previous response and sending the next;
    both loops: the server parsing and tokenising it); TTFT and latency include it, as a client measures
    them.  Modelling assumption: up to 5 ms, a client and server on one host.  Closed-loop TTFT at high load
    grows with it (simulate.py says why; benchmarks/serving_accuracy.py --turnaround-ms shows how much)."""
    client_gap_s: float = 0.0
    """Closed loop: the time a client spends between receiving the last token of one response and sending its
    next request (the benchmark tool's own bookkeeping between requests; in aiperf a credit goes back to the
    timing manager and a new one out to a worker process before the next request is built and sent).  Unlike
    ``turnaround_s`` it is part of no request's TTFT or latency (the client's clock starts when it sends), but
    it moves when requests reach the engine, and so how they cluster (simulate.py).  Default 0: the tool's own
    figure is unknown unless measured (benchmarks/RESULTS.md has one measurement of aiperf)."""
    warmup_requests: int = 0
    """Requests run first and left out of the metrics (aiperf / genai-perf ``--warmup-request-count``)."""
    warmup_drains: bool = False
    """Closed loop: the client waits for every warm-up response before the measured requests start, so these
    start as a fresh burst of ``concurrency`` requests on an idle engine (aiperf: "By default, AIPerf waits
    indefinitely for all warmup responses before starting profiling", ai-dynamo/aiperf docs/tutorials/warmup.md
    at 13992dbd); False: the measured requests follow the warm-up in one continuous loop."""

    stream: tuple[int, int, int, int] | None = None
    """Open loop, one of several DP replicas (set by :meth:`replica_shares`): (replicas, this replica's index, requests
    in the whole stream, the stream's seed).  The benchmark client sends one Poisson stream at replicas x
    ``request_rate_per_s`` and a round-robin router hands this replica every replicas-th request from its index
    (SGLang's data-parallel controller's default; modelling assumption for others), so the replicas' arrivals
    together are the one stream a single replica would see.  None: the whole stream is this run's."""

    def __post_init__(self) -> None:
        for f in ("isl", "osl"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"--{f} must be an integer >= 1, got {v!r}")
        if (self.concurrency is None) == (self.request_rate_per_s is None):
            raise ValueError("give exactly one of --concurrency (closed loop) and --request-rate (open loop)")
        if self.concurrency is not None and (not isinstance(self.concurrency, int) or self.concurrency < 1):
            raise ValueError(f"--concurrency must be an integer >= 1, got {self.concurrency!r}")
        if self.request_rate_per_s is not None and not 0 < self.request_rate_per_s < math.inf:
            raise ValueError(f"--request-rate must be a finite number > 0 requests/s, got {self.request_rate_per_s!r}")
        if self.num_requests is not None and (not isinstance(self.num_requests, int) or self.num_requests < 1):
            raise ValueError(f"--num-requests must be an integer >= 1, got {self.num_requests!r}")
        for flag, v in (("--num-requests", self.num_requests), ("--warmup-requests", self.warmup_requests)):
            if isinstance(v, int) and v > MAX_REQUESTS:
                raise ValueError(f"{flag} {v} is more than the {MAX_REQUESTS} requests one simulated run holds "
                                 f"(each request's times stay in memory); the means settle long before")
        if self.num_requests is None and self.concurrency is not None:
            derived = default_requests(self.concurrency)
            if derived > MAX_REQUESTS:  # the default, not a number the user gave: say where it came from
                raise ValueError(f"--concurrency {self.concurrency} sends {derived} requests by default "
                                 f"({REQUESTS_PER_CLIENT} per client), more than the {MAX_REQUESTS} one simulated run "
                                 f"holds (each request's times stay in memory); pass --num-requests N (at most "
                                 f"{MAX_REQUESTS}; the means settle long before), or --method steady")
        if self.range_mode not in RANGE_MODES:
            raise ValueError(f"--range-mode must be one of {list(RANGE_MODES)}, got {self.range_mode!r}")
        if self.range_ratio is None:
            object.__setattr__(self, "range_ratio", 0.0 if self.range_mode == "around" else 1.0)
        if self.range_mode == "around" and not 0.0 <= self.range_ratio < 1.0:
            raise ValueError(f"--range-ratio must be in [0, 1) with --range-mode around (lengths x(1 - r) .. "
                             f"x(1 + r)), got {self.range_ratio}"
                             + ("; a client that draws x r .. x, where 1 is fixed: --range-mode below"
                                if self.range_ratio == 1.0 else ""))
        if self.range_mode == "below" and not 0.0 <= self.range_ratio <= 1.0:
            raise ValueError(f"--range-ratio must be in [0, 1] with --range-mode below (lengths x r .. x), "
                             f"got {self.range_ratio}")
        if not (isinstance(self.turnaround_s, (int, float)) and 0.0 <= self.turnaround_s <= 10.0):
            raise ValueError(f"--turnaround-ms must be between 0 and 10000 ms, got {self.turnaround_s * 1e3!r}")
        if not (isinstance(self.client_gap_s, (int, float)) and 0.0 <= self.client_gap_s <= 10.0):
            raise ValueError(f"--client-gap-ms must be between 0 and 10000 ms, got {self.client_gap_s * 1e3!r}")
        if self.client_gap_s and self.concurrency is None:
            raise ValueError("--client-gap-ms is the closed-loop client's pause between requests; with "
                             "--request-rate the arrivals are a Poisson process (leave it out)")
        if not isinstance(self.warmup_requests, int) or isinstance(self.warmup_requests, bool) or self.warmup_requests < 0:
            raise ValueError(f"--warmup-requests must be an integer >= 0, got {self.warmup_requests!r}")

    @property
    def closed_loop(self) -> bool:
        return self.concurrency is not None

    @property
    def fixed_lengths(self) -> bool:
        """Every request has ``isl`` prompt and ``osl`` output tokens (the range draws nothing)."""
        return self.range_ratio == (0.0 if self.range_mode == "around" else 1.0)

    @property
    def mean_lengths(self) -> tuple[int, int]:
        """(isl, osl) of the mean request the range draws (rounded): ``isl``/``osl`` unless ``below`` spreads them."""
        return tuple(round(sum(self.bounds(x)) / 2) for x in (self.isl, self.osl))

    def bounds(self, x: int) -> tuple[int, int]:
        """Shortest and longest length the range draws around (``around``) or below (``below``) ``x``."""
        if self.fixed_lengths:
            return x, x
        if self.range_mode == "around":
            return max(1, int(x * (1 - self.range_ratio))), max(1, int(x * (1 + self.range_ratio)))
        return max(1, int(x * self.range_ratio)), x

    @property
    def requests(self) -> int:
        """Requests sent in all, warm-up included."""
        measured = self.num_requests
        if measured is None:
            measured = default_requests(self.concurrency if self.closed_loop else None)
        return measured + self.warmup_requests

    def turnaround_delays_s(self) -> np.ndarray:
        """Each request's delay between its client sending it and the engine's queue holding it."""
        if self.turnaround_s == 0.0:
            return np.zeros(self.requests)
        return np.random.default_rng(self.seed + 2).uniform(0.0, self.turnaround_s, size=self.requests)

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(isl, osl) per request, in the order the requests are sent."""
        n = self.requests
        if self.fixed_lengths:
            return np.full(n, self.isl, dtype=np.int64), np.full(n, self.osl, dtype=np.int64)
        rng = np.random.default_rng(self.seed + 1)

        def draw(x: int) -> np.ndarray:
            lo, hi = self.bounds(x)
            return rng.integers(lo, hi + 1, size=n)
        return draw(self.isl), draw(self.osl)

    def arrivals_s(self) -> np.ndarray:
        """Open loop: arrival time of each request (seconds from 0); a replica's share of one stream (``stream``)."""
        if self.stream is None:
            rng = np.random.default_rng(self.seed)
            return np.cumsum(rng.exponential(1.0 / self.request_rate_per_s, size=self.requests))
        replicas, index, total, seed = self.stream
        rng = np.random.default_rng(seed)
        whole = np.cumsum(rng.exponential(1.0 / (self.request_rate_per_s * replicas), size=total))
        return whole[index::replicas]

    def client_shares(self, dp: int) -> list[int]:
        """Closed loop: the clients each of ``dp`` replicas serves (:func:`client_shares`)."""
        return client_shares(self.concurrency, dp)

    def replica_shares(self, dp: int) -> list["ServingWorkload"]:
        """The share of this load each of ``dp`` replicas serves (a load balancer keeping the replicas equally busy).

        Closed loop: the clients split as evenly as they can (C = 4 over 3 replicas: 2, 1, 1) and the requests
        in proportion to them, so every replica runs for about as long as the others (requests per client are
        what sets a closed loop's duration); the shares add up to the run's requests.  Open loop: one Poisson
        stream, every dp-th request to each replica in turn (``stream``), the warm-up ones first.  All at once:
        the split is over every replica, so one replica's share costs as much as all of them."""
        import dataclasses

        measured = self.requests - self.warmup_requests
        if measured < dp:
            given = (f"--num-requests {measured}" if self.num_requests is not None else
                     f"the default {measured} requests (" + (f"{REQUESTS_PER_CLIENT} per client, at least 100"
                                                             if self.closed_loop else "open loop") + ")")
            raise ValueError(f"{given} < dp {dp}: each replica needs at least one request"
                             + ("" if self.num_requests is not None else f"; pass --num-requests >= {dp}"))
        if not self.closed_loop:
            out = []
            for replica in range(dp):
                mine = range(replica, self.requests, dp)  # stream positions; the first warmup_requests are warm-up
                warm = len(range(replica, min(self.warmup_requests, self.requests), dp))
                out.append(dataclasses.replace(self, request_rate_per_s=self.request_rate_per_s / dp,
                                               num_requests=len(mine) - warm, warmup_requests=warm,
                                               seed=self.seed + replica, stream=(dp, replica, self.requests, self.seed)))
            return out
        weights = self.client_shares(dp)
        requests, warmups = _split(measured, weights, floor=1), _split(self.warmup_requests, weights)
        return [dataclasses.replace(self, concurrency=w, num_requests=n, warmup_requests=k, seed=self.seed + replica)
                for replica, (w, n, k) in enumerate(zip(weights, requests, warmups))]


def _split(total: int, weights: list[int], floor: int = 0) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders), each part at least ``floor``; the parts
    add up to ``total``."""
    parts = [floor] * len(weights)
    rest = total - floor * len(weights)
    w = sum(weights)
    exact = [rest * x / w for x in weights]
    for i, e in enumerate(exact):
        parts[i] += int(e)
    left = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-(exact[i] - int(exact[i])), i))[:left]:
        parts[i] += 1
    return parts


def client_shares(concurrency: int, dp: int) -> list[int]:
    """The clients each of ``dp`` replicas serves when ``concurrency`` clients in all split as evenly as they can
    (C = 4 over 3: 2, 1, 1): what a load balancer keeping the replicas equally busy gives each."""
    shares = [concurrency // dp + (1 if r < concurrency % dp else 0) for r in range(dp)]
    if min(shares) < 1:
        raise ValueError(f"--concurrency {concurrency} < dp {dp}: a replica would get no client")
    return shares
