"""The import-graph check: the tree keeps its layers, and the check catches what it is meant to catch."""

from pathlib import Path

from accelcal import devtools


def test_tree_has_no_cycle_and_keeps_its_layers(capsys):
    assert devtools.main(["imports"]) == 0
    out = capsys.readouterr().out
    assert "accelcal.planner.search ->" in out and "0 problem(s)" in out


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for folder in devtools.PACKAGE_DIRS.values():
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "__init__.py").write_text("")
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_cycle_measuring_to_planner_and_torch_in_planner_are_reported(tmp_path, capsys):
    repo = _tree(tmp_path, {
        "planner/a.py": "from .b import x\nimport torch\n",
        "planner/b.py": "def f():\n    from accelcal.planner import a\n",
        "kernels/k.py": "from accelcal.planner.a import y\n",
        "planner/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import z\n",
        "planner/d.py": "from .c import w\n",
    })
    problems = devtools.check(devtools.load_graph(repo))
    assert {(p.rule, p.detail) for p in problems} == {
        ("cycle", "accelcal.planner.a <-> accelcal.planner.b"),
        ("measuring->planner", "accelcal.kernels.k imports accelcal.planner.a"),
        ("torch", "accelcal.planner.a imports torch"),
    }
    assert devtools.main(["imports", "--quiet", "--repo", str(repo)]) == 1
    assert "cycle: accelcal.planner.a <-> accelcal.planner.b" in capsys.readouterr().err
