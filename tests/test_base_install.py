"""The base install (pyyaml + numpy, no torch/pandas/scipy) plans, shows, compares and exports.

A fresh virtual environment WITHOUT system site packages gets pyyaml, numpy and
accelcal (a regular install from a copy of the source tree, ``--no-deps``); the
commands a planning-only user runs must work in it, and a measuring command must
name the extra to install in one line (exit 2). Takes ~20 s (venv + two pip
installs); skipped when pip cannot install pyyaml/numpy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "nvidia-h200.yaml"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300, **kw)


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory) -> Path:
    """A regular (non-editable) install from a copy of the source tree: only what pyproject.toml packages
    exists there, so a module or preset file left out of the package list fails here, not on a user's machine.
    One venv for every test here (each costs ~20 s of venv and pip)."""
    import shutil

    root = tmp_path_factory.mktemp("wheel-venv")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "results"))
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    deps = _run([str(py), "-m", "pip", "install", "-q", "setuptools>=70", "wheel", "pyyaml", "numpy"])
    if deps.returncode != 0:
        pytest.skip(f"pip could not install pyyaml/numpy into a fresh venv (offline?): {deps.stderr[-300:]}")
    inst = _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)])
    assert inst.returncode == 0, inst.stderr
    shutil.rmtree(src)  # nothing may be read from the source tree
    return env_dir


def test_fresh_venv_has_no_measure_extra(base_venv):
    r = _run([str(base_venv / "bin" / "python"), "-c", "import torch"])
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    for mod in ("pandas", "scipy"):
        assert _run([str(base_venv / "bin" / "python"), "-c", f"import {mod}"]).returncode != 0


def test_plan_show_compare_export_run_without_torch(base_venv):
    acc = str(base_venv / "bin" / "accelcal")
    r = _run([acc, "plan", "--profile", str(PROFILE), "--model", "llama3-8b", "--top", "2", "--format", "json"])
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["groups"][0]["ranked"], plan
    r = _run([acc, "show", str(PROFILE)])
    assert r.returncode == 0 and "H200" in r.stdout, r.stderr
    r = _run([acc, "compare", str(REPO / "profiles" / "nvidia-h100.yaml"), str(PROFILE), "--format", "json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["changes"]
    r = _run([acc, "export", str(PROFILE)])
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("argv, module, extra", [
    (["bench", "kernels"], "torch", "measure"), (["env"], "torch", "measure"),
    (["calibrate", "--from-results", "x.csv"], "pandas", "measure"),
    (["report", str(PROFILE), "--out", "/nonexistent-dir-for-the-test/r.html"], "matplotlib", "plot"),
    (["plot", str(PROFILE), "--out", "/nonexistent-dir-for-the-test/p"], "matplotlib", "plot")])
def test_a_command_without_its_extra_names_it_in_one_line(base_venv, argv, module, extra):
    r = _run([str(base_venv / "bin" / "accelcal"), *argv])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0] == f"accelcal {argv[0]}{' kernels' if argv[0] == 'bench' else ''}: needs {module}, which the " \
                       f"'{extra}' extra installs: pip install 'accelcal[{extra}]'"


def test_registering_every_subcommand_imports_no_heavy_module():
    # In this (full) environment too: building the parser must not pull torch/pandas/scipy in.
    code = ("import sys; from accelcal.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'pandas', 'scipy', 'matplotlib') if m in sys.modules))")
    r = _run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_regular_install_packages_every_module_and_preset(base_venv, tmp_path):
    acc = str(base_venv / "bin" / "accelcal")
    prof = str(REPO / "profiles" / "nvidia-h100.yaml")
    r = subprocess.run([acc, "predict", "--profile", prof, "--model", "qwen3-32b", "--engine", "vllm",
                        "--concurrency", "4", "--isl", "256", "--osl", "8", "--format", "json"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ttft_mean_s"] > 0
    r = subprocess.run([acc, "plan", "--profile", prof, "--model", "llama3.1-8b", "--engine", "sglang,trtllm",
                        "--concurrency", "4,16", "--prompt-len", "512", "--output-len", "32", "--format", "json"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(base_venv / "bin" / "python"), "-c",
                        "from accelcal.planner.serving.engine import PRESET_DIR; print(PRESET_DIR)"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).is_relative_to(base_venv), r.stdout
