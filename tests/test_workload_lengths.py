"""What a benchmark client's --random-range-ratio draws: vLLM's x(1 +- r) ('around') and SGLang / bench_serving's
x r .. x ('below'), and what `accelcal predict` says about it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from accelcal.cli import main
from accelcal.planner.serving.workload import ServingWorkload

MEASURED = str(Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml")


def _lengths(**kw):
    return ServingWorkload(isl=1000, osl=200, concurrency=4, num_requests=20000, **kw).lengths()


def test_below_draws_between_r_x_and_x_both_ends_included():
    isls, osls = _lengths(range_ratio=0.8, range_mode="below")
    assert isls.min() == 800 and isls.max() == 1000 and osls.min() == 160 and osls.max() == 200
    # uniform integers 800..1000: mean 900, each of the 201 values about 1/201 of the draws
    assert abs(isls.mean() - 900) < 2 and abs(osls.mean() - 180) < 0.5
    assert np.bincount(isls - 800).min() > 20000 / 201 * 0.6


def test_around_draws_x_times_one_plus_or_minus_r():
    isls, osls = _lengths(range_ratio=0.5)
    assert isls.min() == 500 and isls.max() == 1500 and abs(isls.mean() - 1000) < 6
    assert osls.min() == 100 and osls.max() == 300


@pytest.mark.parametrize("mode, ratio", [("around", 0.0), ("below", 1.0)])
def test_each_mode_has_its_fixed_length_ratio(mode, ratio):
    w = ServingWorkload(isl=1000, osl=200, concurrency=4, range_ratio=ratio, range_mode=mode)
    isls, osls = w.lengths()
    assert w.fixed_lengths and set(isls) == {1000} and set(osls) == {200} and w.mean_lengths == (1000, 200)


def test_sglangs_default_ratio_zero_below_spreads_from_one_token():
    w = ServingWorkload(isl=1000, osl=200, concurrency=4, num_requests=5000, range_ratio=0.0, range_mode="below")
    isls, osls = w.lengths()
    # clamped to 1 token as SGLang's compute_random_lens does (5000 draws of 1..200 reach 1)
    assert not w.fixed_lengths and isls.min() < 20 and isls.max() == 1000 and osls.min() == 1
    assert w.bounds(1000) == (1, 1000)


@pytest.mark.parametrize("mode, fixed_ratio", [("around", 0.0), ("below", 1.0)])
def test_no_ratio_is_each_modes_fixed_lengths(mode, fixed_ratio):
    w = ServingWorkload(isl=1000, osl=200, concurrency=4, range_mode=mode)
    assert w.range_ratio == fixed_ratio and w.fixed_lengths and w.mean_lengths == (1000, 200)


def test_mean_lengths_of_a_spread():
    assert ServingWorkload(isl=1024, osl=128, concurrency=4, range_ratio=0.8, range_mode="below").mean_lengths == (922, 115)
    assert ServingWorkload(isl=1000, osl=200, concurrency=4, range_ratio=0.5).mean_lengths == (1000, 200)


@pytest.mark.parametrize("mode, ratio, says", [
    ("around", 1.0, "got 1.0; a client that draws x r .. x, where 1 is fixed: --range-mode below"),
    ("below", 1.5, "--range-ratio must be in [0, 1] with --range-mode below"),
    ("below", -0.1, "--range-ratio must be in [0, 1] with --range-mode below"),
    ("uniform", 0.5, "--range-mode must be one of ['around', 'below'], got 'uniform'"),
])
def test_bad_ratios_and_modes_are_named(mode, ratio, says):
    with pytest.raises(ValueError, match=None) as exc:
        ServingWorkload(isl=10, osl=10, concurrency=1, range_ratio=ratio, range_mode=mode)
    assert says in str(exc.value)


def _predict(capsys, *extra):
    rc = main(["predict", "--profile", MEASURED, "--model", "llama3-8b", "--engine", "vllm", "--concurrency", "16",
               "--isl", "1024", "--osl", "128", "--num-requests", "160", *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_steady_state_runs_the_mean_request_of_a_spread_and_says_so(capsys):
    rc, spread, _ = _predict(capsys, "--method", "steady", "--range-ratio", "0.8", "--range-mode", "below", "--format", "json")
    rc2, mean, _ = _predict(capsys, "--method", "steady", "--format", "json", "--isl", "922", "--osl", "115")
    spread, mean = json.loads(spread), json.loads(mean)
    assert rc == rc2 == 0 and spread["tpot_mean_s"] == mean["tpot_mean_s"] and spread["ttft_mean_s"] == mean["ttft_mean_s"]
    assert any("the steady state leaves out the spread of --range-ratio 0.8 (below): its identical requests have the "
               "spread's mean lengths, 922 prompt and 115 output tokens" in n for n in spread["notes"])
    assert not any("leaves out --range-ratio" in n for n in spread["notes"])  # one note, not two that disagree


def test_predict_below_mode_says_the_range_and_costs_shorter_requests(capsys):
    rc, fixed, _ = _predict(capsys, "--format", "json")
    assert rc == 0
    rc, spread, _ = _predict(capsys, "--range-ratio", "0.8", "--range-mode", "below", "--format", "json")
    assert rc == 0
    fixed, spread = json.loads(fixed), json.loads(spread)
    assert spread["workload"]["range_mode"] == "below" and spread["workload"]["range_ratio"] == 0.8
    # requests of 0.9 x the tokens on average, and arrivals no longer in lockstep: each request is done sooner
    assert spread["request_latency_mean_s"] < fixed["request_latency_mean_s"]
    rc, out, _ = _predict(capsys, "--range-ratio", "0.8", "--range-mode", "below")
    assert rc == 0 and "isl 1024 osl 128 (uniform 819..1024 x 102..128: --range-ratio 0.8 below)" in out.splitlines()[0]


def test_predict_range_mode_alone_keeps_lengths_fixed_and_bad_ratio_exits_2(capsys):
    rc, out, _ = _predict(capsys, "--range-mode", "below")
    assert rc == 0 and "uniform" not in out.splitlines()[0]
    rc, below, _ = _predict(capsys, "--range-mode", "below", "--format", "json")
    rc2, plain, _ = _predict(capsys, "--format", "json")
    below, plain = json.loads(below), json.loads(plain)
    assert rc == rc2 == 0 and below["workload"]["range_ratio"] == 1.0 and plain["workload"]["range_ratio"] == 0.0
    for key in ("ttft_mean_s", "tpot_mean_s", "request_latency_mean_s", "output_tokens_per_s"):
        assert below[key] == plain[key]
    rc, _, err = _predict(capsys, "--range-ratio", "1.2", "--range-mode", "below")
    assert rc == 2 and "--range-ratio must be in [0, 1] with --range-mode below (lengths x r .. x), got 1.2" in err


def test_plan_engine_takes_the_clients_spread_and_its_rows_are_predicts(capsys):
    argv = ["--profile", MEASURED, "--model", "llama3-8b", "--engine", "vllm", "--range-ratio", "0.8",
            "--range-mode", "below"]
    rc = main(["plan", *argv, "--concurrency", "32", "--ttft", "1", "--isl", "2048", "--osl", "256", "--format",
               "json"])
    best = json.loads(capsys.readouterr().out)["ranked"][0]
    assert rc == 0 and best["checked_by"].startswith("simulate")
    rc, out, _ = _predict_at(capsys, *argv, "--concurrency", "32", "--isl", "2048", "--osl", "256", "--format", "json")
    pred = json.loads(out)
    assert rc == 0 and best["ttft_s"] == pytest.approx(pred["ttft_mean_s"]) and best["tpot_s"] == pytest.approx(
        pred["tpot_mean_s"])
    rc = main(["plan", *argv, "--concurrency", "8"])
    out = capsys.readouterr().out
    assert rc in (0, 4) and "(--range-ratio 0.8 below: simulated rows draw the lengths, steady rows run their mean, " \
                            "1843 x 230)" in out.splitlines()[0]
    # without --engine the layer-level planner has no client: refused by name
    assert main(["plan", "--profile", MEASURED, "--model", "llama3-8b", "--range-ratio", "0.8"]) == 2
    assert "--range-ratio: option(s) of the serving search; add --engine" in capsys.readouterr().err


def _predict_at(capsys, *argv):
    rc = main(["predict", *argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err
