"""Analytic steady state of a closed loop: the shortcut the search uses, checked against simulate() in the tests.

    from accelcal.planner.serving.steady import steady_state
    s = steady_state(engine, step_coster, kv_budget, isl=1024, osl=128, concurrency=32)
    print(s.ttft_s, s.tpot_s, s.output_tokens_per_s, s.binding)

C clients, each request isl prompt + osl output tokens, desynchronised (the state a long run with
varied lengths settles into).  Requests in the engine ``E = min(C, max_seqs, what the KV pool holds)``
(at the mean current length isl + osl/2 when blocks follow the length, isl + osl when reserved up front,
isl + osl x new_token_ratio for SGLang); the other C - E wait.  A request spends ``P`` steps prefilling
(ceil(isl / budget left after the other requests' decodes) with chunked prefill, else 1) and osl - 1 decode
steps.  Mixed steps (vLLM, TensorRT-LLM): per step E x P/S prefill chunks are asked for (S = P + osl - 1), at
most as many as the budget left beside the decodes holds (beyond it the engine is prefill-bound: requests
start at the rate the budget allows and the rest wait); a request's decode steps carry the other requests'
chunks (TPOT), its prefill steps its own as well; a prompt as large as the budget without chunking never
shares a step with a decode, so requests run one at a time.  Separate prefill steps (SGLang):
every decode step is followed, on average, by d/(osl - 1) prompts' prefill steps, so TPOT = decode step +
that prefill time.  Static batch: C prompts prefilled one by one, then osl - 1 lockstep decodes.
TTFT = the request's own prefill step(s) + the wait for KV room (Little's law on the C - E waiting), + one
mean step under overlap scheduling (the step in flight when a request arrives was formed without it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .engine import EnginePreset
from .kv import KVBudget, check_request_runs
from .step_cost import StepCoster
from .workload import client_shares

__all__ = ["PREFILL_BINDS_SHARE", "STEADY_REL_TOL", "SteadyState", "steady_over_replicas", "steady_state"]

STEADY_REL_TOL = 0.15
"""How far the steady state's TPOT and output tokens/s may lie from the step-level simulation's (relative):
the bound tests/test_serving.py::test_steady_state_matches_simulation and ..._where_prefill_binds hold it to.
Its TTFT has no such bound (it assumes desynchronised clients; a closed loop of identical requests clusters,
which raises TTFT).  Nor does the TPOT of separate prefill steps (SGLang without --enable-mixed-chunk) at high
concurrency: clustered clients get their prompts prefilled in large batches before their decode streaks,
while the steady state spreads one prompt's prefill step over every few decode steps, so its TPOT is the
higher (llama3.1-8b on the H100 profile, C = 128, 1024 x 128: 37.4 ms against 24.4 ms simulated).  Nor,
with chunked prefill, the TPOT of prompts longer than the token budget at a few clients (a small model's 8192 x 64
at C = 8 on an 8192-token budget: +27%), where simulated requests cluster their chunks.  The steady state costs
mixed steps decode-first (every preset's rule); a prefill_first override is simulated, not estimated."""


PREFILL_BINDS_SHARE = 0.5
"""Prefill work above this share of TPOT is what binds a point; below it the decode step does (the steady
state's binding code and the search's why-lines use the same line)."""

@dataclass
class SteadyState:
    """Means of a closed loop in steady state (one replica)."""

    ttft_s: float
    tpot_s: float
    request_latency_s: float
    output_tokens_per_s: float
    """One replica."""
    requests_per_s: float
    in_engine: int
    """Requests holding KV at once (E)."""
    kv_limit: int
    """Requests the KV pool holds at their mean footprint."""
    decode_step_s: float
    """A decode-only step at the steady decode batch."""
    prefill_share: float
    """Share of TPOT due to prefill work in or between decode steps."""
    queue_wait_s: float
    """Mean wait for KV room before the prefill starts."""
    binding: str
    """kv_capacity | state_capacity (a hybrid model's separate state pool, KVBudget.max_state_seqs) | max_seqs (the
    engine's cap on running requests) | prefill_interference | decode (what sets TPOT/TTFT most)."""
    decode_breakdown: dict = field(default_factory=dict)


def _cap(engine: EnginePreset, kv: KVBudget, concurrency: int, e: int, lim: int) -> str:
    """What holds the requests in the engine (``e``) below the clients: ``kv_capacity`` / ``state_capacity`` (the
    pool, ``lim`` requests), ``max_seqs`` (the engine's cap), or "" when every client's request runs."""
    if concurrency <= e:
        return ""
    if lim < min(concurrency, engine.max_seqs):
        return "state_capacity" if kv.max_state_seqs and lim == kv.max_state_seqs else "kv_capacity"
    return "max_seqs"


def _kv_limit(engine: EnginePreset, kv: KVBudget, isl: int, osl: int) -> int:
    if engine.admission == "full_request" or engine.batching == "static":
        per = kv.blocks_for(isl + osl) * kv.block_size_tokens
    elif engine.admission == "reserve_ratio":
        ratio = 0.5 * (engine.new_token_ratio_init + engine.new_token_ratio_min)
        per = isl + osl / 2 + (osl / 2) * ratio + kv.window_tokens_for(int(isl + osl / 2)) + kv.state_tokens_per_seq
    else:
        per = kv.blocks_for(int(isl + osl / 2)) * kv.block_size_tokens
    fits = max(1, int(kv.tokens // per))
    return min(fits, kv.max_state_seqs) if kv.max_state_seqs else fits


def steady_state(engine: EnginePreset, coster: StepCoster, kv: KVBudget, isl: int, osl: int,
                 concurrency: int) -> SteadyState:
    check_request_runs(engine, kv, isl, osl)
    lim = _kv_limit(engine, kv, isl, osl)
    e = max(1, min(concurrency, engine.max_seqs, lim))
    kv_mean = isl + osl / 2
    budget = engine.step_tokens or 1 << 60
    if engine.batching == "static":
        tp1 = coster.step_s(0, 0.0, ((isl, isl),), 1)
        td = coster.step_s(e, kv_mean) if osl > 1 else 0.0
        cycle = e * tp1 + (osl - 1) * td
        ttft = (e + 1) / 2 * tp1
        tpot = td + (e - 1) / 2 * tp1 / (osl - 1) if osl > 1 else 0.0
        x = e / cycle
        wait = (concurrency - e) / x if concurrency > e else 0.0
        return SteadyState(ttft + wait, tpot, ttft + wait + (osl - 1) * tpot, x * osl, x, e, lim, td,
                           1 - td / tpot if tpot else 0.0, wait, _cap(engine, kv, concurrency, e, lim) or "decode",
                           _decode_step(coster, e, kv_mean) if osl > 1 else {})
    if engine.mixed_steps:
        # without chunking a prompt starts only in a step whose decodes leave it room: once budget - isl requests
        # decode, no other can start, so at most budget - isl + 1 run together (one at a time when the prompt
        # fills the budget)
        e_run = e if engine.chunked_prefill else max(1, min(e, int(budget - isl) + 1))
        d = e_run * (osl - 1) / max(1, osl)  # first guess: decoders per step
        for _ in range(8):
            # the decoders beside one request's prefill are the others (it does not decode while it prefills)
            room = max(1.0, budget - d * (e_run - 1) / e_run)
            chunk = min(isl, room) if engine.chunked_prefill else isl
            p_steps = math.ceil(isl / chunk)
            s = p_steps + osl - 1
            # prefill chunks a step holds beside its d decodes; more are asked for than fit: prefill-bound
            cap = max(1e-3, (budget - d) / chunk)
            k = min(e_run * p_steps / s, cap)
            d = k / p_steps * (osl - 1)  # requests starting per step x the decode steps each then takes
        di = max(1, round(d)) if osl > 1 else 0
        chunk_i = math.ceil(isl / p_steps)  # a prompt over p_steps steps: its tokens, not p_steps full chunks
        td = coster.step_s(di, kv_mean) if di else 0.0

        def mean_step(chunks: float) -> float:
            """A step with ``di`` decodes and, on average, ``chunks`` prefill chunks."""
            if chunks <= 1:
                one = coster.step_s(di, kv_mean, ((chunk_i, isl),))
                return chunks * one + (1 - chunks) * td
            lo = int(chunks)
            spec = tuple((chunk_i, isl) for _ in range(lo))
            t_lo, t_hi = coster.step_s(di, kv_mean, spec), coster.step_s(di, kv_mean, spec + ((chunk_i, isl),))
            return t_lo + (chunks - lo) * (t_hi - t_lo)

        tau = mean_step(k)
        x = k / p_steps / tau  # requests/s
        # what one request lives through: its decode steps carry the others' chunks, its prefill steps its own too
        k_others = min(k, (e_run - 1) * p_steps / s)
        tpot = mean_step(k_others) if osl > 1 else 0.0
        ttft_engine = p_steps * mean_step(max(1.0, min(k_others + 1, cap)))
        served = min(e, x * s * tau)  # requests in the engine: fewer than E when the prefill budget binds
    else:  # separate prefill steps (SGLang)
        d = max(1, e)
        td = coster.step_s(d, kv_mean)
        chunk = min(isl, budget)
        p_steps = math.ceil(isl / chunk)
        tp1 = sum(coster.step_s(0, 0.0, ((min(chunk, isl - i * chunk), min(isl, (i + 1) * chunk)),), 1)
                  for i in range(p_steps))
        r = d / max(1, osl - 1)  # prompts started per decode step
        if r <= 1 or p_steps > 1:
            prefill_per_decode = r * tp1
            ttft_engine = tp1
            batch, t_batch = 1, tp1
        else:
            k = min(r, budget / isl)
            k_lo = max(1, int(k))
            tk = coster.step_s(0, 0.0, tuple((isl, isl) for _ in range(k_lo)), k_lo)
            prefill_per_decode = (r / k_lo) * tk
            ttft_engine = tk
            batch, t_batch = k_lo, tk
        tpot = td + prefill_per_decode
        # one output token: requests finish at their prefill, so prefill batches alone set the rate
        # (the clients' own cycle, a prefill and under overlap scheduling the step formed without it, caps it)
        x = d / ((osl - 1) * tpot) if osl > 1 else min(batch / t_batch, e / (ttft_engine + (
            t_batch if engine.overlap_scheduling else 0.0)))
        tau = tpot
        if osl == 1:
            tpot = 0.0  # one output token: no time per output token (the benchmark clients report none)
        served = e
    wait = (concurrency - served) / x if concurrency > served else 0.0
    # overlap scheduling: the step running when a request arrives was formed without it, so it also waits
    # for the one after (a mean step)
    ttft = ttft_engine + wait + (tau if engine.overlap_scheduling else 0.0)
    latency = ttft + (osl - 1) * tpot
    share = 1 - td / tpot if tpot > 0 else 0.0
    # served equals E up to rounding when the prefill budget does not bind (k x s / p_steps = E)
    binding = _cap(engine, kv, concurrency, e, lim) or (
        "prefill_interference" if share > PREFILL_BINDS_SHARE or served < min(concurrency, e) * (1 - 1e-9)
        else "decode")
    return SteadyState(ttft, tpot, latency, x * osl, x, e, lim, td, share, wait, binding,
                       _decode_step(coster, max(1, round(d)), kv_mean))


def steady_over_replicas(engine: EnginePreset, coster: StepCoster, kv: KVBudget, isl: int, osl: int, concurrency: int,
                         dp: int) -> tuple[SteadyState, float, float]:
    """(steady state of the busiest replica, output tokens/s of all ``dp`` replicas, requests/s of all) when
    ``concurrency`` clients split over the replicas as evenly as they can (workload.client_shares): the busiest
    replica sets the latencies, every replica adds its own throughput."""
    shares = client_shares(concurrency, dp)
    states = {c: steady_state(engine, coster, kv, isl, osl, c) for c in set(shares)}
    return (states[max(shares)], sum(states[c].output_tokens_per_s for c in shares),
            sum(states[c].requests_per_s for c in shares))


def _decode_step(coster: StepCoster, batch: int, kv_mean: float) -> dict:
    """The typical decode step's breakdown with its batch and mean KV length (as the simulation reports it)."""
    return {"batch": batch, "kv_len_mean": round(kv_mean), **coster.breakdown(batch, kv_mean)}
