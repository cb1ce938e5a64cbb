"""Plots people can read (<= 8 series, y <= 1, GB/s, no empty figures) and the self-contained HTML report."""

from __future__ import annotations

import argparse
import base64
import re
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from accelcal.calibrate import plot as plot_mod  # noqa: E402
from accelcal.calibrate.profile import Profile  # noqa: E402
from accelcal.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CPU = REPO / "profiles" / "cpu-amd-epyc-2core.yaml"
H200 = REPO / "profiles" / "nvidia-h200.yaml"
DATASHEET = REPO / "profiles" / "datasheet" / "h100-sxm.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def figures(monkeypatch):
    """Every figure plot_profile saves: (file name, legend labels, y limits of the first axes)."""
    seen = []
    real = plot_mod._save

    def spy(fig, path):
        ax = fig.axes[0]
        leg = ax.get_legend()
        seen.append((Path(path).name, [t.get_text() for t in leg.get_texts()] if leg else [], ax.get_ylim(),
                     ax.get_ylabel()))
        return real(fig, path)

    monkeypatch.setattr(plot_mod, "_save", spy)
    return seen


def test_measured_profile_plots_one_efficiency_figure_per_dtype(tmp_path, figures):
    p = Profile.load(H200)
    notes: list[str] = []
    paths = plot_mod.plot_profile(p, tmp_path, profile_path=H200, datasheet=Profile.load(DATASHEET), notes=notes)
    names = {x.name for x in paths}
    assert {f"gemm_efficiency_{dt}.png" for dt in p.compute} <= names and "memory_bandwidth.png" in names
    for path in paths:
        data = path.read_bytes()
        assert data[:8] == PNG and len(data) > 5000
    for name, labels, (ylo, yhi), ylabel in figures:
        assert len(labels) <= plot_mod.MAX_SERIES, (name, labels)
        if name.startswith("gemm_efficiency_"):
            assert (ylo, yhi) == (0.0, 1.0) and "best measured" in ylabel
        if name == "memory_bandwidth.png":
            assert ylabel == "GB/s" and any(lb.startswith("datasheet ") for lb in labels)
    # The H200 profile measured no collectives: said, not drawn empty.
    assert "collectives_busbw.png" not in names and any("no collective measured" in n for n in notes)


def test_collectives_are_plotted_as_busbw_in_gb_per_s(tmp_path, figures):
    paths = plot_mod.plot_profile(Profile.load(CPU), tmp_path, profile_path=CPU)
    assert tmp_path / "collectives_busbw.png" in paths
    name, labels, _, ylabel = next(f for f in figures if f[0] == "collectives_busbw.png")
    assert "busbw (GB/s" in ylabel and 0 < len(labels) <= plot_mod.MAX_SERIES



def test_an_interconnect_profile_plots_its_collectives_and_leaves_its_cited_sources(tmp_path, figures):
    ic = REPO / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml"
    notes: list[str] = []
    paths = plot_mod.plot_profile(Profile.load(ic), tmp_path / "out", profile_path=ic, notes=notes)
    assert [x.name for x in paths] == ["collectives_busbw.png"]
    # the transcribed engine all-reduce table is a cited source, not a results CSV to draw as measured points
    assert any(n.startswith("h100-engine-allreduce-sglang-pr2904.csv: not an accelcal results CSV") for n in notes)
    _, labels, _, _ = next(f for f in figures if f[0] == "collectives_busbw.png")
    assert "all_reduce n=4 intra_node" in labels  # the library's own entry comes before an engine kernel's
    assert any(lb.endswith("(trtllm_custom_ar)") or lb.endswith("(vllm_custom_ar)") for lb in labels)


def test_unreadable_raw_data_leaves_no_output_folder(tmp_path):
    prof = tmp_path / "p.yaml"
    Profile.load(CPU).save(prof)
    d = Profile.load(prof)
    (tmp_path / "bad.csv").write_bytes(b"a,b\n1,2,3,4\n\x00\xff")
    d.identity.raw_data = ["bad.csv"]
    d.save(prof)
    with pytest.raises(ValueError, match="bad.csv: not a readable CSV"):
        plot_mod.plot_profile(Profile.load(prof), tmp_path / "figs", profile_path=prof)
    assert not (tmp_path / "figs").exists()

def test_datasheet_prior_says_what_it_cannot_plot_instead_of_empty_figures(tmp_path):
    notes: list[str] = []
    paths = plot_mod.plot_profile(Profile.load(DATASHEET), tmp_path, profile_path=DATASHEET, notes=notes)
    assert [x.name for x in paths] == ["roofline.png"]
    assert any("a datasheet prior has only its peak" in n for n in notes)
    assert any(n.startswith("memory bandwidth: a datasheet prior") for n in notes)


def test_plot_default_output_is_beside_the_results_not_in_profiles(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(CPU)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "results" / "cpu-amd-epyc-2core-plots" / "roofline.png").exists(), out
    assert "profiles" not in out.replace(str(CPU), "")


def test_report_is_one_self_contained_html_page(tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(CPU), "--model", "tiny", "--batch", "4", "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for section in ("Summary", "Fit quality", "Measurements", "Validation", "Plan: tiny"):
        assert f"<h2>{section}" in page, section
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(imgs) >= 4 and all(base64.b64decode(i)[:8] == PNG for i in imgs)
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)
    assert "flagged" in page and "Recommended: TP" in page
    assert "not for planning" not in page  # a --quick sweep: no smoke warning


def test_report_on_an_unplannable_model_still_writes_the_page(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(H200), "--model", "llama3.1-405b", "--out", str(out)]) == 3  # as accelcal plan
    assert "no feasible plan" in out.read_text(encoding="utf-8")
    assert "accelcal report: no feasible plan" in capsys.readouterr().err


def test_report_that_misses_the_targets_says_closest_and_exits_as_plan(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(CPU), "--model", "tiny", "--batch", "4", "--ttft", "1e-9", "--out", str(out)]) == 4
    page = out.read_text(encoding="utf-8")
    assert "No layout meets the targets; closest: TP" in page and "Recommended" not in page
    assert "no plan meets the targets" in capsys.readouterr().err
    assert main(["report", str(CPU), "--top", "0", "--out", str(tmp_path / "t.html")]) == 2
    assert "--top must be >= 1" in capsys.readouterr().err


def test_report_plans_over_an_interconnect(tmp_path, capsys):
    """report takes --interconnect as plan does: the shipped single-GPU profiles get a multi-GPU plan."""
    out = tmp_path / "r.html"
    rc = main(["report", str(REPO / "profiles" / "nvidia-h100.yaml"), "--interconnect",
               str(REPO / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml"), "--model", "llama3-70b",
               "--batch", "1", "--out", str(out)])
    page = out.read_text()
    # the 4-of-8 NVSwitch profile makes it an 8-GPU node: 70B at batch 1 keeps TP inside it
    assert rc == 0 and "TP8 PP1 DP1" in page and "no feasible plan" not in page


def test_report_gives_plan_memory_in_the_unit_of_its_why_lines(tmp_path):
    """The plan table and the why-lines on one page state the same per-device memory in the same unit."""
    out = tmp_path / "r.html"
    assert main(["report", str(REPO / "profiles" / "nvidia-h100.yaml"), "--model", "llama3-8b", "--out", str(out)]) == 0
    page = out.read_text()
    why = re.search(r"= ([\d.]+) GB of [\d.]+ GB allowed", page)
    assert why and f">{float(why.group(1)):.4g} GB</td>" in page
    assert "85.02 GB (79.18 GiB)" in page


def test_report_refuses_an_out_name_that_is_not_html(tmp_path, capsys):
    assert main(["report", str(CPU), "--model", "tiny", "--out", str(tmp_path / "r.pdf")]) == 2
    assert "the report is one HTML page; give it a .html name" in capsys.readouterr().err
    assert not (tmp_path / "r.pdf").exists()


def test_report_on_a_datasheet_says_transcribed_and_that_its_plan_leaves_out_latency_layouts(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(REPO / "profiles" / "datasheet" / "h100-sxm.yaml"), "--out", str(out)]) == 0
    page = out.read_text()
    assert "<tr><th>transcribed</th>" in page and "<tr><th>measured</th>" not in page
    assert "count as 0" not in page and "are refused (layouts that need them are rejected) unless accelcal plan " \
        "--assume-zero-latency" in page and "memory latencies the datasheets do not give are assumed 0 s" in page
    capsys.readouterr()
    assert main(["export", str(REPO / "profiles" / "datasheet" / "h100-sxm.yaml"), "--format", "configurator"]) == 0
    assert "the profile is a datasheet prior" in capsys.readouterr().out


def test_report_on_a_smoke_profile_warns_as_show_does(tmp_path, capsys):
    from accelcal.calibrate.compose import SMOKE_NOTE

    import yaml

    data = yaml.safe_load(CPU.read_text())
    data["identity"]["command"] = data["identity"]["command"].replace("--quick", "--smoke")
    data["identity"]["raw_data"] = []  # the copy's raw data are not beside it
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "report.html"
    assert main(["report", str(smoke), "--model", "tiny", "--batch", "4", "--out", str(out)]) == 0
    assert f"WARNING {SMOKE_NOTE}" in out.read_text(encoding="utf-8")


def test_busbw_titles_say_whether_points_are_drawn_and_a_foreign_fabric_is_named(tmp_path, monkeypatch):
    from accelcal.calibrate.compose import compose

    seen = {}
    real = plot_mod._save

    def spy(fig, path):
        ax = fig.axes[0]
        leg = ax.get_legend()
        seen[Path(path).parent.name] = (ax.get_title(), [t.get_text() for t in leg.get_texts()] if leg else [])
        return real(fig, path)

    monkeypatch.setattr(plot_mod, "_save", spy)
    plot_mod.plot_profile(Profile.load(CPU), tmp_path / "cpu", profile_path=CPU)
    assert seen["cpu"][0].endswith("(dots measured, lines fitted)")  # its own raw collectives: drawn as dots
    # an H200 with a published H100 fabric: no raw points of that fabric here, and the datasheet line is the H200's
    nvs = REPO / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml"
    composed = compose(Profile.load(H200), Profile.load(nvs))
    plot_mod.plot_profile(composed, tmp_path / "h200", profile_path=H200,
                          datasheet=Profile.load(REPO / "profiles" / "datasheet" / "h200-sxm.yaml"))
    title, labels = seen["h200"]
    assert title.endswith("(lines fitted; their points are not in the profile's raw files)")
    assert any(lb.startswith("datasheet NVIDIA H200") and lb.endswith("(the fits: h100-nvswitch-4of8 on NVIDIA H100 "
                                                                     "80GB HBM3)") for lb in labels), labels


def test_plot_report_and_export_take_only_a_datasheet_as_the_datasheet(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    h100, h200 = str(REPO / "profiles" / "nvidia-h100.yaml"), str(REPO / "profiles" / "nvidia-h200.yaml")
    for argv in (["plot", h100, "--out", str(tmp_path / "p")], ["report", h100, "--out", str(tmp_path / "r.html")],
                 ["export", h100]):
        assert main([*argv, "--datasheet", h200]) == 2
        assert "its source is 'measured', not 'datasheet'" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() and not (tmp_path / "r.html").exists()
    # another device's datasheet is a what-if: drawn, with a warning
    assert main(["plot", h100, "--out", str(tmp_path / "p"), "--datasheet",
                 str(REPO / "profiles" / "datasheet" / "mi300x.yaml")]) == 0
    assert "warning: --datasheet mi300x is for AMD Instinct MI300X" in capsys.readouterr().err
    assert main(["export", h100, "--force"]) == 2
    assert "without --out the export is printed" in capsys.readouterr().err


def test_plot_and_export_refuse_a_cut_raw_csv_and_plot_names_missing_raw_data(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import shutil

    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(REPO / "profiles" / "cpu-amd-epyc-2core.yaml", lone)
    assert main(["plot", str(lone / "cpu-amd-epyc-2core.yaml"), "--out", str(lone / "pl")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("not drawn: measured points: "))
    assert "cpu-amd-epyc-2core-raw/kernels.csv, " in line and "collectives-round3.csv not found beside" in line
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(REPO / "profiles" / "cpu-amd-epyc-2core.yaml", cut)
    shutil.copytree(REPO / "profiles" / "cpu-amd-epyc-2core-raw", cut / "cpu-amd-epyc-2core-raw")
    csv = cut / "cpu-amd-epyc-2core-raw" / "kernels.csv"
    csv.write_bytes(csv.read_bytes()[:20000])
    assert main(["plot", str(cut / "cpu-amd-epyc-2core.yaml"), "--out", str(cut / "pl")]) == 2
    assert "the last row is cut short" in capsys.readouterr().err
    from accelcal.calibrate.export_aiconfigurator import _raw_rows

    with pytest.raises(ValueError, match="the last row is cut short"):
        _raw_rows([csv], {"gemm"}, "device")
