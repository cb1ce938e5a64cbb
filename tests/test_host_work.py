"""An engine's host work per step (EnginePreset.host_step_s, host_s_per_seq): added to the device time where host
and device take turns, hidden behind it up to its length under overlap scheduling; 0 in every preset."""

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

SMALL = ModelConfig.from_name("small")


def _coster(overlap: bool, **host):
    prof = Profile.from_dict(h100_like())
    engine = EnginePreset.from_name("vllm").with_overrides({"overlap_scheduling": overlap, **host}, "test")
    return StepCoster(prof, SMALL, Parallelism(tp=1), engine), engine, prof


def test_every_preset_leaves_a_step_its_device_time_and_says_why():
    for name in ("vllm", "sglang", "trtllm", "static"):
        e = EnginePreset.from_name(name)
        assert (e.host_step_s, e.host_s_per_seq) == (0.0, 0.0)
        assert e.sources["host_step_s"] and e.sources["host_s_per_seq"]
    plain, _, _ = _coster(False)
    zero, _, _ = _coster(False, host_step_s=0.0, host_s_per_seq=0.0)
    assert zero.step_s(32, 800.0, ((512, 512),)) == plain.step_s(32, 800.0, ((512, 512),))
    assert "host" not in plain.breakdown(32, 800.0)


def test_host_work_adds_where_host_and_device_take_turns():
    plain, _, _ = _coster(False)
    sync, _, _ = _coster(False, host_step_s=1e-3, host_s_per_seq=20e-6)
    device = plain.step_s(32, 800.0)
    # 1 ms a step + 20 us for each of the 32 decoding requests
    assert sync.step_s(32, 800.0) == pytest.approx(device + 1e-3 + 32 * 20e-6)
    # a prefill chunk is one more scheduled request
    mixed = plain.step_s(32, 800.0, ((512, 512),))
    assert sync.step_s(32, 800.0, ((512, 512),)) == pytest.approx(mixed + 1e-3 + 33 * 20e-6)
    bd = sync.breakdown(32, 800.0)
    assert bd["host"] == pytest.approx(1e-3 + 32 * 20e-6)
    assert bd["total"] == pytest.approx(sync.step_s(32, 800.0))


def test_overlap_scheduling_hides_host_work_up_to_the_device_time():
    plain, _, _ = _coster(True)
    device = plain.step_s(32, 800.0)
    hidden, _, _ = _coster(True, host_step_s=0.5 * device)
    assert hidden.step_s(32, 800.0) == pytest.approx(device)  # the host prepares the next step meanwhile
    bound, _, _ = _coster(True, host_step_s=0.5 * device, host_s_per_seq=device / 32)
    # 1.5 x the device time on the host: the step lasts as long as the host work
    assert bound.step_s(32, 800.0) == pytest.approx(1.5 * device)
    assert bound.breakdown(32, 800.0)["host"] == pytest.approx(0.5 * device)


def test_a_closed_loop_with_host_work_keeps_littles_law_and_a_longer_tpot():
    def run(**host):
        coster, engine, prof = _coster(False, **host)
        kv = kv_budget(SMALL, engine, 1, 1, prof.identity.memory_capacity_bytes)
        load = ServingWorkload(isl=512, osl=64, concurrency=16, num_requests=320, turnaround_s=0.0)
        return simulate(engine, coster, kv, load).metrics

    base, slow = run(), run(host_step_s=0.5e-3, host_s_per_seq=50e-6)
    assert slow.requests_per_s * slow.request_latency_mean_s == pytest.approx(16, rel=0.02)
    # 16 decoding requests: at least 0.5 ms + 16 x 50 us more per token
    assert slow.tpot_mean_s - base.tpot_mean_s >= 0.9 * (0.5e-3 + 16 * 50e-6)


@pytest.mark.parametrize("value", [-1e-6, float("nan"), "fast"])
def test_a_negative_or_non_numeric_host_time_is_refused_by_name(value):
    with pytest.raises(ValueError, match="host_s_per_seq"):
        EnginePreset.from_name("trtllm").with_overrides({"host_s_per_seq": value}, "--engine-arg")


def test_predict_reports_host_work_in_seconds_keys_and_says_whether_it_showed():
    from accelcal.planner.serving.predict import predict_serving

    prof = Profile.from_dict(h100_like())
    over = EnginePreset.from_name("trtllm")  # overlap scheduling on
    base = predict_serving(prof, SMALL, over, concurrency=8, isl=256, osl=32, num_requests=64, turnaround_s=0.0)
    device = base.decode_step["total"]
    hidden = predict_serving(prof, SMALL, over.with_overrides({"host_step_s": 0.5 * device}, "test"),
                             concurrency=8, isl=256, osl=32, num_requests=64, turnaround_s=0.0)
    assert "host_s" not in hidden.to_json()["decode_step"]
    assert any("engine host work" in n and "is hidden" in n for n in hidden.notes)
    bound = predict_serving(prof, SMALL, over.with_overrides({"host_step_s": 3 * device}, "test"),
                            concurrency=8, isl=256, osl=32, num_requests=64, turnaround_s=0.0)
    step = bound.to_json()["decode_step"]
    assert step["host_s"] == pytest.approx(2 * device, rel=1e-6) and step["total_s"] == pytest.approx(3 * device)
    assert step["host_sets_step"] is True
    assert any("sets the step under overlap scheduling" in n for n in bound.notes)
    assert base.notes == [n for n in base.notes if "engine host work" not in n]  # nothing said when unset


def test_the_search_names_host_work_where_it_sets_the_decode_step():
    from accelcal.planner.serving.search import ServingTargets, search_serving

    prof = Profile.from_dict(h100_like())
    slow = EnginePreset.from_name("trtllm").with_overrides({"host_step_s": 0.05}, "test: a slow host")
    res = search_serving(prof, SMALL, 1, [slow], [4], isl=256, osl=64, targets=ServingTargets())
    why = "\n".join(res.why) if hasattr(res, "why") else "\n".join(getattr(res.ranked[0], "why", []))
    assert "set by the engine's host work" in why, why
