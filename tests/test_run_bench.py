"""run_bench.sh from a clean copy of the checkout, in test mode: every stage runs and says where its files went."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from accelcal.calibrate.profile import Profile

REPO = Path(__file__).resolve().parents[1]


def _clean_copy(dest: Path) -> Path:
    """The tracked files of the checkout as they are now (no venv, no results, no caches)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def _run_bench(checkout: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(checkout / "run_bench.sh"), "--python", sys.executable, "--no-install", *args],
                          cwd=checkout, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to make a clean copy")
    return _clean_copy(tmp_path_factory.mktemp("checkout"))


def test_run_bench_test_mode_end_to_end(checkout, tmp_path):
    out, profile = tmp_path / "out", tmp_path / "node.yaml"
    # A model that fits this host: the smoke profile measures fp32 only, and a CPU device is one rank's share
    # (RAM / ranks), so llama3-8b in fp32 (32 GB of weights) honestly fits no layout of a 24 GiB machine.
    r = _run_bench(checkout, "--test-mode", "--nproc", "2", "--out", str(out), "--profile", str(profile),
                   "--model", "tiny")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # Every stage ran, in order, and the summary names each file.
    stages = ["==> [", "environment", "calibrate", "validate", "plan"]
    positions = [r.stdout.find(s) for s in stages]
    assert all(p >= 0 for p in positions) and positions[1:] == sorted(positions[1:]), r.stdout[-2000:]
    assert "calibrate (test): kernels, collectives (nproc=2)" in r.stdout and "calibrated on 2 rank(s))" in r.stdout
    # the sweep's files are named as staged, not by the staging folder's path (gone once the profile is written)
    assert ".partial-" not in r.stdout and "(staged: into " in r.stdout
    for label in ("profile ", "raw measurements", "validation", "plan ", "log "):
        assert label in r.stdout.split("==> done")[-1]
    p = Profile.load(profile)
    assert p.identity.source == "measured" and p.identity.device_type == "cpu"
    assert p.collectives, "2 ranks must have measured collectives"
    assert p.validation is not None and p.validation.cases
    assert p.validation.command.startswith("accelcal validate --profile ") and "--write" in p.validation.command
    assert "Recommended" in (out / "plan.txt").read_text()
    assert (out / "plan" / "trace.json").exists()
    raw = Path(str(profile)[: -len(".yaml")] + "-raw")
    assert (raw / "kernels.csv").exists() and (raw / "collectives.csv").exists()
    assert (out / "environment.json").exists() and (out / "run_bench.log").stat().st_size > 0


def test_failed_run_leaves_existing_profile_untouched(checkout, tmp_path):
    profile = tmp_path / "node.yaml"
    profile.write_text("sentinel: previous profile\n")
    r = _run_bench(checkout, "--test-mode", "--device", "cuda:9", "--out", str(tmp_path / "out"),
                   "--profile", str(profile), timeout=120)
    assert r.returncode != 0
    assert "cuda:9" in r.stdout + r.stderr and "available" in r.stdout + r.stderr
    assert profile.read_text() == "sentinel: previous profile\n"


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc expects a whole number >= 1, got '0'"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--device"], "--device needs a value"),
])
def test_bad_flags_are_named(checkout, args, message):
    r = _run_bench(checkout, *args, timeout=30)
    assert r.returncode == 2 and message in r.stderr


def test_help_lists_the_main_options(checkout):
    r = _run_bench(checkout, "--help", timeout=30)
    assert r.returncode == 0
    for flag in ("--quick", "--full", "--device", "--out", "--python", "--no-install", "--test-mode", "--force"):
        assert flag in r.stdout


def test_unknown_model_is_refused_before_any_measurement(checkout, tmp_path):
    out = tmp_path / "out"
    r = _run_bench(checkout, "--test-mode", "--model", "lama3-8b", "--out", str(out),
                   "--profile", str(tmp_path / "node.yaml"), timeout=60)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "run_bench.sh: error: --model: unknown model 'lama3-8b'" in r.stderr
    assert "calibrate" not in r.stdout and not (tmp_path / "node.yaml").exists()


def test_a_failed_plan_is_a_failed_run(checkout, tmp_path):
    # llama3-8b in fp32 (32 GB of weights) fits no layout of a smoke profile's CPU share: the plan fails
    out, profile = tmp_path / "out", tmp_path / "node.yaml"
    # a previous profile and its raw data: the run replaces both, and keeps copies in --out
    profile.write_text("sentinel: previous profile\n")
    (tmp_path / "node-raw").mkdir()
    (tmp_path / "node-raw" / "collectives.csv").write_text("sentinel: previous raw data\n")
    # a --profile that is not a profile is replaced only with --force: refused before measuring, exit 2
    r = _run_bench(checkout, "--test-mode", "--skip-collectives", "--skip-validate", "--model", "llama3-8b",
                   "--out", str(tmp_path / "refused"), "--profile", str(profile))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "exists but does not load as a profile" in r.stdout + r.stderr and "--force" in r.stderr
    assert profile.read_text() == "sentinel: previous profile\n"
    r = _run_bench(checkout, "--test-mode", "--skip-collectives", "--skip-validate", "--model", "llama3-8b",
                   "--out", str(out), "--profile", str(profile), "--force")
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert profile.exists() and "sentinel" not in profile.read_text()  # the profile itself was written
    assert (out / "previous-profile.yaml").read_text() == "sentinel: previous profile\n"
    assert (out / "node-raw" / "collectives.csv").read_text() == "sentinel: previous raw data\n"
    assert f"the previous profile: {out / 'previous-profile.yaml'}, its raw data in {out / 'node-raw'}/" in r.stdout
    assert "plan             FAILED" in r.stdout and "these stages failed: plan" in r.stderr
    # the banner says what --skip-collectives runs: one rank, so a CPU device is every core
    assert "calibrate (test): kernels on 1 rank (collectives skipped; the CPU device is then every core)" in r.stdout
