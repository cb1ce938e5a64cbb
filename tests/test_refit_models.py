"""scripts/refit_models.py replaces each GEMM entry whole: no stale roofline or wave term beside a new quality."""

import importlib.util
import shutil
from pathlib import Path

from accelcal.calibrate.fit_gemm import fit_gemm
from accelcal.calibrate.profile import Profile

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("refit_models", ROOT / "scripts" / "refit_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_refit_replaces_a_stale_gemm_entry(tmp_path):
    shutil.copy(ROOT / "profiles" / "cpu-amd-epyc-2core.yaml", tmp_path / "cpu.yaml")
    shutil.copytree(ROOT / "profiles" / "cpu-amd-epyc-2core-raw", tmp_path / "cpu-amd-epyc-2core-raw")
    p = Profile.load(tmp_path / "cpu.yaml")
    dtype = sorted(p.compute)[0]
    e = p.compute[dtype]
    # A profile written by an older fit: a 128x128 wave term and a roof the current selection would not keep.
    e.wave_units, e.peak_flop_per_s, e.gemm_model = 132, e.peak_flop_per_s * 7.0, None
    e.grouped_points = [[8.0, 4.0, 384.0, 512.0, 3.5e-4]]  # measured grouped cases: kept through the refit
    p.save(tmp_path / "cpu.yaml")
    assert _script().main([str(tmp_path / "cpu.yaml")]) == 0
    after = Profile.load(tmp_path / "cpu.yaml").compute[dtype]
    fresh = fit_gemm(dtype, e.points, wave_units=None)  # a CPU device: no SM count
    assert after.wave_units == fresh.wave_units != 132
    assert after.peak_flop_per_s == fresh.peak_flop_per_s
    assert (after.gemm_model is None) == (fresh.gemm_model is None)
    assert after.quality.heldout_p90_rel_err == fresh.quality.heldout_p90_rel_err
    assert after.points == e.points
    assert after.grouped_points == [[8.0, 4.0, 384.0, 512.0, 3.5e-4]]
