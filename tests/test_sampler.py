"""The engine's sampler: its op sequences sample correctly, the suite times them, the fit and the serving steps use them."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from accelcal.calibrate.fit import fit_profile
from accelcal.calibrate.profile import MissingMeasurement, Profile, ProfileError
from accelcal.calibrate.synthetic import synth_env, synth_kernels
from accelcal.kernels.sampler import SAMPLER_KINDS, run_sampler, sample_logits
from accelcal.models import ModelConfig
from accelcal.planner.parallelism import Parallelism
from accelcal.planner.serving.engine import EnginePreset
from accelcal.planner.serving.step_cost import StepCoster
from accelcal.vocab import SAMPLER_BYTES_PER_LOGIT

TRUE_LATENCY_S = {"argmax": 8e-6, "top_k_top_p_sort": 40e-6}
TRUE_BW = {"argmax": 2.0e11, "top_k_top_p_sort": 5.0e10}


def _with_sampler(kern: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for kind in TRUE_LATENCY_S:
        for batch in (1, 8, 64, 256):
            elems = batch * 32000
            nbytes = SAMPLER_BYTES_PER_LOGIT[kind] * elems
            rows.append(dict(suite="kernels", op="sampler", case=f"{kind}_b{batch}", dtype="bf16", figure="device",
                             method="graph", status="ok", reason="", n_samples=9,
                             median_s=TRUE_LATENCY_S[kind] + nbytes / TRUE_BW[kind], bytes=nbytes, kind=kind,
                             batch=batch, vocab=32000, elements=elems))
    return pd.concat([kern, pd.DataFrame(rows)], ignore_index=True)


def test_op_sequences_sample_what_they_should():
    torch.manual_seed(0)
    logits = torch.randn(64, 1000)
    logits[:, 7] += 30.0  # one token holds nearly all the mass
    for kind in SAMPLER_KINDS:
        assert (sample_logits(kind, logits.to(torch.bfloat16)) == 7).all(), kind
    flat = torch.zeros(20000, 4)
    flat[:, 0] = 2.0  # probabilities e^2 : 1 : 1 : 1 at temperature 1
    freq = torch.bincount(sample_logits("softmax_sample", flat, temperature=1.0), minlength=4).float() / 20000
    expect = torch.tensor([7.389, 1.0, 1.0, 1.0]) / 10.389
    assert torch.allclose(freq, expect, atol=0.02)
    # top-k 2 keeps tokens 0 and 1; top-p 0.5 then keeps token 0 alone (it holds 0.88 of the two)
    ranked = torch.tensor([[3.0, 1.0, 0.5, 0.0]]).repeat(2000, 1)
    assert set(sample_logits("top_k_top_p_sort", ranked, temperature=1.0, top_k=2, top_p=1.0).tolist()) == {0, 1}
    assert set(sample_logits("top_k_top_p_sort", ranked, temperature=1.0, top_k=2, top_p=0.5).tolist()) == {0}
    with pytest.raises(ValueError, match="unknown sampler kind 'beam'"):
        sample_logits("beam", logits)


def test_suite_times_each_kind_with_its_traffic_model_bytes():
    from accelcal.kernels.cases import SweepContext
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import TimingConfig
    from accelcal.results import ResultSet

    ctx = SweepContext.create(resolve_device("cpu"), ResultSet("kernels"),
                              timing=TimingConfig(warmup_s=0.0, budget_s=0.002, min_reps=3, max_reps=3, queue_len=2),
                              progress=None)
    run_sampler(ctx, batches=(1, 4), vocab=512)
    dev = ctx.results.frame()
    dev = dev[(dev["figure"] == "device") & (dev["status"] == "ok")]
    assert sorted(dev["kind"].unique()) == sorted(SAMPLER_KINDS) and len(dev) == 3 * 2
    for _, r in dev.iterrows():
        assert r["elements"] == r["batch"] * 512
        assert r["bytes"] == pytest.approx(SAMPLER_BYTES_PER_LOGIT[r["kind"]] * r["elements"])
        assert r["dtype"] == ("fp32" if r["kind"] == "argmax" else "bf16") and r["median_s"] > 0
    with pytest.raises(ValueError, match="unknown sampler kind"):
        run_sampler(ctx, batches=(1,), vocab=512, kinds=("beam",))
    with pytest.raises(ValueError, match="vocab must be >= 2"):
        run_sampler(ctx, batches=(1,), vocab=1)


def test_fit_recovers_each_kinds_latency_and_bandwidth_and_round_trips(tmp_path):
    p = fit_profile(_with_sampler(synth_kernels()), None, synth_env(), "pytest")
    for kind in TRUE_LATENCY_S:
        e = p.sampler[kind]
        assert e.bandwidth_bytes_per_s == pytest.approx(TRUE_BW[kind], rel=0.01)
        assert e.latency_s == pytest.approx(TRUE_LATENCY_S[kind], rel=0.05)
    path = tmp_path / "p.yaml"
    p.save(path)
    q = Profile.load(path)
    logits = 128 * 151936
    est = q.sampler_time_s("top_k_top_p_sort", logits)
    assert est.time_s == pytest.approx(TRUE_LATENCY_S["top_k_top_p_sort"] + 282 * logits / TRUE_BW["top_k_top_p_sort"],
                                       rel=0.01)
    assert est.source == "sampler.top_k_top_p_sort"
    with pytest.raises(MissingMeasurement, match="no sampler data for 'softmax_sample'"):
        q.sampler_time_s("softmax_sample", logits)
    with pytest.raises(ValueError, match="unknown sampler kind 'beam'"):
        q.sampler_time_s("beam", logits)
    d = q.to_dict()
    d["sampler"]["argmaxx"] = d["sampler"].pop("argmax")
    with pytest.raises(ProfileError, match=r"sampler.*unknown key\(s\) \['argmaxx'\]"):
        Profile.from_dict(d, origin="bad.yaml")


def test_serving_steps_sample_the_whole_vocabulary_from_the_measurement_or_the_copy_estimate():
    p = fit_profile(_with_sampler(synth_kernels()), None, synth_env(), "pytest")
    model = ModelConfig.from_name("small")
    batch, kv = 16, 700
    logits = batch * model.vocab_size
    base = EnginePreset.from_name("vllm").with_overrides({"sampler": "argmax"}, "test")
    sort = base.with_overrides({"sampler": "top_k_top_p_sort"}, "test")
    light = StepCoster(p, model, Parallelism(), base)
    heavy = StepCoster(p, model, Parallelism(), sort)
    # the measured kinds: the steps differ by exactly the two measurements' difference
    diff = p.sampler_time_s("top_k_top_p_sort", logits).time_s - p.sampler_time_s("argmax", logits).time_s
    assert heavy.step_s(batch, kv) - light.step_s(batch, kv) == pytest.approx(diff, rel=1e-9)
    assert any("top_k_top_p_sort sampler" in n and "measured" in n for n in heavy.notes)
    # without the section: the kind's bytes per logit at the copy bandwidth, and the note says it is estimated
    bare = copy.deepcopy(p)
    bare.sampler = {}
    est = StepCoster(bare, model, Parallelism(), sort)
    cheap = StepCoster(bare, model, Parallelism(), base)
    copy_diff = (bare.memory_time_s(282 * logits, "copy").time_s - bare.memory_time_s(4 * logits, "copy").time_s)
    assert est.step_s(batch, kv) - cheap.step_s(batch, kv) == pytest.approx(copy_diff, rel=1e-9)
    assert any("sampler-not-measured" in n and "282 bytes per logit" in n for n in est.notes)
    with pytest.raises(ValueError, match="sampler = 'beam'; expected one of"):
        base.with_overrides({"sampler": "beam"}, "test")


def test_sampler_estimate_benchmark_reads_a_profiles_raw_data(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("sampler_estimate",
                                                  Path(__file__).resolve().parents[1] / "benchmarks/sampler_estimate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    kern = _with_sampler(synth_kernels())
    kern.to_csv(tmp_path / "kernels.csv", index=False)
    p = fit_profile(kern, None, synth_env(), "pytest")
    p.identity.raw_data = ["kernels.csv"]
    p.save(tmp_path / "p.yaml")
    assert mod.main(["--profile", str(tmp_path / "p.yaml")]) == 0
    out = capsys.readouterr().out
    rows = kern[kern["op"] == "sampler"]
    ratios = [p.memory_time_s(r["elements"] * 282, "copy").time_s / r["median_s"]
              for _, r in rows[rows["kind"] == "top_k_top_p_sort"].iterrows()]
    import numpy as np
    assert f"top_k_top_p_sort  estimate / measured: median x{np.median(ratios):.2f}" in out
    # a profile calibrated before the sampler sweep says so and exits 1; a missing file is bad input (2)
    bare = fit_profile(synth_kernels(), None, synth_env(), "pytest")
    synth_kernels().to_csv(tmp_path / "old.csv", index=False)
    bare.identity.raw_data = ["old.csv"]
    bare.save(tmp_path / "old.yaml")
    assert mod.main(["--profile", str(tmp_path / "old.yaml")]) == 1
    assert "no sampler measurements" in capsys.readouterr().err
    assert mod.main(["--profile", str(tmp_path / "missing.yaml")]) == 2
