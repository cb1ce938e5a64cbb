"""Fits recover known parameters from synthetic data (3% noise, two outliers) and reject bad input clearly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from accelcal.calibrate.fit import fit_profile
from accelcal.calibrate.fit_alpha_beta import fit_piecewise
from accelcal.calibrate.fit_attention import fit_attention
from accelcal.calibrate.fit_gemm import fit_gemm
from accelcal.calibrate.profile import gemm_model_time_s
from accelcal.calibrate.synthetic import TRUTH, perturb, synth_collectives, synth_env, synth_kernels


def rel(a: float, b: float) -> float:
    return abs(a / b - 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_beta_recovers_parameters(seed):
    rng = np.random.default_rng(seed)
    x = np.unique(np.round(2.0 ** np.arange(10, 27, 0.5)))
    lat, bw = 20e-6, 10e9
    t = perturb(lat + x / bw, rng, 0.03, 2)
    f = fit_piecewise("all_reduce", x, t)
    assert len(f.pieces) == 1, f.pieces
    p = f.pieces[0]
    assert rel(p.latency_s, lat) < 0.05 and rel(p.bandwidth_bytes_per_s, bw) < 0.05
    assert f.quality.heldout_median_rel_err < 0.05 and f.quality.converged
    assert f.quality.points == x.size and f.quality.range_min == x.min() and f.quality.range_max == x.max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_piecewise_finds_protocol_switch(seed):
    rng = np.random.default_rng(seed)
    x = np.unique(np.round(2.0 ** np.arange(10, 27, 0.5)))
    (l0, b0), (l1, b1) = (5e-6, 2e9), (40e-6, 12e9)
    split = 65536
    t = perturb(np.where(x <= split, l0 + x / b0, l1 + x / b1), rng, 0.03, 2)
    f = fit_piecewise("all_reduce", x, t)
    assert len(f.pieces) == 2, "held-out error should pick two pieces"
    a, b = f.pieces
    # Near the switch both regimes give times within the noise, so the split may land an octave or two late.
    assert 65536 <= a.max_bytes < 4 * 65536 and b.max_bytes is None
    assert rel(a.latency_s, l0) < 0.05 and rel(a.bandwidth_bytes_per_s, b0) < 0.05
    assert rel(b.latency_s, l1) < 0.05 and rel(b.bandwidth_bytes_per_s, b1) < 0.05
    assert f.quality.heldout_median_rel_err <= 0.10 and not f.quality.flags


@pytest.mark.parametrize("seed", [0, 1])
def test_gemm_roofline_recovers_parameters(seed):
    rng = np.random.default_rng(seed)
    par = TRUTH["gemm"]["bf16"]
    shapes = [(m, n, k) for n, k in TRUTH["gemm_lines"] for m in TRUTH["gemm_ms"]]
    t = perturb(np.array([gemm_model_time_s(m, n, k, 2, par["peak_flop_per_s"], par["memory_bandwidth_bytes_per_s"],
                                            par["overhead_s"]) for m, n, k in shapes]), rng, 0.03, 2)
    e = fit_gemm("bf16", [[*s, tv] for s, tv in zip(shapes, t)])
    assert rel(e.peak_flop_per_s, par["peak_flop_per_s"]) < 0.05
    assert rel(e.memory_bandwidth_bytes_per_s, par["memory_bandwidth_bytes_per_s"]) < 0.05
    q = e.quality
    assert q.heldout_median_rel_err <= 0.05 and q.converged and q.points == len(shapes)


def test_gemm_wave_quantisation_is_chosen_when_it_predicts_better():
    rng = np.random.default_rng(3)
    units = 8
    shapes = [(m, n, 2048) for n in (1024, 1536) for m in range(128, 128 * 40, 160)]
    t = perturb(np.array([gemm_model_time_s(m, n, k, 2, 1e13, 1e12, 5e-6, wave_units=units) for m, n, k in shapes]),
                rng, 0.01, 0)
    e = fit_gemm("bf16", [[*s, tv] for s, tv in zip(shapes, t)], wave_units=units)
    assert e.wave_units == units
    assert rel(e.peak_flop_per_s, 1e13) < 0.05
    # The step: one more 128-row tile past a full wave costs a whole wave.
    n = 1024
    tiles_per_row = n // 128
    full = units * 4 // tiles_per_row * 128  # M that fills exactly 4 waves
    step = e.model_time_s(full + 1, n, 2048, 2) / e.model_time_s(full, n, 2048, 2)
    assert step == pytest.approx(5 / 4, rel=0.02)


def test_attention_recovers_binding_rates():
    k = synth_kernels(seed=0, noise=0.03, outliers=0)
    for phase, idx in (("prefill", 1), ("decode", 2)):
        rows = k[(k["op"] == f"attn_{phase}")]
        e = fit_attention("fp32", phase, rows.to_dict("records"), rows["median_s"].values)
        truth = TRUTH["attention"][phase][idx]
        got = e.flop_per_s if idx == 1 else e.bytes_per_s
        assert rel(got, truth) < 0.05, (phase, got, truth)


@pytest.mark.parametrize("times, match", [
    ([1e-3, 2e-3], "too few points to fit: got 2, need at least 3"),
    ([1e-3, float("nan"), 3e-3, 4e-3], "finite and > 0"),
    ([1e-3, 0.0, 3e-3, 4e-3], "finite and > 0"),
])
def test_alpha_beta_bad_input(times, match):
    sizes = [1024.0 * (i + 1) for i in range(len(times))]
    with pytest.raises(ValueError, match=match) as exc:
        fit_piecewise("all_gather", sizes, times)
    assert "all_gather" in str(exc.value)


def test_alpha_beta_constant_sizes():
    with pytest.raises(ValueError, match=r"all_reduce: all 5 points have the same size_bytes \(4096\)"):
        fit_piecewise("all_reduce", [4096.0] * 5, [1e-5, 1.1e-5, 1e-5, 0.9e-5, 1e-5])


def test_gemm_bad_input():
    with pytest.raises(ValueError, match="gemm fp32: too few measured shapes to fit: got 2, need at least 4"):
        fit_gemm("fp32", [[1, 2, 3, 1e-3], [2, 2, 3, 2e-3]])
    with pytest.raises(ValueError, match="median_s must be finite and > 0"):
        fit_gemm("fp32", [[1, 2, 3, 1e-3], [2, 2, 3, 0.0], [4, 2, 3, 1e-3], [8, 2, 3, 1e-3]])
    with pytest.raises(ValueError, match="same FLOP count"):
        fit_gemm("fp32", [[4, 4, 4, 1e-3]] * 5)
    with pytest.raises(ValueError, match="unknown dtype"):
        fit_gemm("int3", [[4, 4, 4, 1e-3]] * 5)


def test_fit_flags_missed_target():
    rng = np.random.default_rng(0)
    x = np.unique(np.round(2.0 ** np.arange(10, 20)))
    t = (1e-5 + x / 1e9) * np.exp(rng.normal(0, 0.4, x.size))  # 40% scatter: no model meets 10%
    f = fit_piecewise("broadcast", x, t)
    assert any("target missed" in fl for fl in f.quality.flags)


def test_fit_profile_end_to_end_ignores_skips():
    k = synth_kernels()
    # A failed and a skipped row must be ignored, not fitted.
    extra = k.iloc[[0]].copy()
    extra["status"] = "failed"
    extra["median_s"] = 1e3
    k = pd.concat([k, extra], ignore_index=True)
    notes: list[str] = []
    p = fit_profile(k, synth_collectives(), synth_env(), "pytest", notes=notes)
    assert p.identity.source == "measured" and p.identity.command == "pytest"
    assert set(p.compute) == {"fp32", "bf16"} and set(p.memory) == {"copy", "read", "write"}
    assert p.overheads.eager_launch_s == TRUTH["overheads"]["launch_eager"] and p.overheads.graph_kernel_s is None
    assert rel(p.memory["read"].bandwidth_bytes_per_s, TRUTH["memory"]["read"][1]) < 0.05
    assert {c.op for c in p.collectives} == {"all_reduce", "all_gather"}
    assert p.identity.devices_per_node == 2  # CPU: the ranks of the largest intra-node group
    assert any("fitted gemm bf16" in n for n in notes)


def test_fit_profile_without_gemm_is_an_error():
    k = synth_kernels()
    with pytest.raises(ValueError, match="no GEMM dtype could be fitted"):
        fit_profile(k[k["op"] != "gemm"], None, synth_env(), "pytest")
