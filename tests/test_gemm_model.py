"""The GEMM shape model: its terms, recovery of known parameters, family-held-out evaluation, profile round trip."""

import dataclasses
import math

import numpy as np
import pytest

from accelcal.calibrate.fit_gemm import families, family_heldout_errors, fit_gemm, fit_gemm_model
from accelcal.calibrate.gemm_model import GemmModel
from accelcal.calibrate.profile import Profile, ProfileError

TRUE = GemmModel(peak_flop_per_s=4.0e13, memory_bandwidth_bytes_per_s=2.0e11, overhead_s=5e-6, element_bytes=2,
                 wave_units=8, tile_m=64, tile_n=128, split_k_min=512, gemv_max_m=0, sharpness=6.0)
GRID = [(tm, tn, s, 0) for tm in (32, 64, 128) for tn in (64, 128) for s in (None, 512)]
MS = [1, 16, 64, 65, 128, 256, 1024, 4096]
FAMILIES = [(1024, 1024), (2048, 1024), (1024, 4096), (3072, 2048), (512, 8192)]


def _points(model, fams=FAMILIES, ms=MS, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    pts = [[m, n, k, model.time_s(m, n, k)] for n, k in fams for m in ms]
    return [p[:3] + [p[3] * (1 + rng.normal(0, noise))] for p in pts]


def test_wave_quantisation_step_and_split_k_terms():
    # N = 512 with 128-wide tiles: 4 column tiles; M=128 fills 2 x 4 = 8 units (one wave), M=129 needs a second.
    a, b = TRUE.terms(128, 512, 8192), TRUE.terms(129, 512, 8192)
    assert a["waves"] == 1 and b["waves"] == 2
    assert b["compute_s"] / a["compute_s"] == pytest.approx(2.0)
    # Few tiles: K is split so idle units work; compute time drops by the split factor.
    c = TRUE.terms(16, 512, 8192)
    assert c["tiles"] == 4 and c["split_k"] == 2
    assert c["compute_s"] == pytest.approx(2 * 64 * 128 * 4096 / (TRUE.peak_flop_per_s / 8))
    # Small M on a GEMV path is memory-bound (no tile padding), large M compute-bound.
    gemv = dataclasses.replace(TRUE, gemv_max_m=1).terms(1, 4096, 4096)
    assert gemv["gemv"] and gemv["regime"] == "memory-bound"
    assert TRUE.terms(4096, 4096, 4096)["regime"] == "compute-bound"


def test_fit_recovers_known_parameters():
    pts = _points(TRUE, noise=0.01)
    g, ok, flags = fit_gemm_model("bf16", pts, wave_units=8, grid=GRID)
    assert ok and not flags
    # 64x128 tiles with K split in two and 64x64 tiles unsplit do the same work per unit on these shapes, so
    # only the M tile (seen at M = 64 -> 65) is identifiable; the step it makes must be the true one.
    assert g.tile_m == 64
    assert g.peak_flop_per_s == pytest.approx(TRUE.peak_flop_per_s, rel=0.05)
    assert g.memory_bandwidth_bytes_per_s == pytest.approx(TRUE.memory_bandwidth_bytes_per_s, rel=0.05)
    assert g.overhead_s == pytest.approx(TRUE.overhead_s, rel=0.3)
    step = lambda mdl: mdl.time_s(1025, 512, 1024) / mdl.time_s(1024, 512, 1024)  # noqa: E731
    assert step(TRUE) > 1.05 and step(g) == pytest.approx(step(TRUE), rel=0.03)
    # Shapes no family had, in both regimes.
    for m, n, k in [(1, 6144, 1536), (32, 640, 2560), (2048, 1536, 1536)]:
        assert g.time_s(m, n, k) == pytest.approx(TRUE.time_s(m, n, k), rel=0.05)


def test_cpu_fit_recovers_a_per_column_cost_and_gpu_fits_keep_it_zero():
    # A one-unit CPU device whose kernel pays 60 ns per weight column whatever M (weight-panel packing): left
    # out, a K = 512 family comes out fast and a K = 4096 one slow; the fit finds the cost and predicts both.
    cpu = GemmModel(peak_flop_per_s=1.0e11, memory_bandwidth_bytes_per_s=1.2e10, overhead_s=1e-5, element_bytes=2,
                    sharpness=1.0, column_s=6e-8)
    fams = [(768, 512), (3584, 512), (512, 1792), (1024, 3584), (1536, 1024), (7168, 1024)]
    pts = _points(cpu, fams=fams, ms=[1, 2, 8, 16, 64, 128, 256], noise=0.005)
    g, ok, _ = fit_gemm_model("bf16", pts, wave_units=None, grid=[(1, 1, None, 0)])
    assert ok and g.column_s == pytest.approx(6e-8, rel=0.15)
    errs = family_heldout_errors("bf16", pts, None, fit=lambda d, p, w: fit_gemm_model(d, p, w, grid=[(1, 1, None, 0)])[0])
    assert np.median(errs) < 0.03 and np.percentile(errs, 90) < 0.06
    no_col = dataclasses.replace(cpu, column_s=0.0)
    assert cpu.time_s(1, 768, 512) - no_col.time_s(1, 768, 512) == pytest.approx(768 * 6e-8)
    # GPU devices (several units) do not fit it: their kernels do not repack weights per call.
    gpu, _, _ = fit_gemm_model("bf16", _points(TRUE, noise=0.01), wave_units=8, grid=GRID)
    assert gpu.column_s < 1e-15
    # Profiles written before the field read it as 0; it round-trips.
    d = cpu.to_dict()
    assert GemmModel.from_dict(d).column_s == pytest.approx(6e-8)
    d.pop("column_s")
    assert GemmModel.from_dict(d).column_s == 0.0
    with pytest.raises(ValueError, match="column_s"):
        GemmModel.from_dict(dict(cpu.to_dict(), column_s=-1.0))


def test_family_heldout_predicts_unseen_shapes():
    pts = _points(TRUE, noise=0.01)
    errs = family_heldout_errors("bf16", pts, 8, fit=lambda d, p, w: fit_gemm_model(d, p, w, grid=GRID)[0])
    assert errs.shape == (len(pts),) and np.isfinite(errs).all()
    assert np.median(errs) < 0.03 and np.percentile(errs, 90) < 0.06
    # A model that cannot know the other families (one fixed rate from the training data) fails the same test.
    def flat(d, p, w):
        arr = np.asarray(p)
        rate = np.median(arr[:, 0] * arr[:, 1] * arr[:, 2] / arr[:, 3])
        return type("M", (), {"times_s": staticmethod(lambda m, n, k: m * n * k / rate)})
    assert np.median(family_heldout_errors("bf16", pts, 8, fit=flat)) > 0.3


def test_family_heldout_needs_two_families():
    with pytest.raises(ValueError, match="needs >= 2"):
        family_heldout_errors("bf16", _points(TRUE, fams=[(1024, 1024)]), 8)
    assert families(_points(TRUE)) == sorted((float(n), float(k)) for n, k in FAMILIES)


def test_profile_round_trip_and_query_uses_the_model():
    p = Profile.load("tests/data/calibrate/good_measured.yaml")
    dt = p.dtypes()[0]
    e = p.compute[dt]
    e.gemm_model = GemmModel(**{**TRUE.to_dict(), "element_bytes": {"fp32": 4, "bf16": 2}.get(dt, 2)})
    d = p.to_dict()
    assert d["compute"][dt]["gemm_model"]["tile_m"] == 64
    q = Profile.from_dict(d)
    est = q.gemm_time_s(129, 512, 8192, dt)
    assert est.time_s == pytest.approx(e.gemm_model.time_s(129, 512, 8192))
    assert "shape model" in est.detail
    # Bandwidth what-if reaches the shape model.
    faster = q.with_bandwidth_scale(2.0).gemm_time_s(1, 8192, 8192, dt).time_s
    assert faster < 0.6 * q.gemm_time_s(1, 8192, 8192, dt).time_s
    d["compute"][dt]["gemm_model"]["tile_m"] = 0
    with pytest.raises(ProfileError, match=r"gemm_model\.tile_m"):
        Profile.from_dict(d, origin="x.yaml")
    d["compute"][dt]["gemm_model"] = {"peak_flop_per_s": 1.0}
    with pytest.raises(ProfileError, match="missing key"):
        Profile.from_dict(d, origin="x.yaml")


def test_profile_without_model_reads_as_before():
    p = Profile.load("tests/data/calibrate/good_measured.yaml")
    dt = p.dtypes()[0]
    assert p.compute[dt].gemm_model is None and "gemm_model" not in p.to_dict()["compute"][dt]


def test_fit_gemm_attaches_model_with_family_quality():
    true_cpu = GemmModel(peak_flop_per_s=2e11, memory_bandwidth_bytes_per_s=1e10, overhead_s=3e-5, element_bytes=4,
                         sharpness=1.5)
    pts = _points(true_cpu, ms=[1, 2, 8, 16, 64, 256], noise=0.01)
    e = fit_gemm("fp32", pts)
    assert e.gemm_model is not None and e.gemm_model.wave_units == 1
    assert e.quality.heldout_median_rel_err < 0.05
    assert e.gemm_model.sharpness == pytest.approx(1.5, rel=0.2)
    # One roof per dtype: the entry's roofline fields (shown and exported) are the kept model's own.
    assert (e.peak_flop_per_s, e.memory_bandwidth_bytes_per_s, e.overhead_s, e.wave_units) == (
        e.gemm_model.peak_flop_per_s, e.gemm_model.memory_bandwidth_bytes_per_s, e.gemm_model.overhead_s, None)
    assert e.peak_flop_per_s == pytest.approx(true_cpu.peak_flop_per_s, rel=0.1)
    assert math.isclose(e.estimate_s(16, 1024, 1024, 4)[0], pts[FAMILIES.index((1024, 1024)) * 6 + 3][3], rel_tol=1e-9)


def test_family_folds_group_whole_families():
    from accelcal.calibrate.fit_gemm import family_folds

    pts = _points(TRUE)
    one = family_folds(pts)
    assert len(set(one)) == len(FAMILIES)
    grouped = family_folds(pts, folds=2)
    assert set(grouped) == {0, 1}
    for (n, k) in FAMILIES:  # every M of a family lands in one fold
        assert len({g for g, p in zip(grouped, pts) if (p[1], p[2]) == (n, k)}) == 1


def test_nested_selection_never_uses_the_predicted_family():
    from accelcal.calibrate.fit_gemm import nested_selection

    fold = np.repeat(np.arange(4), 5)
    a = np.full(20, 0.10)
    b = np.full(20, 0.02)
    b[fold == 3] = 0.50  # b is better on folds 0-2 and much worse on fold 3
    kept, sel, chosen = nested_selection({"a": a, "b": b}, fold)
    assert kept == "a"  # over all folds: median+p90 of b is dragged up by fold 3
    # fold 3 is predicted by what folds 0-2 chose (b), so its error is b's: the selection cannot dodge it.
    assert chosen[3] == "b"
    assert np.all(sel[fold == 3] == 0.50)


def test_fit_gemm_quality_is_the_out_of_sample_selection():
    from accelcal.calibrate.fit_gemm import family_folds, family_heldout_errors, gemm_candidates, nested_selection

    pts = _points(TRUE, noise=0.02, seed=4)
    e = fit_gemm("bf16", pts, wave_units=8)
    errs = {c: family_heldout_errors("bf16", pts, 8, fit=f) for c, f in gemm_candidates("bf16", 8).items()}
    kept, sel, _ = nested_selection(errs, family_folds(pts))
    assert (kept == "shape model") == (e.gemm_model is not None)
    assert e.quality.heldout_median_rel_err == pytest.approx(float(np.median(sel)))
