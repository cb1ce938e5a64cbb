"""--for-model: the planner's TP-divided GEMM shapes join the sweep plan (nothing is run here)."""

import pytest

from accelcal.calibrate.cli import sweep_preset
from accelcal.kernels.model_shapes import MODEL_SHAPE_MS, model_gemm_shapes, sweep_preset_for
from accelcal.kernels.shapes import suite_preset


def test_for_model_adds_every_projection_per_tp():
    base = suite_preset("quick", "cpu")
    p = sweep_preset("quick", "cpu", "llama3-70b", "1,2,4,8")
    assert p.gemm_shapes == base.gemm_shapes and p.for_models == ("llama3-70b",) and p.for_tp == (1, 2, 4, 8)
    # Llama-3-70B (hidden 8192, 64 heads, 8 KV heads of 128, ffn 28672, vocab 128256): QKV, o, gate/up, down and
    # LM head at 4 degrees, all distinct.
    assert len(p.model_shapes) == 20
    nk = {s.name: (s.n, s.k) for s in p.model_shapes}
    for t in (1, 2, 4, 8):
        assert nk[f"llama3-70b.qkv/tp{t}"] == ((64 + 2 * 8) * 128 // t, 8192)
        assert nk[f"llama3-70b.o/tp{t}"] == (8192, 64 * 128 // t)
        assert nk[f"llama3-70b.gate_up/tp{t}"] == (2 * 28672 // t, 8192)
        assert nk[f"llama3-70b.down/tp{t}"] == (8192, 28672 // t)
        assert nk[f"llama3-70b.lm_head/tp{t}"] == (128256 // t, 8192)
    # bf16 only, at the model M grid; the base shapes keep their own grid.
    s = p.model_shapes[0]
    assert p.ms_for(s, "bf16") == MODEL_SHAPE_MS and p.ms_for(s, "fp32") == ()
    assert p.ms_for(base.gemm_shapes[0], "fp32") == base.gemm_ms


def test_bad_degree_reported():
    shapes, notes = model_gemm_shapes(["llama3-8b"], [3])
    assert not shapes and "TP=3" in notes[0] and "32 % 3" in notes[0]
    with pytest.raises(ValueError, match="--tp"):
        sweep_preset("quick", "cpu", "llama3-8b", "1,x")


def test_quick_accelerator_preset_covers_the_preset_models():
    assert not suite_preset("quick", "cuda").model_shapes  # the plain preset table is unchanged
    p = sweep_preset_for("quick", "cuda")
    assert set(p.for_models) >= {"llama3-8b", "llama3-70b", "llama3.1-405b"} and p.for_tp == (1, 2, 4, 8)
    nk = [(s.n, s.k) for s in p.model_shapes]
    assert len(nk) == len(set(nk)) and not set(nk) & {(s.n, s.k) for s in p.gemm_shapes}
    assert (1280, 8192) in nk and (9216, 16384) in nk  # the 70B QKV at TP=8, 405B QKV at TP=2


def test_profile_records_coverage_and_flags_unmeasured_shapes():
    from accelcal.calibrate.fit import fit_profile
    from accelcal.calibrate.synthetic import synth_env, synth_kernels

    env = {**synth_env(), "for_models": "llama3-8b", "for_tp": "1,2"}
    p = fit_profile(synth_kernels(seed=0, noise=0.01, outliers=0), None, env, "test")
    assert p.identity.covered_models == ["llama3-8b"] and p.identity.covered_tp == [1, 2]
    dt = "fp32"
    n, k = p.compute[dt].points[0][1:3]
    assert not p.gemm_time_s(16, int(n), int(k), dt).extrapolated
    est = p.gemm_time_s(16, int(n) + 128, int(k), dt)
    assert est.extrapolated and "not measured" in est.detail


def test_bench_kernels_for_model_sweeps_only_those_shapes_and_refit_adds_them(tmp_path, capsys):
    import json
    import shutil
    from pathlib import Path
    import subprocess
    import sys

    import pandas as pd

    from accelcal.calibrate.profile import Profile
    from accelcal.cli import main
    from accelcal.kernels.model_shapes import model_gemm_shapes

    out = tmp_path / "sweep"
    assert main(["bench", "kernels", "--device", "cpu", "--for-model", "small", "--tp", "1", "--model-dtypes", "fp32",
                 "--model-ms", "1,2", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out / "kernels.csv")
    shapes, _ = model_gemm_shapes(["small"], [1])
    assert set(df["op"]) == {"gemm"} and set(df["dtype"]) == {"fp32"}
    assert {(int(r.m), int(r.n), int(r.k)) for r in df.itertuples() if r.figure == "device"} == \
        {(m, s.n, s.k) for s in shapes for m in (1, 2)}
    assert main(["bench", "kernels", "--device", "cpu", "--model-dtypes", "fp32", "--out", str(out)]) == 2
    assert "--tp / --model-dtypes / --model-ms go with --for-model" in capsys.readouterr().err
    assert main(["bench", "kernels", "--device", "cpu", "--tp", "2", "--out", str(tmp_path / "none")]) == 2
    assert "go with --for-model" in capsys.readouterr().err and not (tmp_path / "none").exists()

    # the sweep joins a profile of the same device: listed in raw_data, its points added, the rest untouched
    root = Path(__file__).resolve().parent.parent
    shutil.copy(root / "profiles" / "cpu-amd-epyc-2core.yaml", tmp_path / "cpu.yaml")
    shutil.copytree(root / "profiles" / "cpu-amd-epyc-2core-raw", tmp_path / "cpu-amd-epyc-2core-raw")
    extra = tmp_path / "cpu-amd-epyc-2core-raw" / "kernels-small.csv"
    shutil.copy(out / "kernels.csv", extra)
    env = json.loads((out / "kernels.env.json").read_text())
    (extra.with_suffix(".env.json")).write_text(json.dumps({**env, "device_name": "elsewhere"}))
    script = [sys.executable, str(root / "scripts" / "refit_models.py"), str(tmp_path / "cpu.yaml"), "--add-raw", str(extra)]
    bad = subprocess.run(script, capture_output=True, text=True)
    assert bad.returncode != 0 and "names device 'elsewhere'" in bad.stderr
    before = Profile.load(tmp_path / "cpu.yaml")
    (extra.with_suffix(".env.json")).write_text(json.dumps({**env, "device_name": before.identity.device_name}))
    ok = subprocess.run(script, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    after = Profile.load(tmp_path / "cpu.yaml")
    assert after.identity.raw_data == before.identity.raw_data + ["cpu-amd-epyc-2core-raw/kernels-small.csv"]
    old = {tuple(p[:3]) for p in before.compute["fp32"].points}
    new = {tuple(p[:3]) for p in after.compute["fp32"].points}
    assert old < new and len(new - old) == len({(m, s.n, s.k) for s in shapes for m in (1, 2)} - old)
    assert after.memory == before.memory and after.validation == before.validation


def test_a_preset_without_bf16_measures_the_model_shapes_in_its_own_dtype():
    # the CPU smoke preset sweeps fp32 only: the model shapes must be measured in it, or the profile would record
    # covered_models it never timed
    base = suite_preset("smoke", "cpu")
    assert base.dtypes == ("fp32",)
    p = sweep_preset("smoke", "cpu", "small", "1,2")
    assert p.model_dtypes == ("fp32",) and p.model_shapes and p.for_models == ("small",)
    assert p.ms_for(p.model_shapes[0], "fp32") == MODEL_SHAPE_MS
