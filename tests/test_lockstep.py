"""Attention data-parallel replicas in lockstep: every group step lasts as long as its slowest replica's."""

from __future__ import annotations

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.models import ModelConfig
from accelcal.planner.parallelism import Parallelism
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.kv import kv_budget
from accelcal.planner.serving.predict import predict_serving
from accelcal.planner.serving.simulate import simulate, simulate_lockstep
from accelcal.planner.serving.step_cost import StepCoster
from accelcal.planner.serving.workload import ServingWorkload

from planner_profiles import h100_like


@pytest.fixture(scope="module")
def setup():
    prof = Profile.from_dict(h100_like())
    small = ModelConfig.from_name("small")
    engine = EnginePreset.from_name("vllm")
    coster = StepCoster(prof, small, Parallelism(tp=1), engine)
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    return engine, coster, kv


def _load(isl: int, n: int = 64) -> ServingWorkload:
    return ServingWorkload(isl=isl, osl=64, concurrency=4, num_requests=n, turnaround_s=0.0)


def test_a_replica_decoding_beside_long_prefills_waits_for_them(setup):
    engine, coster, kv = setup
    short, long_ = _load(64), _load(8192)
    alone = simulate(engine, coster, kv, short)
    runs = simulate_lockstep(engine, coster, kv, [short, long_])
    assert len(runs) == 2
    # the short-prompt replica's decode steps stretch to the other replica's 8192-token prefill steps
    assert runs[0].metrics.tpot_mean_s > 1.5 * alone.metrics.tpot_mean_s
    # the long-prompt replica is the slower one in every step it prefills: it barely notices the other
    long_alone = simulate(engine, coster, kv, long_)
    assert runs[1].metrics.ttft_mean_s == pytest.approx(long_alone.metrics.ttft_mean_s, rel=0.1)
    # Little's law holds in each replica's closed loop
    for r in runs:
        m = r.metrics
        assert m.requests_per_s * m.request_latency_mean_s == pytest.approx(4, rel=0.02)


def test_equal_replicas_in_lockstep_run_as_one_alone(setup):
    engine, coster, kv = setup
    load = _load(512)
    alone = simulate(engine, coster, kv, load, fast_forward=False)
    runs = simulate_lockstep(engine, coster, kv, [load, load])
    for r in runs:  # identical loads and no turnaround jitter: the same steps at the same times
        assert r.metrics.ttft_mean_s == pytest.approx(alone.metrics.ttft_mean_s, rel=1e-9)
        assert r.metrics.tpot_mean_s == pytest.approx(alone.metrics.tpot_mean_s, rel=1e-9)


def test_a_replica_that_finishes_first_leaves_the_group_running(setup):
    engine, coster, kv = setup
    runs = simulate_lockstep(engine, coster, kv, [_load(64, n=8), _load(64, n=64)])
    assert [len(r.times_s) for r in runs] == [8, 64]
    assert runs[1].times_s[-1][2] > runs[0].times_s[-1][2]


def test_predict_runs_attention_dp_replicas_in_lockstep():
    prof = Profile.from_dict(h100_like())
    m = ModelConfig.from_name("tiny-moe")
    kw = dict(concurrency=8, isl=256, osl=32, num_requests=32, turnaround_s=0.002)
    lock = predict_serving(prof, m, "vllm", tp=1, dp=2, ep=2, **kw)
    apart = predict_serving(prof, m, "vllm", tp=1, dp=2, **kw)  # two replicas behind a load balancer
    assert lock.feasible and apart.feasible
    assert any("simulated together in lockstep" in n for n in lock.notes)
    # with jittered arrivals the two replicas' prefills fall in different steps: each one's decodes wait for both
    assert lock.metrics.tpot_mean_s > apart.metrics.tpot_mean_s


def test_balance_holds_new_prompts_until_every_replica_has_some(setup):
    engine, coster, kv = setup
    loads = [ServingWorkload(isl=2048, osl=64, concurrency=4, num_requests=64, turnaround_s=0.01, seed=s)
             for s in (0, 7)]
    plain = simulate_lockstep(engine, coster, kv, loads)
    balanced = simulate_lockstep(engine.with_overrides({"attention_dp_balance_iters": 60}, "test"), coster, kv, loads)
    # the trade-off TensorRT-LLM's ADP balance makes: prompts wait for the other replica's (TTFT up), and the
    # replicas prefill in the same steps, so decodes are held once per round instead of once per replica (TPOT down)
    for p, b in zip(plain, balanced):
        assert b.metrics.ttft_mean_s > p.metrics.ttft_mean_s
        assert b.metrics.tpot_mean_s < p.metrics.tpot_mean_s
        assert b.metrics.requests_per_s * b.metrics.request_latency_mean_s == pytest.approx(4, rel=0.02)
    # a timeout of 0 steps admits at once: the plain lockstep
    none = simulate_lockstep(engine.with_overrides({"attention_dp_balance_iters": 0}, "test"), coster, kv, loads)
    assert [r.metrics.ttft_mean_s for r in none] == [r.metrics.ttft_mean_s for r in plain]


def test_a_negative_balance_timeout_is_refused():
    with pytest.raises(ValueError, match=r"engine override attention_dp_balance_iters must be an integer >= 0, got -1"):
        EnginePreset.from_name("trtllm").with_overrides({"attention_dp_balance_iters": -1}, "test")


def _same_runs(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.times_s == y.times_s  # every request's arrival, first token and finish, to the last bit
        assert (x.steps, x.preemptions, x.max_running, x.kv_limited_steps) == (y.steps, y.preemptions, y.max_running,
                                                                                y.kv_limited_steps)
        assert x.decode_step == y.decode_step and x.prefill_share_of_decode_time == y.prefill_share_of_decode_time


@pytest.mark.parametrize("name, over", [("vllm", {}), ("sglang", {}), ("trtllm", {}),
                                        ("trtllm", {"attention_dp_balance_iters": 20})])
def test_decode_stretches_run_together_give_the_steps_one_at_a_time_would(setup, name, over):
    # the group runs its replicas' pure decode stretches at once (each step as long as the slowest replica's, up to
    # the first event in any replica): the same runs as stepping through every group step
    _, coster, kv = setup
    engine = EnginePreset.from_name(name)
    engine = engine.with_overrides(over, "test") if over else engine
    prof = Profile.from_dict(h100_like())
    small = ModelConfig.from_name("small")
    coster = StepCoster(prof, small, Parallelism(tp=1), engine)
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    for loads in ([ServingWorkload(isl=512, osl=200, concurrency=6, num_requests=36, turnaround_s=0.003, seed=s)
                   for s in (0, 3, 5)],
                  [_load(64, n=8), _load(2048, n=24)],  # one replica done early, the other going on
                  [ServingWorkload(isl=256, osl=300, request_rate_per_s=15.0, num_requests=40, seed=s)
                   for s in (1, 2)]):  # open loop: replicas idle between arrivals
        fast = simulate_lockstep(engine, coster, kv, loads)
        slow = simulate_lockstep(engine, coster, kv, loads, fast_forward=False)
        _same_runs(fast, slow)
