"""Provenance a measured or imported profile carries: which accelcal made it, and which CPU (beyond its name)."""

from __future__ import annotations

import re
from pathlib import Path

from accelcal import __version__
from accelcal.build import build_versions
from accelcal.kernels.device import cpu_signature

ROOT = Path(__file__).resolve().parents[1]
NVS = Path(__file__).parent / "fixtures" / "nccl_tests" / "nvswitch_8_h100_all_reduce_perf.txt"


def test_the_accelcal_version_and_checkout_commit_are_recorded():
    v = build_versions()
    assert v["accelcal"] == __version__
    if (ROOT / ".git").exists():  # a checkout (CI's is one): the commit, dirty or not
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", v["accelcal_commit"]), v
    else:
        assert "accelcal_commit" not in v


def test_an_imported_profile_names_the_accelcal_that_fitted_it(tmp_path):
    from accelcal.calibrate.nccl_import import import_profile

    p = import_profile([str(NVS)], out=str(tmp_path / "ic.yaml"))
    assert p.identity.versions["accelcal"] == __version__
    assert p.identity.versions.get("accelcal_commit") == build_versions().get("accelcal_commit")


def test_a_cpu_is_told_apart_by_family_model_and_vector_units(tmp_path):
    zen = tmp_path / "zen"
    zen.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
                   "model name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: fpu sse avx avx2 fma\n\n"
                   "processor\t: 1\nflags\t\t: avx512f\n")
    assert cpu_signature(str(zen)) == "family 25 model 1 stepping 1; avx avx2 fma"  # the first block only
    genoa = tmp_path / "genoa"
    genoa.write_text("cpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\n"
                     "flags\t\t: avx avx2 fma avx512f avx512_bf16\n")
    assert cpu_signature(str(genoa)) == "family 25 model 17 stepping 1; avx avx2 fma avx512f avx512_bf16"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve sve2 bf16 i8mm\nCPU part\t: 0xd4f\n")
    assert cpu_signature(str(arm)) == "asimd sve sve2 bf16 i8mm"
    assert cpu_signature(str(tmp_path / "absent")) == ""


def test_compare_says_when_one_cpu_name_covers_two_cpus_or_the_method_changed(tmp_path, capsys):
    from accelcal.calibrate.profile import Profile
    from accelcal.cli import main

    old = Profile.load(ROOT / "profiles" / "cpu-amd-epyc-2core.yaml").to_dict()
    new = Profile.load(ROOT / "profiles" / "cpu-amd-epyc-2core.yaml").to_dict()
    old["identity"]["versions"]["cpu_signature"] = "family 25 model 1 stepping 1; avx avx2 fma"
    new["identity"]["versions"]["cpu_signature"] = "family 25 model 17 stepping 1; avx avx2 fma avx512f"
    new["method_version"] = old["method_version"] + 1
    for name, d in (("old", old), ("new", new)):
        Profile.from_dict(d).save(tmp_path / f"{name}.yaml")
    assert main(["compare", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml")]) == 0
    out = capsys.readouterr().out
    assert "different CPUs under one name: 'family 25 model 1 stepping 1; avx avx2 fma' vs" in out
    assert f"measured by different methods (method_version {old['method_version']} vs {new['method_version']})" in out
