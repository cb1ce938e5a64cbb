"""Progress: a bar with elapsed time and ETA on a terminal, one line per stage in a log, nothing when quiet."""

from __future__ import annotations

import io
import re

import pytest

from accelcal.kernels.shapes import GemmShape, SuitePreset
from accelcal.kernels.suite import run_suite
from accelcal.progress import StageProgress

TINY = SuitePreset(name="tiny-progress", timing="quick", dtypes=("fp32",), gemm_shapes=(GemmShape("t.qkv", 32, 32),),
                   gemm_ms=(1, 8), square_ms=(), memory_sizes_bytes=(4096,), attention_cases=(), attention_dtypes=(),
                   case_budget_s=2.0, overhead_queue_len=5)


def test_log_mode_prints_one_line_per_stage_with_elapsed_time_and_skips():
    out = io.StringIO()
    bar = StageProgress("kernels", stream=out, tty=False)
    bar.start("gemm", 3)
    for _ in range(3):
        bar.advance("case")
    bar.skipped()
    bar.start("memory", 2)  # starting the next stage closes the previous one
    bar.advance()
    bar.close()
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"\[kernels\] gemm: 3 cases in \d+\.\d s \(1 skipped\)", lines[0]), lines
    assert re.fullmatch(r"\[kernels\] memory: 1/2 cases in \d+\.\d s", lines[1]), lines
    assert len(lines) == 2


def test_log_mode_reports_a_long_stage_at_most_every_log_every_s(monkeypatch):
    clock = iter([0.0, 1.0, 12.0, 13.0, 25.0, 26.0])  # start, then one reading per advance, then close
    monkeypatch.setattr("accelcal.progress.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    bar = StageProgress("serving_accuracy", stream=out, tty=False, log_every_s=10.0)
    bar.start("rows", 4)
    for i in range(4):
        bar.advance(f"row {i}")
    bar.close()
    lines = out.getvalue().splitlines()
    # 1 s: too soon; 12 s: a line; 13 s: too soon after it; 25 s: a line; then the closing line
    assert lines[:2] == ["[serving_accuracy] rows: 2/4 after 12 s (row 1)", "[serving_accuracy] rows: 4/4 after 25 s (row 3)"]
    assert re.fullmatch(r"\[serving_accuracy\] rows: 4 cases in 26\.0 s", lines[2]) and len(lines) == 3


def test_a_stage_shorter_than_quiet_below_s_leaves_the_log_as_it_was(monkeypatch):
    # plan and predict in a log: a search of seconds prints nothing, one of minutes reports and closes
    clock = iter([0.0, 1.0, 5.0, 100.0, 130.0, 131.0])
    monkeypatch.setattr("accelcal.progress.time.perf_counter", lambda: next(clock))
    out = io.StringIO()
    bar = StageProgress("plan", stream=out, tty=False, log_every_s=20.0, quiet_below_s=20.0)
    bar.start("steady state", 2)
    bar.advance("a")
    bar.close()  # 5 s: quiet
    assert out.getvalue() == ""
    bar.start("re-checks by simulation", 2)
    bar.advance("b")  # 130 s after the 100 s start: past 20 s, a line
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[plan] re-checks by simulation: 1/2 after 30 s (b)"
    assert re.fullmatch(r"\[plan\] re-checks by simulation: 1/2 cases in 31\.0 s", lines[1]) and len(lines) == 2


def test_quiet_prints_nothing():
    out = io.StringIO()
    bar = StageProgress(stream=out, tty=True, quiet=True)
    bar.start("gemm", 5)
    bar.advance("x")
    bar.write("a note")
    bar.close()
    assert out.getvalue() == ""


def test_terminal_mode_draws_a_tqdm_bar_with_elapsed_and_eta():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    bar = StageProgress("kernels", stream=out, tty=True)
    bar.start("gemm", 4)
    for i in range(4):
        bar.advance(f"m{i}")
    bar.close()
    text = out.getvalue()
    assert "kernels gemm" in text and "4/4" in text
    assert re.search(r"\d\d:\d\d<\d\d:\d\d", text), text  # elapsed<remaining


def test_case_lines_of_a_sweep_drive_the_bar_and_other_lines_pass_through():
    out = io.StringIO()
    bar = StageProgress("collectives", stream=out, tty=False)
    feed = bar.lines("sweep")
    feed("collectives: started 2 rank(s)")
    for line in ("[1/4] all_reduce 1 KiB pipelined", "[1/4] all_reduce 1 KiB blocking", "[2/4] all_gather 1 KiB"):
        feed(line)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "collectives: started 2 rank(s)"
    assert re.fullmatch(r"\[collectives\] sweep: 2/4 cases in \d+\.\d s", lines[1]), lines


def test_kernel_suite_reports_one_line_per_op_group(tmp_path):
    out = io.StringIO()
    run_suite("cpu", preset=TINY, ops=["gemm", "memory"], progress=None,
              bar=StageProgress("kernels", stream=out, tty=False))
    lines = out.getvalue().splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["[kernels] gemm", "[kernels] memory"], lines


def test_a_counter_opens_its_stage_only_once_the_work_runs_long(monkeypatch):
    pytest.importorskip("tqdm")
    import accelcal.progress as progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    out = io.StringIO()
    bar = StageProgress("predict", stream=out, tty=True)
    feed = bar.counter("simulated requests", after_s=2.0)
    feed(10, 400)  # 0 s in: a quick run draws nothing
    clock[0] += 1.0
    feed(50, 400)
    assert out.getvalue() == ""
    clock[0] += 1.5
    feed(120, 400)
    feed(400, 400)
    bar.close()
    text = out.getvalue()
    assert "predict simulated requests" in text and "400/400" in text


def test_a_long_simulation_reports_its_finished_requests(monkeypatch):
    # predict's bar: the simulator reports (finished, requests in the run) every PROGRESS_EVERY_STEPS passes
    from accelcal.calibrate.profile import Profile
    from accelcal.planner.serving import simulate
    from accelcal.planner.serving.predict import predict_serving

    from planner_profiles import h100_like

    monkeypatch.setattr(simulate, "PROGRESS_EVERY_STEPS", 8)
    seen = []
    res = predict_serving(Profile.from_dict(h100_like()), "small", "vllm", concurrency=4, isl=64, osl=32,
                          num_requests=24, progress=lambda d, t: seen.append((d, t)))
    assert res.feasible and seen
    assert all(t == 24 for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert 0 <= seen[0][0] < seen[-1][0] <= 24
