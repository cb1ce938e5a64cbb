"""One profile naming scheme (stem = identity.name, raw data in <stem>-raw/) and no silent overwrites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from accelcal.calibrate.naming import default_profile_name, profile_target, raw_dir_for
from accelcal.calibrate.profile import Profile
from accelcal.calibrate.synthetic import synth_env, synth_kernels
from accelcal.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((REPO / "profiles").glob("*.yaml")) + sorted((REPO / "profiles" / "datasheet").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_profile_is_named_by_its_stem(path):
    with open(path, encoding="utf-8") as fh:
        ident = yaml.safe_load(fh)["identity"]
    assert ident["name"] == path.stem
    for raw in ident.get("raw_data") or []:
        assert raw.startswith(f"{path.stem}-raw/"), raw  # measured raw data beside the profile


def test_target_defaults_and_conflicts():
    t = profile_target(None, None, {"host": "node7.cluster.local", "device": "cuda:0"})
    assert (t.path, t.name, t.raw_dir) == (Path("profiles/node7-cuda0.yaml"), "node7-cuda0", Path("profiles/node7-cuda0-raw"))
    assert default_profile_name({"host": "vm", "device": "cpu"}) == "vm-cpu"
    t = profile_target("x/h200-a.yaml", "h200-a", {})
    assert t.name == "h200-a" and t.raw_dir == Path("x/h200-a-raw") == raw_dir_for("x/h200-a.yaml")
    with pytest.raises(ValueError, match=r"--name 'other' differs from the stem of --out x/h200-a.yaml \('h200-a'\)"):
        profile_target("x/h200-a.yaml", "other", {})
    with pytest.raises(ValueError, match="expected a profile path ending in .yaml"):
        profile_target("x/h200-a.json", None, {})
    with pytest.raises(ValueError, match="lower-case letters"):
        profile_target(None, "My Node", {})


def _results(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "kernels.csv"
    synth_kernels().to_csv(csv, index=False)
    (folder / "kernels.env.json").write_text(json.dumps(synth_env()))
    return csv


def test_from_results_refuses_to_overwrite_without_force(tmp_path, capsys):
    csv = _results(tmp_path / "raw")
    out = tmp_path / "node-a.yaml"
    assert main(["calibrate", "--from-results", str(csv), "--out", str(out)]) == 0
    assert Profile.load(out).identity.name == "node-a"
    before = out.read_bytes()
    assert main(["calibrate", "--from-results", str(csv), "--out", str(out)]) == 2
    assert "exists; refitting saved results would replace it: pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["calibrate", "--from-results", str(csv), "--out", str(out), "--force"]) == 0
    assert main(["calibrate", "--from-results", str(csv), "--out", str(out), "--name", "node-b", "--force"]) == 2
    assert "identity.name is its file stem" in capsys.readouterr().err
