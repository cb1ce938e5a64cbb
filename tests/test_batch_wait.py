"""TensorRT-LLM's batch waiting: new prompts held while the running requests decode, up to a step count or until
enough tokens gather (EnginePreset.batch_wait_timeout_iters / batch_wait_max_tokens_ratio)."""

from __future__ import annotations

import pytest

from accelcal.calibrate.profile import Profile
from accelcal.models import ModelConfig
from accelcal.planner.parallelism import Parallelism
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.kv import kv_budget
from accelcal.planner.serving.simulate import simulate
from accelcal.planner.serving.step_cost import StepCoster
from accelcal.planner.serving.workload import ServingWorkload

from planner_profiles import h100_like

HOLD = {"batch_wait_timeout_iters": 10, "batch_wait_max_tokens_ratio": 0.9}


def _run(concurrency: int, **over):
    prof = Profile.from_dict(h100_like())
    small = ModelConfig.from_name("small")
    engine = EnginePreset.from_name("trtllm").with_overrides({"token_budget": 16384, **over}, "test")
    coster = StepCoster(prof, small, Parallelism(tp=1), engine)
    kv = kv_budget(small, engine, 1, 1, prof.identity.memory_capacity_bytes)
    load = ServingWorkload(isl=512, osl=64, concurrency=concurrency, num_requests=60 * concurrency,
                           range_ratio=0.5, turnaround_s=0.0)
    return simulate(engine, coster, kv, load, fast_forward=False), coster


def test_a_prompt_arriving_while_others_decode_waits_for_the_timeout():
    free, coster = _run(4)
    held, _ = _run(4, **HOLD)
    # 4 prompts of <= 768 tokens never reach 0.9 x 16384 tokens: a new prompt waits the 10 steps the others decode
    # first (at most; the burst at the start, with nothing decoding, is not held), so TTFT grows by up to 10 decode
    # steps of the running batch
    step = coster.step_s(3, 600.0, ())
    extra = held.metrics.ttft_mean_s - free.metrics.ttft_mean_s
    assert 6 * step < extra < 10.5 * step
    # the closed loop still obeys Little's law: 4 requests in flight
    m = held.metrics
    assert m.requests_per_s * m.request_latency_mean_s == pytest.approx(4, rel=0.02)


def test_enough_prompt_tokens_end_the_hold_at_once():
    free, _ = _run(4)
    # 512-token prompts and more reach 0.01 x 16384 = 164 tokens: no step holds them
    quick, _ = _run(4, batch_wait_timeout_iters=10, batch_wait_max_tokens_ratio=0.01)
    assert quick.metrics.ttft_mean_s == pytest.approx(free.metrics.ttft_mean_s, rel=1e-12)


def test_an_engine_with_nothing_decoding_prefills_at_once():
    # one client: its next prompt reaches an engine with nothing running, so nothing is held
    free, _ = _run(1)
    held, _ = _run(1, **HOLD)
    assert held.metrics.ttft_mean_s == pytest.approx(free.metrics.ttft_mean_s, rel=1e-12)


@pytest.mark.parametrize("over, match", [
    ({"batch_wait_max_tokens_ratio": 1.5}, r"batch_wait_max_tokens_ratio must be in \[0, 1\] \(a share of "
                                           r"token_budget\), got 1.5"),
    ({**HOLD, "priority": "prefill_first"}, r"modelled for continuous batching with mixed steps, decode_first "
                                            r"priority and a token budget .*priority 'prefill_first'"),
    ({"batch_wait_timeout_iters": -1}, r"engine override batch_wait_timeout_iters must be an integer >= 0, got -1"),
])
def test_bad_batch_wait_settings_are_refused(over, match):
    with pytest.raises(ValueError, match=match):
        EnginePreset.from_name("trtllm").with_overrides(over, "test")


def test_either_setting_at_zero_holds_nothing():
    trt = EnginePreset.from_name("trtllm")
    assert (trt.batch_wait_timeout_iters, trt.batch_wait_max_tokens_ratio) == (0, 0.0)
    assert "_waiting_requests" in trt.sources["batch_wait_timeout_iters"]
    assert not trt.with_overrides({"batch_wait_timeout_iters": 20}, "test").holds_prompts
    assert not trt.with_overrides({"batch_wait_max_tokens_ratio": 0.9}, "test").holds_prompts
    assert trt.with_overrides(HOLD, "test").holds_prompts
