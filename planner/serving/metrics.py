"""Benchmark metrics from per-request times, as vLLM benchmark_serving / SGLang bench_serving / genai-perf define them.

    from accelcal.planner.serving.metrics import summarise
    m = summarise(arrival_s, first_token_s, finish_s, osl, devices=2, duration_s=None)
    print(m.ttft_mean_s, m.tpot_mean_s, m.output_tokens_per_s_per_device)

TTFT = first token - arrival; request latency = finish - arrival; TPOT = (latency - TTFT) / (output - 1)
per request (requests with one output token have none); ITL is the gap between consecutive tokens of a
request, its mean over all gaps of all requests = sum(latency - TTFT) / sum(output - 1).  Output
tokens/s = all output tokens / benchmark duration (first arrival to last finish); per device divides by
the devices; per user is the mean over requests of (output - 1) / (latency - TTFT) (genai-perf's
output token throughput per user).  Requests/s = requests / duration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ServingMetrics", "summarise"]


@dataclass(frozen=True)
class ServingMetrics:
    """The numbers a serving benchmark prints (the percentiles None where a prediction has means only: the
    steady state)."""

    ttft_mean_s: float
    ttft_p50_s: float | None
    ttft_p90_s: float | None
    ttft_p99_s: float | None
    tpot_mean_s: float
    tpot_p50_s: float | None
    tpot_p90_s: float | None
    tpot_p99_s: float | None
    itl_mean_s: float
    request_latency_mean_s: float
    request_latency_p50_s: float | None
    request_latency_p90_s: float | None
    request_latency_p99_s: float | None
    output_tokens_per_s: float
    output_tokens_per_s_per_device: float
    output_tokens_per_s_per_user: float
    requests_per_s: float
    duration_s: float
    """First arrival to last finish."""
    requests: int

    def to_dict(self) -> dict:
        return asdict(self)

    def stat(self, metric: str, stat: str) -> float:
        """``stat`` (mean | p50 | p90 | p99) of ``metric`` (ttft | tpot | request_latency)."""
        v = getattr(self, f"{metric}_{stat}_s")
        if v is None:
            raise ValueError(f"{metric} {stat}: this prediction has means only (the steady state); simulate for "
                             f"percentiles")
        return v


def summarise(arrival_s, first_token_s, finish_s, osl, devices: int) -> ServingMetrics:
    a, f, e, o = (np.asarray(x, dtype=float) for x in (arrival_s, first_token_s, finish_s, osl))
    ttft, lat = f - a, e - a
    multi = o > 1
    tpot = (lat[multi] - ttft[multi]) / (o[multi] - 1) if multi.any() else np.zeros(1)
    gaps = float((o[multi] - 1).sum())
    itl = float((lat[multi] - ttft[multi]).sum()) / gaps if gaps else 0.0
    duration = float(e.max() - a.min())
    per_user = float(np.mean(1.0 / tpot)) if multi.any() and (tpot > 0).all() else 0.0
    out_tps = float(o.sum()) / duration if duration > 0 else 0.0

    def q(x, p):
        return float(np.percentile(x, p))
    return ServingMetrics(float(ttft.mean()), q(ttft, 50), q(ttft, 90), q(ttft, 99),
                          float(tpot.mean()), q(tpot, 50), q(tpot, 90), q(tpot, 99), itl,
                          float(lat.mean()), q(lat, 50), q(lat, 90), q(lat, 99),
                          out_tps, out_tps / devices, per_user, len(a) / duration if duration > 0 else 0.0,
                          duration, len(a))
