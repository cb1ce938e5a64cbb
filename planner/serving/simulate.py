"""Step-level simulation of N requests through one engine replica: the reference the shortcut is checked against.

    from accelcal.planner.serving.simulate import simulate
    run = simulate(engine, step_coster, kv_budget, workload)
    print(run.metrics.ttft_mean_s, run.steps, run.max_running)

Each iteration: requests that have arrived join the waiting queue; the engine preset schedules a step
(continuous batching with a token budget, chunked prefill on/off, prefill and decode mixed in one step
or prefill steps that pause decode, decode-first or prefill-first, KV blocks held at each sequence's
current length, preemption or queueing when the pool is full, or a static batch); the step is costed
by the StepCoster; the clock advances; finished requests free their blocks and, in a closed loop, their
client sends the next request (after the workload's client gap, outside every request's TTFT), which
reaches the engine's queue after the workload's turnaround (a seeded
random delay of up to ``turnaround_s``: the client handling the last response and sending the next, the
server parsing and tokenising it).  A preempted request loses its KV and is recomputed (vLLM's RECOMPUTE,
SGLang's retract).  The first ``warmup_requests`` requests run but are left out of the metrics (or, with
``warmup_drains``, run on their own before the measured run starts as a fresh burst).  Under overlap
scheduling (TensorRT-LLM, SGLang) step s+1 is formed when step s starts: what reaches the engine during
step s first runs in step s+2, and requests finished in step s ride along in step s+1 as wasted decodes.

Why the turnaround matters: with identical requests and no delay at all, a closed loop settles into whatever
phase pattern its first burst left, e.g. every arrival landing exactly at a step boundary and prefilled
alone, a knife-edge state.  A delay lets arrivals that land inside a long prefill step queue behind it, and
such clusters persist (their members finish close together and come back close together); the longer the
delay compared with a decode step, the larger the clusters and the TTFT.  So TTFT at high load depends on
the client and server path, which no accelerator profile measures: the default (``ServingWorkload.
turnaround_s``) is an assumption for a client and server on one host, and benchmarks/serving_accuracy.py
--turnaround-ms prints how much the predictions move with it.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from .engine import EnginePreset
from .kv import KVBudget, check_request_runs, reserved_output_tokens
from .metrics import ServingMetrics, summarise
from .step_cost import StepCoster
from .workload import ServingWorkload

__all__ = ["SimRun", "simulate", "simulate_lockstep"]

PROGRESS_EVERY_STEPS = 2048
"""Scheduler passes between two progress reports of a long run (a pass costs microseconds)."""


class _Req:
    __slots__ = ("i", "arrival", "isl", "osl", "target", "done_prompt", "dec", "generated", "first", "finish", "blocks")

    def __init__(self, i: int, arrival: float, isl: int, osl: int):
        self.i, self.arrival, self.isl, self.osl = i, arrival, isl, osl
        self.target = isl
        """Tokens to prefill: the prompt, or after a preemption the prompt and every token emitted so far."""
        self.done_prompt = 0
        self.dec = 0
        """Decode steps since the (re)prefill finished: each wrote one token's KV."""
        self.generated = 0
        self.first = -1.0
        self.finish = -1.0
        self.blocks = 0

    @property
    def length(self) -> int:
        return self.done_prompt + self.dec


@dataclass
class SimRun:
    """What one simulated benchmark run produced."""

    metrics: ServingMetrics
    steps: int
    """Engine steps simulated."""
    max_running: int
    """Most sequences holding KV at once."""
    preemptions: int
    """Requests evicted and recomputed."""
    decode_step: dict = field(default_factory=dict)
    """Breakdown of the most common decode step (batch, mean KV, seconds by part)."""
    prefill_share_of_decode_time: float = 0.0
    """Fraction of the time decoding sequences spent in steps that also carried prefill work (or were
    paused by prefill steps)."""
    kv_limited_steps: int = 0
    """Steps at which a waiting request could not start for lack of KV blocks."""
    times_s: tuple = ()
    """(arrival, first token, finish) seconds of each measured request (warm-up excluded), in the order sent."""
    output_tokens: tuple = ()
    """Output tokens of each measured request, in the order of ``times_s``."""


def simulate(engine: EnginePreset, coster: StepCoster, kv: KVBudget, workload: ServingWorkload, devices: int = 1,
             max_steps: int = 5_000_000, fast_forward: bool = True,
             progress: Callable[[int, int], None] | None = None) -> SimRun:
    """``fast_forward``: run stretches of pure decode steps without visiting every request each step (the same
    run to the last bit; False steps through the scheduler every time, for the test that checks they agree).
    ``progress``: called now and then with (requests finished, requests in the run)."""
    run = _replica(engine, coster, kv, workload, devices, max_steps, fast_forward, lockstep=False, progress=progress)
    try:
        next(run)
    except StopIteration as end:  # without lockstep the replica never waits for others: it runs to the end
        return end.value
    raise AssertionError("a replica outside lockstep yielded")


def simulate_lockstep(engine: EnginePreset, coster: StepCoster, kv: KVBudget, shares: list[ServingWorkload],
                      devices: int = 1, max_steps: int = 5_000_000, fast_forward: bool = True) -> list[SimRun]:
    """Replicas whose steps run in lockstep (attention data parallelism: their MoE layers meet in one group's
    collectives every forward pass), one run each, in the order of ``shares`` (each replica's own load).

    Every replica with work starts its step when the group does, and the group's step lasts as long as the slowest
    of them; a replica with nothing to run meanwhile (the engines' dummy forward passes: vLLM docs
    serving/data_parallel_deployment, "Forward passes must be aligned") starts its next step with the group's next.
    When no replica has work, the group idles until the first request reaches one of them.

    ``fast_forward``: where every replica with work is in a pure decode stretch (window_size in _replica), the
    group runs those steps at once, each as long as the slowest replica's, up to the first event in any replica
    (a request finishing or reaching a queue, a pool running short, an idle replica's request arriving): the same
    run to the last bit as stepping through (tests/test_attention_dp.py compares them)."""
    balance = engine.attention_dp_balance_iters
    runs = [_replica(engine, coster, kv, share, devices, max_steps, fast_forward, lockstep=True, balance=balance > 0)
            for share in shares]
    out: list[SimRun | None] = [None] * len(runs)
    asks: dict = {}
    held = [0] * len(runs)  # group steps each replica has held its new prompts for (balance)

    def reply(i: int, value) -> None:
        """Resume replica ``i`` with ``value`` (None starts it) and keep what it asks next, or its run."""
        try:
            asks[i] = runs[i].send(value)
        except StopIteration as end:
            out[i] = end.value
            asks.pop(i, None)

    for i in range(len(runs)):
        reply(i, None)
    group_clock = 0.0
    while asks:
        if any(kind == "ready" for kind, _ in asks.values()):
            # TensorRT-LLM's attention-DP balance: a replica with new prompts admits them when every replica has
            # some, or after holding them for `balance` steps (attention_dp_config timeout_iters)
            everyone = all(kind == "ready" and wants for kind, wants in asks.values())
            for i, (kind, wants) in list(asks.items()):
                if kind != "ready":
                    continue
                admit = not wants or everyone or held[i] >= balance
                held[i] = 0 if admit or not wants else held[i] + 1
                reply(i, admit)
            continue
        stepping = [dt for kind, dt in asks.values() if kind == "step"]
        windows = [w for kind, w in asks.values() if kind == "window"]  # (k_max, cost of step j, next arrival)
        if stepping or windows:
            # with a replica in a scheduled step, the decode stretches take one step with it; else the group runs
            # them as far as the first event in any replica
            steps = ([max(stepping + [w[1](0) for w in windows])] if stepping else
                     _group_window(windows, [at for kind, at in asks.values() if kind == "idle"], group_clock,
                                   engine.overlap_scheduling))
            for dt in steps:
                group_clock += dt
            replies = {i: (steps[0] if kind == "step" else steps if kind == "window" else (group_clock, len(steps)))
                       for i, (kind, _) in asks.items()}
        else:  # every replica waits for a request: the group idles until the first arrives
            group_clock = max(group_clock, min(at for _, at in asks.values()))
            replies = {i: (group_clock, 1) for i in asks}
        for i in list(asks):
            reply(i, replies[i])
    return [r for r in out if r is not None]


def _group_window(windows: list[tuple], idle_arrivals: list[float], clock: float, overlap: bool) -> list[float]:
    """The group's steps through its replicas' decode stretches (k_max, cost of step j, next arrival or None):
    step j lasts as long as the slowest replica's j-th step; the stretch ends at the shortest replica's end
    (a request finishes or the pool runs short in the next step), after the step in which a request reaches a
    decoding replica's queue (by the step's start with overlap scheduling, its end without: the scheduler runs
    the next step), or after the step that brings the group's clock to an idle replica's next arrival (it joins
    the next step).  A replica alone is a group of one."""
    k = min(w[0] for w in windows)
    out: list[float] = []
    arrivals = [w[2] for w in windows if w[2] is not None]
    while True:
        j = len(out)
        dt = max(w[1](j) for w in windows)
        out.append(dt)
        start, clock = clock, clock + dt
        if (len(out) == k or any(a <= (start if overlap else clock) for a in arrivals)
                or any(a <= clock for a in idle_arrivals)):
            return out


def _replica(engine: EnginePreset, coster: StepCoster, kv: KVBudget, workload: ServingWorkload, devices: int,
             max_steps: int, fast_forward: bool, lockstep: bool, balance: bool = False,
             progress: Callable[[int, int], None] | None = None):
    """One replica's run, a generator returning its SimRun.  With ``lockstep`` it yields ("step", seconds) before
    each step and takes back how long the group's step lasted, and ("idle", when its next request arrives) when it
    has nothing to run and takes back the group's clock; with ``balance`` too, ("ready", whether new prompts wait)
    before it schedules, taking back whether it may admit them.  Without lockstep it never yields."""
    if workload.warmup_drains and workload.warmup_requests and workload.closed_loop:
        # the warm-up ran to completion on its own and left the engine idle (no prefix cache is modelled):
        # the measured requests are a run of their own, starting with a burst
        workload = dataclasses.replace(workload, warmup_requests=0)
    if kv.max_state_seqs and kv.max_state_seqs < engine.max_seqs:
        # a hybrid model's state pool holds no more sequences than this (KVBudget.max_state_seqs)
        engine = dataclasses.replace(engine, max_seqs=kv.max_state_seqs)
    isls, osls = workload.lengths()
    n = len(isls)
    for i in range(n):
        check_request_runs(engine, kv, int(isls[i]), int(osls[i]))
    closed = workload.closed_loop
    arrivals = None if closed else workload.arrivals_s()
    waiting: deque[_Req] = deque()
    running: list[_Req] = []
    done: list[_Req] = []
    sent = 0
    clock = 0.0
    on_the_way: list[tuple[float, int, _Req]] = []  # sent, not yet in the engine's queue
    turnaround = workload.turnaround_delays_s()

    def send(at: float) -> None:
        nonlocal sent
        # the client's clock starts when it sends: the delay is part of the request's latency and TTFT
        heapq.heappush(on_the_way, (at + float(turnaround[sent]), sent, _Req(sent, at, int(isls[sent]), int(osls[sent]))))
        sent += 1

    if closed:
        for _ in range(min(workload.concurrency, n)):
            send(0.0)
    else:
        while sent < n:
            send(float(arrivals[sent]))
    free = kv.blocks
    budget = engine.step_tokens or 1 << 60
    steps = preempt = kv_limited = 0
    max_running = 0
    ratio = engine.new_token_ratio_init
    decay = (engine.new_token_ratio_init - engine.new_token_ratio_min) / max(1, engine.new_token_ratio_decay_steps)
    dec_hist: dict[tuple, int] = {}
    dec_time = dec_time_prefill = 0.0
    static = engine.batching == "static"
    bs = kv.block_size_tokens
    # Overlap scheduling: step s+1 is formed when step s starts, from what had reached the engine by then, and
    # the requests step s finishes ride along in step s+1 (wasted decodes) before their slots and KV free.
    overlap = engine.overlaps_steps
    prev_start = 0.0
    lingering: list[_Req] = []
    # TensorRT-LLM's batch waiting (EnginePreset.batch_wait_timeout_iters); off with attention data parallelism
    hold_prompts = engine.holds_prompts and not lockstep
    hold_tokens = engine.batch_wait_max_tokens_ratio * engine.token_budget
    held_steps = 0  # steps in a row whose new prompts were held

    state_tokens = kv.state_tokens_per_seq  # a hybrid model's state in the pool, as the tokens SGLang's admission counts
    window = kv.window_tokens_for  # a sliding-window model's windowed KV, as tokens of the pool
    state_blocks = kv.state_blocks_per_seq
    if kv.window_tokens:
        blocks_for = kv.blocks_for
    else:
        # KVBudget.blocks_for without windows, inlined: the scheduler calls it per request per step
        def blocks_for(tokens: int) -> int:
            return -(-tokens // bs) + state_blocks

    def release(r: _Req) -> None:
        nonlocal free
        free += r.blocks
        r.blocks = 0

    def evict(victim: _Req | None = None) -> None:
        """Preempt ``victim`` (default: the latest-started running request) back to the head of the queue."""
        nonlocal preempt, ratio
        if victim is None:
            victim = running.pop()
        else:
            running.remove(victim)
        release(victim)
        # recompute: the prompt and the tokens emitted so far are prefilled again; TTFT already happened
        victim.target = victim.isl + victim.generated if victim.generated else victim.isl
        victim.done_prompt, victim.dec = 0, 0
        waiting.appendleft(victim)
        preempt += 1
        ratio = engine.new_token_ratio_init

    def committed_tokens(chunks: list[tuple[_Req, int]]) -> tuple[float, float]:
        """SGLang's PrefillAdder view of the pool: (tokens held by the running and lingering requests and by the
        prompt chunks already in this step, output still to come of the running ones x new_token_ratio)."""
        used = (sum(r.length for r in running) + sum(r.length for r in lingering) + sum(take for _, take in chunks)
                + state_tokens * (len(running) + len(lingering)))
        if kv.window_tokens:
            used += (sum(window(r.length) for r in running) + sum(window(r.length) for r in lingering)
                     + sum(window(take) for _, take in chunks))
        return used, sum((r.osl - r.generated) * ratio for r in running)

    def admits(r: _Req, used: float, future: float) -> bool:
        """PrefillAdder.add_one_req: the prompt (for a retracted request, with what it emitted) and its clipped
        remaining output must be fewer than the free tokens."""
        need = r.target + reserved_output_tokens(r.osl - r.generated)
        return need + window(need) + state_tokens < kv.tokens - used - future

    def window_size() -> int:
        """Decode steps a pure decode stretch may run from here (0: none).

        With nothing waiting or lingering and every running request past its prompt, each step decodes every
        running request and changes nothing but their lengths, until a request finishes, a request reaches the
        queue, or the KV pool runs short.  Those steps are costed one by one as the scheduler would run them
        (same step costs, clock sums, counters and new_token_ratio decay), but without visiting each request
        every step: the run is the same to the last bit (tests/test_serving.py compares it with
        ``fast_forward=False``), and a long decode phase costs O(steps) instead of O(steps x running)."""
        if any(r.done_prompt < r.target for r in running):
            return 0
        count = len(running)
        k_max = min(r.osl - r.generated for r in running) - 1  # no request finishes inside the window
        if k_max < 2 or (engine.mixed_steps and count > budget):
            return 0
        grow = engine.mixed_steps and engine.admission != "full_request"

        def fits(k: int) -> bool:
            """Whether k decode steps need no eviction: the blocks they allocate (mixed steps growing with the
            length) are free already, or (SGLang's own decode steps) the pool holds every sequence after them."""
            if grow:
                return sum(blocks_for(r.done_prompt + r.dec + k) - r.blocks for r in running) <= free
            if not engine.mixed_steps:
                return sum(blocks_for(r.length + k) for r in running) <= kv.blocks
            return True

        if not fits(k_max):
            # the blocks needed grow with k: the longest stretch before a shortage (the step that evicts runs
            # through the scheduler)
            lo, hi = 0, k_max
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            k_max = lo
            if k_max < 2:
                return 0
        return k_max

    def window_dt(count: int, total: int) -> Callable[[int], float]:
        """The cost of the j-th step of the window (``count`` sequences holding ``total`` tokens at its start)."""
        return lambda j: coster.step_s(count, (total + j * count) / count + 1.0, (), count)

    def run_window(dts: list[float], count: int, total: int) -> None:
        """Account the window's steps, lasting ``dts`` (this replica's, or in lockstep the group's)."""
        nonlocal free, steps, clock, prev_start, ratio, dec_time
        decays = engine.admission == "reserve_ratio" or not engine.mixed_steps
        decoding_now = sum(r.generated >= 1 for r in running)
        last = len(dts) - 1
        for j, dt in enumerate(dts):
            kv_mean = (total + j * count) / count + 1.0
            key = (count, coster._round_kv(kv_mean))
            dec_hist[key] = dec_hist.get(key, 0) + 1
            dec_time += dt * decoding_now
            if decays:
                ratio = max(engine.new_token_ratio_min, ratio - decay)
            prev_start = clock
            clock += dt
            if j < last:  # the outer loop counted the first step
                steps += 1
                if steps > max_steps:
                    raise RuntimeError(f"simulation did not finish within {max_steps} steps")
        ran = len(dts)
        grow = engine.mixed_steps and engine.admission != "full_request"
        for r in running:
            r.generated += ran
            r.dec += ran
            if grow:
                need = blocks_for(r.done_prompt + r.dec)
                free -= need - r.blocks
                r.blocks = need
            elif not engine.mixed_steps:
                r.blocks = blocks_for(r.done_prompt + r.dec)
        if not engine.mixed_steps:
            free = kv.blocks - sum(r.blocks for r in running)

    def decode_window():
        """Run, at once, the pure decode steps that come before the next event (window_size), and return how many
        (0: none).  The stretch is offered as (its length, its steps' costs, the next request's arrival): alone,
        the replica is its own group (_group_window); in lockstep the group takes as many steps as every replica
        can, at the group's durations (simulate_lockstep)."""
        k_max = window_size()
        if not k_max:
            return 0
        count, total = len(running), sum(r.done_prompt + r.dec for r in running)
        offer = (k_max, window_dt(count, total), on_the_way[0][0] if on_the_way else None)
        dts = (yield ("window", offer)) if lockstep else _group_window([offer], [], clock, overlap)
        run_window(dts, count, total)
        return len(dts)

    while len(done) < n:
        steps += 1
        if steps > max_steps:
            raise RuntimeError(f"simulation did not finish within {max_steps} steps")
        if progress is not None and not steps % PROGRESS_EVERY_STEPS:
            progress(len(done), n)
        horizon = prev_start if overlap else clock
        while on_the_way and on_the_way[0][0] <= horizon:
            waiting.append(heapq.heappop(on_the_way)[2])
        if not running and not waiting and not lingering:
            if not (on_the_way and on_the_way[0][0] <= clock):
                if lockstep:
                    # the group's clock when this replica can next start a step: at the request's arrival, or
                    # later where the other replicas are in a step then; and the group steps that took (a
                    # window of several counts as many passes as stepping through it would)
                    clock, passed = yield ("idle", on_the_way[0][0])
                    steps += passed - 1
                else:
                    clock = on_the_way[0][0]  # the engine idles until the next request reaches it
            prev_start = clock  # nothing was scheduled ahead: the scheduler looks at the queue now
            continue
        if fast_forward and not static and not waiting and not lingering and running:
            ran = yield from decode_window()
            if ran:
                continue
        may_admit = True
        if balance:
            may_admit = yield ("ready", bool(waiting))
        held = len(lingering)
        chunks: list[tuple[_Req, int]] = []  # (request, prompt tokens this step)
        decodes: list[_Req] = []
        if static:
            if not running:
                if closed:
                    # a static batch is its clients' requests together: it waits for the ones already on their way
                    # (the client's pause and the turnaround), not leaving a straggler to run alone after it
                    while on_the_way and len(waiting) < engine.max_seqs:
                        at, _, r = heapq.heappop(on_the_way)
                        clock = max(clock, at)
                        waiting.append(r)
                # a new batch: as many waiting requests as fit at full length
                while waiting and len(running) < engine.max_seqs:
                    r = waiting[0]
                    need = blocks_for(r.isl + r.osl)
                    if need > free:
                        break
                    waiting.popleft()
                    r.blocks = need
                    free -= need
                    running.append(r)
            pending = [r for r in running if r.done_prompt < r.target]
            if pending:
                chunks.append((pending[0], pending[0].target))  # each prompt prefilled alone
            else:
                decodes = list(running)
        elif engine.mixed_steps:
            left = budget
            grow = engine.admission != "full_request"  # blocks follow the current length (and can run out)
            scheduled: set[int] = set()

            def schedule_running(which: str) -> None:
                """Running requests (``which``: all, prefilling or decoding), in the order they started, within the
                budget; a request whose next block is not free evicts the latest-started request not yet scheduled
                in this step (or, with none left, waits itself)."""
                nonlocal left, free
                evicted: set[int] = set()
                skip = "decoding" if which == "prefilling" else "prefilling" if which == "decoding" else ""
                chunked = engine.chunked_prefill
                for r in (list(running) if grow else running):  # only an eviction changes the list
                    prefilling = r.done_prompt < r.target
                    if skip and skip == ("decoding" if not prefilling else "prefilling"):
                        continue
                    if prefilling:
                        rest = r.target - r.done_prompt
                        take = min(rest, left) if chunked else (rest if rest <= left else 0)
                        if take <= 0:
                            continue
                    elif left < 1:
                        continue
                    else:
                        take = 1
                    if grow:
                        if r.i in evicted:
                            continue
                        need = blocks_for(r.done_prompt + (take if prefilling else r.dec + 1)) - r.blocks
                        if need > free:
                            victims = [v for v in running if v is not r and v.i not in scheduled]
                            while need > free and victims:
                                v = victims.pop()  # preemption: the latest started goes back to the queue
                                evict(v)
                                evicted.add(v.i)
                            if need > free:
                                evict(r)  # nothing left to take blocks from: r itself waits
                                evicted.add(r.i)
                                continue
                        free -= need
                        r.blocks += need
                        scheduled.add(r.i)  # not a victim for the rest of this step
                    left -= take
                    (chunks.append((r, take)) if prefilling else decodes.append(r))

            def admit_waiting() -> None:
                """Waiting requests, oldest first, with the budget left, as far as the admission rule lets them."""
                nonlocal left, free, kv_limited
                if engine.admission == "reserve_ratio":
                    used, future = committed_tokens(chunks)
                blocked = False
                while waiting and left > 0 and len(running) + held < engine.max_seqs:
                    r = waiting[0]
                    take = min(r.target, left) if engine.chunked_prefill else (r.target if r.target <= left else 0)
                    if take <= 0:
                        break
                    if engine.admission == "reserve_ratio":
                        if not admits(r, used, future):
                            blocked = True
                            break
                        used += take + state_tokens
                        future += reserved_output_tokens(r.osl - r.generated)
                    need = blocks_for(take if grow else r.isl + r.osl)
                    if need > free:
                        blocked = True
                        break
                    waiting.popleft()
                    free -= need
                    r.blocks = need
                    running.append(r)
                    scheduled.add(r.i)
                    chunks.append((r, take))
                    left -= take
                kv_limited += blocked

            if engine.priority == "prefill_first":
                # prompts take the budget first (the unfinished ones, then new ones); decodes fill what is left
                schedule_running("prefilling")
                if may_admit:
                    admit_waiting()
                schedule_running("decoding")
            else:
                # the running requests first, decoding or finishing a chunked prompt (vLLM V1's RUNNING queue,
                # TensorRT-LLM's scheduled generation requests, SGLang's mixed chunk), then new ones
                schedule_running("all")
                if may_admit:
                    if hold_prompts:
                        before = (len(running), len(chunks), left, free, kv_limited)
                    admit_waiting()
                    if hold_prompts and len(running) > before[0] and (decodes or lingering):
                        # PyExecutor._waiting_requests: the step's prompt tokens (whole prompts) and decode tokens
                        # against the share of the budget, or the steps held so far against the timeout
                        tokens = sum(r.target for r, _ in chunks) + len(decodes) + len(lingering)
                        if held_steps >= engine.batch_wait_timeout_iters or tokens >= hold_tokens:
                            held_steps = 0
                        else:  # the new prompts go back to the head of the queue, their blocks freed
                            held_steps += 1
                            for r in reversed(running[before[0]:]):
                                scheduled.discard(r.i)
                                r.blocks = 0
                                waiting.appendleft(r)
                            del running[before[0]:], chunks[before[1]:]
                            left, free, kv_limited = before[2], before[3], before[4]
            if engine.admission == "reserve_ratio" and decodes and not chunks:
                ratio = max(engine.new_token_ratio_min, ratio - decay)
        else:  # SGLang: a prefill batch, when one can be formed, runs on its own; else one decode step
            left = budget
            partial = [r for r in running if r.done_prompt < r.target]
            unfinished = False  # a chunked prompt that still does not finish in this batch
            for r in partial:
                take = min(r.target - r.done_prompt, left)
                if take > 0:
                    chunks.append((r, take))
                    left -= take
                unfinished |= take < r.target - r.done_prompt
            used, future = committed_tokens(chunks)  # the chunked prompt's chunk counts (add_chunked_req)
            blocked = False
            # new requests fill what the chunked prompt leaves of the batch (scheduler.get_new_batch_prefill adds
            # the chunked request first, then the waiting queue; sglang 0.5.8.post1 wheel)
            while may_admit and waiting and left > 0 and not unfinished and len(running) + held < engine.max_seqs:
                r = waiting[0]
                if not admits(r, used, future):
                    blocked = True
                    break
                take = min(r.target, left)
                waiting.popleft()
                running.append(r)
                chunks.append((r, take))
                used += r.target + state_tokens
                future += reserved_output_tokens(r.osl - r.generated)
                left -= take
                if take < r.target:
                    break  # the chunked request continues in the next prefill batch
            kv_limited += blocked
            if not chunks:
                decodes = [r for r in running if r.done_prompt >= r.target]
                need = sum(blocks_for(r.length + 1) for r in decodes)
                while decodes and need > kv.blocks:
                    evict()
                    decodes = [r for r in running if r.done_prompt >= r.target]
                    need = sum(blocks_for(r.length + 1) for r in decodes)
                ratio = max(engine.new_token_ratio_min, ratio - decay)
            decoding = {r.i for r in decodes}
            for r in running:  # token-granular pool: blocks follow the current length
                r.blocks = blocks_for(r.done_prompt + r.dec + (1 if r.i in decoding else 0))
            for r, take in chunks:
                r.blocks = blocks_for(r.done_prompt + take)
            free = kv.blocks - sum(r.blocks for r in running) - sum(r.blocks for r in lingering)
        if not chunks and not decodes and not lingering:
            if not may_admit:
                # its prompts held for the group's balance and nothing else to run: an empty step with the others
                dt = yield ("step", 0.0)
                prev_start = clock
                clock += dt
                continue
            raise RuntimeError(f"{engine.name}: no request can be scheduled (waiting {len(waiting)}, running "
                               f"{len(running)}, free blocks {free} of {kv.blocks})")
        max_running = max(max_running, len(running))
        # requests the last step finished still decode here (overlap): costed, their tokens discarded
        riding = decodes + (lingering if decodes or engine.mixed_steps or not chunks else [])
        kv_mean = sum(r.done_prompt + r.dec for r in riding) / len(riding) + 1.0 if riding else 0.0
        spec = tuple((take, r.done_prompt + take) for r, take in chunks)
        logits = len(riding) + sum(1 for r, take in chunks if r.done_prompt + take >= r.target)
        dt = coster.step_s(len(riding), kv_mean, spec, logits)
        if lockstep:
            dt = yield ("step", dt)  # the group's step: as long as its slowest replica's
        if riding and not chunks:
            key = (len(riding), coster._round_kv(kv_mean))
            dec_hist[key] = dec_hist.get(key, 0) + 1
        decoding_now = sum(r.generated >= 1 and r.done_prompt >= r.target for r in running)
        dec_time += dt * decoding_now
        if chunks:
            dec_time_prefill += dt * decoding_now
        prev_start = clock
        clock += dt
        for r in lingering:
            release(r)
        lingering = []
        finished: list[_Req] = []
        for r in decodes:
            r.generated += 1
            r.dec += 1
            if r.generated >= r.osl:
                finished.append(r)
        for r, take in chunks:
            r.done_prompt += take
            if r.done_prompt >= r.target:
                r.dec = 0
                if r.generated == 0:
                    r.first = clock
                r.generated += 1  # the (re)prefill step emits the next token
                if r.generated >= r.osl:
                    finished.append(r)
        for r in finished:
            r.finish = clock
            running.remove(r)
            (lingering.append(r) if overlap else release(r))
            done.append(r)
            if closed and sent < n:
                send(clock + workload.client_gap_s)
        if engine.admission != "current_length" and not engine.mixed_steps and not static:
            free = kv.blocks - sum(r.blocks for r in running) - sum(r.blocks for r in lingering)
    done.sort(key=lambda r: r.i)
    done = done[workload.warmup_requests:]
    metrics = summarise([r.arrival for r in done], [r.first for r in done], [r.finish for r in done],
                        [r.osl for r in done], devices)
    decode_step = {}
    if dec_hist:
        b, kvm = _typical_decode_key(dec_hist)
        decode_step = {"batch": b, "kv_len_mean": kvm, **coster.breakdown(b, kvm, ())}
    share = dec_time_prefill / dec_time if dec_time > 0 else 0.0
    times = tuple((r.arrival, r.first, r.finish) for r in done)
    return SimRun(metrics, steps, max_running, preempt, decode_step, share, kv_limited, times,
                  tuple(r.osl for r in done))


def _typical_decode_key(hist: dict[tuple, int]) -> tuple:
    """(batch, KV length) of the decode-only step that decoded the median output token: the batch at which half
    the decode-only tokens were made by smaller batches, then the median KV length of that batch's steps.  Counting
    tokens, not steps, keeps an open loop's many short ramp-up and tail steps from standing in for the load; the
    median KV, not the most common one, stands for a long decode whose KV buckets each occur equally often (the
    most common would be whichever came first: the start of the decode)."""
    by_batch: dict[int, int] = {}
    for (b, _), n in hist.items():
        by_batch[b] = by_batch.get(b, 0) + b * n
    b = _weighted_median(by_batch)
    return b, _weighted_median({kv: n for (batch, kv), n in hist.items() if batch == b})


def _weighted_median(weights: dict[int, int]) -> int:
    """The smallest key whose weight, with the smaller keys', reaches half the total (integer weights: exact)."""
    half, seen = sum(weights.values()) / 2.0, 0
    for key in sorted(weights):
        seen += weights[key]
        if seen >= half:
            return key
    raise AssertionError("unreachable: the weights sum to their total")
