"""The timing core: statistics on injected samples, buffer rotation, both figures on the CPU."""

import math
import sys
from pathlib import Path

import pytest
import torch

from accelcal.kernels.device import resolve_device
from accelcal.kernels.timing import ROTATION_SETS_MAX, Stats, TimingConfig, rotation_count, time_op


def test_stats_on_known_samples():
    st = Stats.from_samples([1.0, 2.0, 3.0, 4.0, 100.0])
    assert st.median_s == 3.0
    assert st.q1_s == 2.0 and st.q3_s == 4.0 and st.iqr_s == 2.0
    assert st.min_s == 1.0 and st.max_s == 100.0 and st.n == 5
    assert st.mean_s == pytest.approx(22.0)
    # The outlier moves the mean and CV but not the median.
    assert st.cv > 1.0
    assert st.rel_iqr == pytest.approx(2.0 / 3.0)
    assert st.noisy


def test_stats_quiet_samples_not_noisy():
    st = Stats.from_samples([1.0, 1.01, 0.99, 1.0, 1.02])
    assert not st.noisy
    assert st.samples_s == (1.0, 1.01, 0.99, 1.0, 1.02)


@pytest.mark.parametrize("bad", [[], [float("nan")], [-1.0], [math.inf]])
def test_stats_reject_bad_samples(bad):
    with pytest.raises(ValueError):
        Stats.from_samples(bad)


def test_rotation_count_exceeds_cache_and_respects_budget():
    assert rotation_count(1 << 20, 32 << 20, 1 << 40) == 64  # 2 x 32 MiB / 1 MiB
    # A large last-level cache (the Intel VM's 480 MiB): small sets rotate past it instead of stopping at 64 sets
    # and timing the cache (the pre-2026-12-05 cap).
    assert rotation_count(528384, 480 << 20, 1 << 40) == 1906  # ceil(2 x 503316480 / 528384)
    assert rotation_count(528384, 480 << 20, 1 << 40) * 528384 >= 2 * (480 << 20)
    assert rotation_count(64, 480 << 20, 1 << 40) == ROTATION_SETS_MAX  # tiny sets: the count cap
    assert rotation_count(1 << 20, 480 << 20, 100 << 20) == 100  # the byte budget still rules
    assert rotation_count(8 << 20, 32 << 20, 1 << 40) == 8  # 2 x 32 MiB / 8 MiB
    assert rotation_count(1 << 30, 32 << 20, 1 << 40) == 2  # lo
    assert rotation_count(1 << 30, 32 << 20, 1 << 30) == 1  # budget fits one set
    with pytest.raises(ValueError):
        rotation_count(0, 1, 1)


def test_time_op_cpu_rotates_buffers_and_reports_both_figures():
    dev = resolve_device("cpu")
    seen = []
    bufs = [torch.randn(64, 64) for _ in range(3)]

    def run(i):
        seen.append(i % 3)
        return bufs[i % 3] @ bufs[i % 3]

    t = time_op(run, dev, TimingConfig.quick())
    assert set(seen) == {0, 1, 2}
    assert t.device_method == "host-queue" and t.eager_method == "host"
    assert t.device.n >= 5 and t.eager.n >= 5
    assert 0 < t.device.median_s < 1 and 0 < t.eager.median_s < 1


def test_unknown_device_lists_available():
    with pytest.raises(ValueError, match="available: cpu"):
        resolve_device("cuda:7")


class _SlowPeer:
    """A second rank seen through world_max: busy warming up for ``rounds`` rounds, ``per_call_s`` per call."""

    def __init__(self, rounds: int, per_call_s: float, sample_s: float):
        self.rounds, self.per_call_s, self.sample_s, self.calls = rounds, per_call_s, sample_s, 0

    def __call__(self, xs: list[float]) -> list[float]:
        self.calls += 1
        if len(xs) == 2 and self.calls <= self.rounds + 1:  # a warm-up round: [not_done, per_call]
            peer = [1.0 if self.calls <= self.rounds else 0.0, self.per_call_s]
        else:
            peer = [self.sample_s] * len(xs)
        return [max(a, b) for a, b in zip(xs, peer)]


@pytest.mark.parametrize("active", [True, False])
def test_rank_timer_agrees_with_the_slowest_rank(active):
    from accelcal.kernels.timing import RankTimer, reps_for

    cfg = TimingConfig(warmup_s=0.0, budget_s=0.05, min_reps=3, max_reps=40, queue_len=4)
    calls, barriers = [], []
    peer = _SlowPeer(rounds=3, per_call_s=1e-3, sample_s=0.25)
    t = RankTimer(resolve_device("cpu"), cfg, peer, barrier=lambda: barriers.append(1), active=active)
    i = t.warmup(calls.append)
    # this rank is done at once, but keeps warming up (two calls a round) until the peer is: 4 rounds
    assert i == len(calls) == 8 and t.per_call_s >= 1e-3
    q = t.queue(calls.append, start=i)
    assert len(q) == reps_for(t.per_call_s, cfg, cfg.queue_len) and all(x >= 0.25 for x in q)
    e = t.eager(calls.append, start=i)
    assert len(e) == reps_for(t.per_call_s, cfg, 1)
    # an inactive rank (outside the timed group) runs nothing but joins every agreement
    assert len(calls) == 8 + (len(q) * cfg.queue_len + len(e) if active else 0)
    assert len(barriers) == (len(q) + len(e) if active else 0)


def test_replicas_copy_the_first_set_to_new_storage():
    from accelcal.kernels.cases import REPLICA_ALIGN_BYTES, replicas

    first = (torch.randn(4, 8), torch.randn(3, 5), torch.randn(2, 3).to(torch.float8_e4m3fn))
    sets = replicas(first, 5)
    assert len(sets) == 5 and all(isinstance(s, tuple) and len(s) == 3 for s in sets)
    for s in sets:
        assert all(a.shape == b.shape and a.dtype == b.dtype and a.is_contiguous() for a, b in zip(s, first))
        assert torch.equal(s[0], first[0]) and torch.equal(s[1], first[1])
        assert torch.equal(s[2].float(), first[2].float())
    ptrs = [t.data_ptr() for s in sets for t in s]
    assert len(set(ptrs)) == 15  # every tensor of every set at its own address
    for j in range(3):  # each tensor position in one buffer, slots on the alignment boundary
        base = sets[0][j].data_ptr()
        assert all((s[j].data_ptr() - base) % REPLICA_ALIGN_BYTES == 0 for s in sets)
    sets[1][0].add_(1.0)  # replicas do not share storage
    assert torch.equal(sets[0][0], first[0]) and not torch.equal(sets[1][0], first[0])
    a, b = replicas([torch.ones(3)], 2)
    assert isinstance(b, list) and b[0].data_ptr() != a[0].data_ptr()
    t = torch.randn(6, 4).t()  # not contiguous: plain copies keep its layout
    assert [x.stride() for x in replicas(t, 2)] == [t.clone().stride()] * 2
    with pytest.raises(ValueError, match="sets must be >= 1"):
        replicas(first, 0)
    with pytest.raises(TypeError, match="tensor or a tuple/list"):
        replicas({"x": torch.ones(1)}, 2)


def test_command_line_names_python_m_accelcal_as_accelcal(monkeypatch):
    import accelcal
    from accelcal.kernels.environment import COMMAND_ENV, command_line

    monkeypatch.delenv(COMMAND_ENV, raising=False)
    main_py = str(Path(accelcal.__file__).with_name("__main__.py"))
    monkeypatch.setattr(sys, "argv", [main_py, "env", "--device", "auto"])
    assert command_line() == "accelcal env --device auto"
    monkeypatch.setattr(sys, "argv", ["/usr/bin/accelcal", "bench", "kernels"])
    assert command_line() == "accelcal bench kernels"


def test_a_cpu_index_other_than_0_is_refused():
    from accelcal.kernels.device import resolve_device

    assert resolve_device("cpu:0").spec == resolve_device("cpu").spec == "cpu"
    with pytest.raises(ValueError, match=r"device 'cpu:5': the CPU is one device"):
        resolve_device("cpu:5")
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        resolve_device("bogus")
