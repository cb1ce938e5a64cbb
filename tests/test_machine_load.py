"""accelcal.machine_load: a busy machine is told from this run's own CPU use."""

from __future__ import annotations

import accelcal.machine_load as ml


def _ticks(monkeypatch, end, cores=2):
    monkeypatch.setattr(ml, "cpu_seconds", lambda: end)
    monkeypatch.setattr(ml.os, "cpu_count", lambda: cores)


def test_other_processes_above_a_quarter_of_the_cores_make_a_busy_run(monkeypatch):
    # 10 s: the machine's busy CPU seconds grew by 18, 2 of them this run's own: 1.6 cores' worth of others
    _ticks(monkeypatch, (118.0, 12.0))
    note = ml.busy_note((100.0, 10.0), 10.0, "the measurements")
    assert note.startswith("the machine was busy: other processes used 1.60 of 2 cores on average during the "
                           "measurements")


def test_this_runs_own_work_does_not_count(monkeypatch):
    # the machine was busy 18 s of 10 s wall time, all of it this run (its ranks on both cores): quiet otherwise
    _ticks(monkeypatch, (118.0, 28.0))
    assert ml.busy_note((100.0, 10.0), 10.0, "validation") == ""
    # 0.4 cores of others is under a quarter of 2 cores
    _ticks(monkeypatch, (106.0, 12.0))
    assert ml.busy_note((100.0, 10.0), 10.0, "validation") == ""


def test_no_proc_stat_or_no_time_gives_no_note(monkeypatch):
    _ticks(monkeypatch, None)
    assert ml.busy_note((100.0, 10.0), 10.0, "validation") == ""
    _ticks(monkeypatch, (200.0, 10.0))
    assert ml.busy_note(None, 10.0, "validation") == "" and ml.busy_note((100.0, 10.0), 0.0, "validation") == ""

