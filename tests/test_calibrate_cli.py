"""accelcal calibrate (from results) / show / compare / plot / export."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import pytest
import yaml

from accelcal.calibrate import cli as calcli
from accelcal.calibrate.compare import compare_profiles, format_changes
from accelcal.calibrate.profile import Profile, ProfileQueryError
from accelcal.calibrate.synthetic import synth_collectives, synth_env, synth_kernels

DATA = Path(__file__).parent / "data"
GOOD = DATA / "calibrate" / "good_measured.yaml"
H100 = Path(__file__).parent.parent / "profiles" / "datasheet" / "h100-sxm.yaml"


def run(argv: list[str]) -> int:
    """Parse with only this area's subcommands and dispatch like accelcal.cli.main does."""
    parser = argparse.ArgumentParser(prog="accelcal")
    sub = parser.add_subparsers(dest="command")
    calcli.register(sub, None)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ProfileQueryError) as exc:
        print(f"accelcal {args.command}: error: {exc}")
        return 2


def test_show_measured(capsys):
    assert run(["show", str(GOOD)]) == 0
    out = capsys.readouterr().out
    assert "source: MEASURED" in out and "compute (GEMM)" in out
    assert out.splitlines()[2].startswith("  measured    ") and "transcribed" not in out
    assert "held-out median" in out and "GFLOP/s" in out and "all_reduce intra_node n=2" in out


def test_show_datasheet_marks_source(capsys):
    assert run(["show", str(H100)]) == 0
    out = capsys.readouterr().out
    assert "source: DATASHEET" in out and "cites" in out and "990 TFLOP/s" in out
    assert "not measured" in out and "datasheet figure" in out
    # Provenance line: no "measured <date> on -" for something nobody ran.
    prov = out.splitlines()[2]
    assert prov == ("  datasheet   transcribed from datasheets 2026-11-26 (transcribed by hand from the cited vendor "
                    "documents); not measured"), prov
    assert "measured    " not in out and " on -" not in out



def test_show_an_interconnect_profile_says_what_it_does_not_record(capsys):
    ic = Path(__file__).parent.parent / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml"
    assert run(["show", str(ic)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("8 per node x 1 node(s), memory not recorded")
    assert lines[2].startswith("  imported    (no date recorded) on ")
    # no empty device sections: it says what kind of profile it is
    assert "compute (GEMM)" not in lines and not any(x.startswith(("memory (", "overheads ")) for x in lines)
    assert any(x.startswith("interconnect profile: collectives only") for x in lines)


def test_export_of_a_datasheet_offers_no_estimate_command_without_tables(tmp_path, capsys):
    assert run(["export", str(H100), "--format", "aiconfigurator", "--out", str(tmp_path / "aic")]) == 0
    out = capsys.readouterr().out
    assert "no perf tables written" in out and "--perf-db-version" not in out

def test_show_bad_profile_is_one_line_error(capsys):
    bad = DATA / "bad_profiles" / "nan_peak.yaml"
    assert run(["show", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "nan_peak.yaml: compute.fp32.peak_flop_per_s" in out


def test_compare_detects_degradation(tmp_path, capsys):
    slow = tmp_path / "slow.yaml"
    Profile.load(GOOD).with_bandwidth_scale(0.5).save(slow)
    assert run(["compare", str(GOOD), str(slow)]) == 0
    out = capsys.readouterr().out
    # Judged on predicted time: at the largest copy size (bandwidth-bound) half the bandwidth doubles the time.
    big = next(l for l in out.splitlines() if l.startswith("memory copy time at 512 MiB"))
    assert "+100.0%" in big and big.endswith("SLOWER"), big
    # The raw bandwidth is shown beside it, as context only.
    raw = next(l for l in out.splitlines() if l.startswith("memory copy bandwidth_bytes_per_s"))
    assert "-50.0%" in raw and "context, not judged (streaming bandwidth" in raw and "SLOWER" not in raw, raw
    assert "predicted times moved beyond measurement noise" in out
    assert run(["compare", str(GOOD), str(GOOD)]) == 0
    assert "no change beyond measurement noise" in capsys.readouterr().out


def _with_attention(p: Profile, dtype: str, phase: str, **rates) -> Profile:
    d = p.to_dict()
    d["attention"][dtype][phase].update(rates)
    return Profile.from_dict(d)


def test_compare_poorly_determined_rate_is_context_not_slower(tmp_path, capsys):
    # Prefill attention is FLOP-bound at every measured case: its byte rate barely matters to any prediction.
    # A 10x drop of that rate (what two runs minutes apart produced) must not be reported as SLOWER.
    old = _with_attention(Profile.load(GOOD), "fp32", "prefill", bytes_per_s=1.0e12)
    new = _with_attention(Profile.load(GOOD), "fp32", "prefill", bytes_per_s=1.0e11)
    old.save(tmp_path / "old.yaml")
    new.save(tmp_path / "new.yaml")
    changes = {c.quantity: c for c in compare_profiles(old, new)}
    t = next(c for q, c in changes.items() if q.startswith("attention fp32 prefill time (median ratio over"))
    assert t.judged and abs(t.rel_change) < 1e-9 and not t.significant
    raw = changes["attention fp32 prefill bytes_per_s"]
    assert raw.rel_change == pytest.approx(-0.9) and not raw.judged and not raw.significant
    assert raw.note.startswith("not pinned down: limits none of the")
    assert run(["compare", str(tmp_path / "old.yaml"), str(tmp_path / "new.yaml"), "--all"]) == 0
    out = capsys.readouterr().out
    assert "SLOWER" not in out and "FASTER" not in out
    line = next(l for l in out.splitlines() if l.startswith("attention fp32 prefill bytes_per_s"))
    assert "-90.0%" in line and "context, not judged (not pinned down" in line, line
    assert out.splitlines()[-1].startswith("0 of ")



def test_compare_does_not_judge_sizes_the_new_profile_never_measured():
    import dataclasses

    old = Profile.load(GOOD)
    new = Profile.load(GOOD)
    e = new.memory["copy"]
    lo, hi = e.quality.range_min, e.quality.range_max
    new.memory["copy"] = dataclasses.replace(e, quality=dataclasses.replace(e.quality, range_max=math.sqrt(lo * hi) * 0.5))
    rows = [c for c in compare_profiles(old, new) if c.quantity.startswith("memory copy time at")]
    top = max(rows, key=lambda c: c.old)
    assert not top.judged and "outside the new profile's measured range" in top.note
    assert min(rows, key=lambda c: c.old).judged  # the smallest size is inside both ranges

def test_compare_attention_rate_that_binds_is_judged_by_time(tmp_path):
    # Halving the prefill FLOP rate (it limits every case) makes the predicted time ~2x longer: SLOWER.
    good = Profile.load(GOOD)
    slow = _with_attention(good, "fp32", "prefill", flop_per_s=good.attention["fp32"]["prefill"].flop_per_s / 2)
    changes = compare_profiles(good, slow)
    t = next(c for c in changes if c.quantity.startswith("attention fp32 prefill time"))
    assert t.significant and 0.5 < t.rel_change <= 1.0, t
    assert "SLOWER" in next(l for l in format_changes(changes).splitlines() if l.startswith("attention fp32 prefill time"))


def test_exports_take_the_better_fitted_memory_pattern(tmp_path):
    import dataclasses

    from accelcal.calibrate.export import export_configurator, memory_pattern

    good = Profile.load(GOOD)
    assert {"read", "copy"} <= set(good.memory)

    def with_err(p, pattern, err):
        e = p.memory[pattern]
        p.memory[pattern] = dataclasses.replace(e, quality=dataclasses.replace(e.quality, heldout_median_rel_err=err))

    with_err(good, "read", 0.35)  # a read fit that misses held-out sizes by 35%
    with_err(good, "copy", 0.05)
    assert memory_pattern(good) == "copy"
    d = export_configurator(good)
    assert d["gpu"]["mem_bw_measured_bytes_per_s"] == good.memory["copy"].bandwidth_bytes_per_s
    assert d["gpu"]["mem_empirical_constant_latency_s"] == good.memory["copy"].latency_s
    assert d["provenance"]["mem_bw_bytes_per_s"].startswith("memory.copy (the better held-out fit: 5.0%")
    with_err(good, "read", 0.05)  # a tie keeps read
    assert memory_pattern(good) == "read"
    del good.memory["read"], good.memory["copy"]
    assert memory_pattern(good) is None
    assert any("mem_bw_bytes_per_s" in m for m in export_configurator(good)["missing"])

def test_export_configurator(tmp_path, capsys):
    assert run(["export", str(GOOD), "--format", "configurator", "--datasheet", str(H100)]) == 0
    d = yaml.safe_load(capsys.readouterr().out)
    good = Profile.load(GOOD)
    # the derating is applied once: peak x factor = measured
    assert d["gpu"]["mem_bw_bytes_per_s"] == 3.35e12
    assert d["gpu"]["mem_bw_measured_bytes_per_s"] == good.memory["read"].bandwidth_bytes_per_s
    assert d["gpu"]["mem_bw_empirical_scaling_factor"] == pytest.approx(good.memory["read"].bandwidth_bytes_per_s / 3.35e12)
    assert d["gpu"]["mem_bw_bytes_per_s"] * d["gpu"]["mem_bw_empirical_scaling_factor"] == pytest.approx(
        good.memory["read"].bandwidth_bytes_per_s)
    assert d["gpu"]["mem_empirical_constant_latency_s"] == good.memory["read"].latency_s
    ar = next(c for c in good.collectives if c.op == "all_reduce")
    assert d["node"]["intra_node_bw_bytes_per_s"] == pytest.approx(ar.pieces[-1].bandwidth_bytes_per_s * 1.0)  # n=2: 2(n-1)/n = 1
    assert d["node"]["inter_node_bw_bytes_per_s"] is None and any("inter_node" in m for m in d["missing"])
    out = tmp_path / "cfg.yaml"
    assert run(["export", str(H100), "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["node"]["intra_node_bw_bytes_per_s"] == pytest.approx(450e9)
    # an existing file is replaced only with --force, and never the profile being exported
    before = out.read_text()
    assert run(["export", str(GOOD), "--out", str(out)]) == 2 and out.read_text() == before
    assert run(["export", str(GOOD), "--out", str(out), "--force"]) == 0 and out.read_text() != before
    victim = tmp_path / "victim.yaml"
    victim.write_text(H100.read_text())
    assert run(["export", str(victim), "--out", str(victim), "--force"]) == 2
    assert victim.read_text() == H100.read_text()


def _write_results(folder: Path, df, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{stem}.csv"
    df.to_csv(csv, index=False)
    (folder / f"{stem}.env.json").write_text(json.dumps(synth_env()))
    return csv


def test_calibrate_from_results_writes_profile(tmp_path, capsys):
    k = _write_results(tmp_path / "raw", synth_kernels(), "kernels")
    c = _write_results(tmp_path / "raw", synth_collectives(), "collectives")
    out = tmp_path / "profiles" / "synth.yaml"
    assert run(["calibrate", "--from-results", str(k), str(c), "--out", str(out), "--name", "synth"]) == 0
    p = Profile.load(out)
    assert p.identity.name == "synth" and p.identity.source == "measured"
    # inputs outside the profile's folder are copied, with their .env.json, into its raw folder
    assert p.identity.raw_data == ["synth-raw/kernels.csv", "synth-raw/collectives.csv"]
    for stem in ("kernels", "collectives"):
        assert (out.parent / "synth-raw" / f"{stem}.csv").read_bytes() == (tmp_path / "raw" / f"{stem}.csv").read_bytes()
        assert (out.parent / "synth-raw" / f"{stem}.env.json").exists()
    assert {c.op for c in p.collectives} == {"all_reduce", "all_gather"}
    assert "wrote" in capsys.readouterr().out


def test_from_results_copies_keep_the_profile_self_contained(tmp_path, capsys):
    a = _write_results(tmp_path / "a", synth_kernels(), "kernels")
    out = tmp_path / "profiles" / "synth.yaml"
    assert run(["calibrate", "--from-results", str(a), "--out", str(out)]) == 0
    # export reads raw data only inside the profile's folder: it finds the copy
    assert [c.name for c in Profile.load(out).identity.raw_csv_paths(out)] == ["kernels.csv"]
    # a refit of the same file reuses the copy; a different file of the same name never overwrites it
    assert run(["calibrate", "--from-results", str(a), "--out", str(out), "--force"]) == 0
    assert "already, byte for byte," in capsys.readouterr().out
    k = synth_kernels()
    k["median_s"] = k["median_s"] * 1.01  # another measurement of the same cases: same name, different bytes
    b = _write_results(tmp_path / "b", k, "kernels")
    assert run(["calibrate", "--from-results", str(b), "--out", str(out), "--force"]) == 0
    raw = out.parent / "synth-raw"
    assert Profile.load(out).identity.raw_data == ["synth-raw/kernels-2.csv"]
    assert (raw / "kernels.csv").read_bytes() == a.read_bytes() and (raw / "kernels-2.csv").read_bytes() == b.read_bytes()
    assert (raw / "kernels-2.env.json").exists()
    # a file already in the profile's raw folder is recorded where it is
    assert run(["calibrate", "--from-results", str(raw / "kernels.csv"), "--out", str(out), "--force"]) == 0
    assert Profile.load(out).identity.raw_data == ["synth-raw/kernels.csv"]
    assert sorted(f.name for f in raw.iterdir()) == ["kernels-2.csv", "kernels-2.env.json", "kernels.csv", "kernels.env.json"]
    # another profile's raw data beside it is copied into this profile's own raw folder
    other = out.parent / "other.yaml"
    assert run(["calibrate", "--from-results", str(raw / "kernels.csv"), "--out", str(other)]) == 0
    assert Profile.load(other).identity.raw_data == ["other-raw/kernels.csv"]


def test_from_results_failed_save_takes_its_copies_back(tmp_path, capsys, monkeypatch):
    a = _write_results(tmp_path / "a", synth_kernels(), "kernels")
    out = tmp_path / "profiles" / "synth.yaml"

    def boom(self, path):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Profile, "save", boom)
    with pytest.raises(OSError, match="simulated"):
        run(["calibrate", "--from-results", str(a), "--out", str(out)])
    assert not out.exists() and not (out.parent / "synth-raw").exists()


def test_failed_calibration_keeps_good_profile(tmp_path, capsys):
    out = tmp_path / "node.yaml"
    Profile.load(GOOD).save(out)
    before = out.read_bytes()
    k = synth_kernels()
    csv = _write_results(tmp_path / "raw", k[k["op"] != "gemm"], "kernels")  # a run whose GEMMs all failed
    assert run(["calibrate", "--from-results", str(csv), "--out", str(out), "--force"]) == 2
    assert "no GEMM dtype could be fitted" in capsys.readouterr().out
    assert out.read_bytes() == before


def test_calibrate_from_results_needs_env(tmp_path, capsys):
    csv = tmp_path / "k.csv"
    synth_kernels().to_csv(csv, index=False)
    assert run(["calibrate", "--from-results", str(csv), "--out", str(tmp_path / "p.yaml")]) == 2
    assert "env.json" in capsys.readouterr().out


def test_plot_writes_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert run(["plot", str(GOOD), "--out", str(tmp_path / "plots")]) == 0
    dtypes = Profile.load(GOOD).compute
    for name in ("roofline.png", "memory_bandwidth.png", *(f"gemm_efficiency_{dt}.png" for dt in dtypes)):
        data = (tmp_path / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_names_the_collective_fits_it_leaves_out(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    prof = REPO / "profiles" / "interconnect" / "h100-nvswitch-4of8.yaml"
    assert run(["plot", str(prof), "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    n = len(Profile.load(prof).collectives)
    assert (tmp_path / "plots" / "collectives_busbw.png").exists()
    assert f"collective busbw: {n - 4} of {n} fits (the figure keeps two per op" in out
    assert "all_reduce n=2 intra_node (trtllm_custom_ar)" in out and "accelcal show lists every fit" in out


def test_registered_in_the_console_script(capsys):
    from accelcal.cli import main

    assert main(["show", str(GOOD)]) == 0
    assert "compute (GEMM)" in capsys.readouterr().out


def test_calibrate_measure_path_writes_raw_and_profile(tmp_path, monkeypatch, capsys):
    """The measuring path (suite + sweep -> raw files -> fit -> profile), with the suites replaced by synthetic rows."""
    import accelcal.collectives.launch as launch
    import accelcal.kernels.suite as suite
    from accelcal.results import ResultSet

    calls = {}

    def fake_suite(device=None, preset="quick", ops=None, progress=print, **kw):
        calls["suite"] = (device.spec, preset)
        return ResultSet(suite="kernels", env=synth_env(), rows=synth_kernels().to_dict("records"))

    def fake_sweep(nproc, device_type="cpu", preset="quick", out_dir="results", progress=print, stem="collectives",
                   dtypes=None, **kw):
        calls.setdefault("sweep", []).append((nproc, device_type, preset, tuple(dtypes or ()), stem))
        df = synth_collectives()
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        df.to_csv(Path(out_dir) / f"{stem}.csv", index=False)
        return df

    import torch

    threads_before = torch.get_num_threads()
    monkeypatch.setattr(suite, "run_suite", fake_suite)
    monkeypatch.setattr(launch, "run_sweep", fake_sweep)
    out = tmp_path / "cpu.yaml"
    assert run(["calibrate", "--device", "cpu", "--quick", "--out", str(out), "--raw-dir", str(tmp_path / "raw")]) == 0
    # Calibrate measures what it fits: fp32 on a CPU, the fit-quick sweep, in fresh rounds.
    rounds = [f"collectives-round{r}" for r in (1, 2, 3)]
    assert calls == {"suite": ("cpu", "quick"), "sweep": [(2, "cpu", "fit-quick", ("fp32",), s) for s in rounds]}
    assert torch.get_num_threads() == threads_before  # the thread share is for the kernel suite only
    p = Profile.load(out)
    assert p.identity.raw_data == ["raw/kernels.csv"] + [f"raw/{s}.csv" for s in rounds]
    assert p.identity.threads_per_device == max(1, (os.cpu_count() or 1) // 2) and p.identity.devices_per_node == 2
    assert (tmp_path / "raw" / "kernels.csv").exists() and (tmp_path / "raw" / "kernels.json").exists()
    assert len(p.collectives) == 2
    # --nproc 1 on a CPU: collectives skipped with a note.
    calls.clear()
    assert run(["calibrate", "--device", "cpu", "--nproc", "1", "--out", str(tmp_path / "solo.yaml")]) == 0
    assert "sweep" not in calls and "collectives skipped" in capsys.readouterr().out
    assert Profile.load(tmp_path / "solo.yaml").collectives == []
    # other processes busy through the measurements: the run says its timings are inflated (and still writes)
    import accelcal.machine_load as machine_load

    ticks = iter([(0.0, 0.0), (1e6, 0.0)])  # the machine's busy CPU seconds leap, this process's do not
    monkeypatch.setattr(machine_load, "cpu_seconds", lambda: next(ticks))
    assert run(["calibrate", "--device", "cpu", "--nproc", "1", "--out", str(tmp_path / "busy.yaml")]) == 0
    err = capsys.readouterr().err
    assert "[calibrate] WARNING: the machine was busy: other processes used" in err and "during the measurements" in err
    assert (tmp_path / "busy.yaml").exists()


def test_calibrate_failed_sweep_keeps_existing_profile(tmp_path, monkeypatch, capsys):
    import accelcal.collectives.launch as launch
    import accelcal.kernels.suite as suite
    from accelcal.results import ResultSet

    monkeypatch.setattr(suite, "run_suite", lambda device=None, preset="quick", ops=None, progress=print, **kw: ResultSet(
        suite="kernels", env=synth_env(), rows=synth_kernels().to_dict("records")))

    def dead_rank(*a, **kw):
        raise launch.SweepError("rank 1 exited with code 1")

    monkeypatch.setattr(launch, "run_sweep", dead_rank)
    out = tmp_path / "node.yaml"
    Profile.load(GOOD).save(out)
    before = out.read_bytes()
    assert run(["calibrate", "--device", "cpu", "--out", str(out), "--raw-dir", str(tmp_path / "raw")]) == 1
    err = capsys.readouterr().err
    assert "collective sweep failed: rank 1 exited" in err and "existing profile is kept" in err
    assert out.read_bytes() == before


def _raw_state(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


def test_a_failed_or_refused_calibrate_keeps_the_existing_raw_data_and_a_good_one_replaces_it(tmp_path, monkeypatch,
                                                                                               capsys):
    # the raw folder beside an existing profile holds that profile's data: a run that writes no profile leaves it
    # byte for byte (kernels measured, then the sweep fails; or the profile save itself fails), and a run that
    # writes one replaces it, taking along an earlier run's files of calibrate's own stems (other files stay)
    import accelcal.calibrate.cli as ccli
    import accelcal.collectives.launch as launch
    import accelcal.kernels.suite as suite
    from accelcal.results import ResultSet

    env = synth_env()
    monkeypatch.setattr(suite, "run_suite", lambda device=None, preset="quick", ops=None, progress=print, **kw: ResultSet(
        suite="kernels", env=env, rows=synth_kernels().to_dict("records")))
    out, raw = tmp_path / "node.yaml", tmp_path / "raw"
    args = ["calibrate", "--device", "cpu", "--nproc", "1", "--out", str(out), "--raw-dir", str(raw)]
    assert run(args) == 0
    # the profile also lists an older round file; a bench run's collectives.csv and a note share the folder
    p0 = Profile.load(out)
    p0.identity.raw_data = list(p0.identity.raw_data) + ["raw/collectives-round1.csv"]
    p0.save(out)
    raw.joinpath("collectives-round1.csv").write_text("old run\n")
    raw.joinpath("collectives-round1.env.json").write_text("{}\n")
    raw.joinpath("collectives.csv").write_text("a bench run, not the profile's\n")
    raw.joinpath("notes.txt").write_text("mine\n")
    first, kept = out.read_bytes(), _raw_state(raw)

    def dead_rank(*a, **kw):
        raise launch.SweepError("rank 1 exited with code 1")

    monkeypatch.setattr(launch, "run_sweep", dead_rank)
    assert run(args[:4] + ["2"] + args[5:]) == 1  # kernels measured into staging, then the sweep fails
    assert out.read_bytes() == first and _raw_state(raw) == kept

    def disk_full(profile, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ccli, "_save_replacing", disk_full)
    env["date"] = "2030-01-01T00:00:00+00:00"  # the new kernels.env.json differs from the kept one
    with pytest.raises(OSError):
        run(args)
    assert out.read_bytes() == first and _raw_state(raw) == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.yaml", "raw"]
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]  # no staging or backup folder left behind
    monkeypatch.undo()
    monkeypatch.setattr(suite, "run_suite", lambda device=None, preset="quick", ops=None, progress=print, **kw: ResultSet(
        suite="kernels", env=env, rows=synth_kernels().to_dict("records")))
    assert run(args) == 0
    now = _raw_state(raw)
    assert "collectives-round1.csv" not in now and "collectives-round1.env.json" not in now  # listed, not rewritten
    assert now["notes.txt"] == b"mine\n" and now["collectives.csv"] == b"a bench run, not the profile's\n"
    assert now["kernels.env.json"] != kept["kernels.env.json"] and out.read_bytes() != first
    # a run killed outright (SIGKILL) leaves its staging folder: the next run names it, and leaves it be
    stale = raw / ".partial-killed"
    stale.mkdir()
    capsys.readouterr()
    assert run(args) == 0
    assert f"{stale} is a staging folder of another run" in capsys.readouterr().err and stale.is_dir()


REPO = Path(__file__).resolve().parents[1]


def test_export_refuses_an_interconnect_profile_and_wrong_destinations(tmp_path, capsys):
    assert run(["export", str(REPO / "profiles" / "interconnect" / "h100-nvswitch-8.yaml"), "--format",
                "aiconfigurator", "--out", str(tmp_path / "aic")]) == 2
    assert "is an interconnect profile" in capsys.readouterr().out and not (tmp_path / "aic").exists()
    (tmp_path / "f.txt").write_text("keep")
    assert run(["export", str(GOOD), "--format", "aiconfigurator", "--out", str(tmp_path / "f.txt")]) == 2
    assert "is a file; the aiconfigurator format writes a folder" in capsys.readouterr().out
    assert run(["export", str(GOOD), "--format", "configurator", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().out and (tmp_path / "f.txt").read_text() == "keep"


def test_export_warns_when_the_datasheet_is_another_device(capsys):
    assert run(["export", str(REPO / "profiles" / "nvidia-h200.yaml"), "--format", "configurator", "--datasheet",
                str(REPO / "profiles" / "datasheet" / "mi300x.yaml")]) == 0
    assert "warning: --datasheet mi300x is for AMD Instinct MI300X (rocm)" in capsys.readouterr().err
    assert run(["export", str(REPO / "profiles" / "nvidia-h200.yaml"), "--format", "configurator", "--datasheet",
                str(REPO / "profiles" / "datasheet" / "h200-sxm.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_export_warns_when_the_fabric_is_another_devices_and_refuses_aiconfigurator_options(capsys):
    h100, ic = REPO / "profiles" / "nvidia-h100.yaml", REPO / "profiles" / "interconnect"
    # an RTX 4090's PCIe log as an H100 node's fabric: exported, as predict and plan take it, but said
    assert run(["export", str(h100), "--interconnect", str(ic / "pcie-rtx4090-8.yaml")]) == 0
    err = capsys.readouterr().err
    assert "warning: the intra-node collectives come from pcie-rtx4090-8, measured on NVIDIA GeForce RTX 4090" in err
    assert run(["export", str(h100), "--interconnect", str(ic / "h100-nvswitch-8.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err
    # the configurator format has no backend and copies nothing: the options are refused, not silently dropped
    assert run(["export", str(h100), "--fill-from", str(h100), "--backend", "trtllm"]) == 2
    assert "error: --fill-from and --backend: only for --format aiconfigurator" in capsys.readouterr().out
    assert run(["export", str(h100), "--format", "configurator", "--backend", "vllm"]) == 2
    assert "error: --backend: only for --format aiconfigurator" in capsys.readouterr().out


def test_from_results_refuses_repeated_files_other_devices_and_missing_shape_columns(tmp_path, capsys):
    import pandas as pd

    cpu = REPO / "profiles" / "cpu-amd-epyc-2core-raw"
    out = str(tmp_path / "p.yaml")
    assert run(["calibrate", "--from-results", str(cpu / "kernels.csv"), str(cpu / "kernels.csv"), "--out", out]) == 2
    assert "is given twice" in capsys.readouterr().out
    assert run(["calibrate", "--from-results", str(REPO / "profiles" / "nvidia-h100-raw" / "kernels.csv"),
                str(cpu / "collectives-round1.csv"), "--out", out]) == 2
    assert "one profile describes one device type" in capsys.readouterr().out
    nom = tmp_path / "nom.csv"
    pd.read_csv(cpu / "kernels.csv").drop(columns=["m"]).to_csv(nom, index=False)
    (tmp_path / "nom.env.json").write_text((cpu / "kernels.env.json").read_text())
    assert run(["calibrate", "--from-results", str(nom), "--out", out]) == 2
    assert "its gemm rows need the columns ['m', 'n', 'k'] to be fitted; missing ['m']" in capsys.readouterr().out
    assert not os.path.exists(out)


def test_compare_reports_what_new_lost_and_fails_on_it(tmp_path, capsys):
    d = yaml.safe_load((REPO / "profiles" / "nvidia-h100.yaml").read_text())
    del d["compute"]["fp8_e4m3"]
    lost = tmp_path / "lost.yaml"
    lost.write_text(yaml.safe_dump(d))
    h100 = str(REPO / "profiles" / "nvidia-h100.yaml")
    assert run(["compare", h100, str(lost)]) == 0  # without the flag: reported, not failed
    assert "missing in NEW (1): compute.fp8_e4m3" in capsys.readouterr().out
    assert run(["compare", h100, str(lost), "--fail-on-regression"]) == 5
    assert "1 measurement(s) NEW lacks: compute.fp8_e4m3" in capsys.readouterr().err
    assert run(["compare", h100, h100, "--fail-on-regression"]) == 0


def test_gemm_only_results_are_refused_with_what_is_missing(tmp_path, capsys):
    k = synth_kernels()
    a = _write_results(tmp_path / "a", k[k["op"] == "gemm"], "kernels")
    out = tmp_path / "p.yaml"
    assert run(["calibrate", "--from-results", str(a), "--out", str(out)]) == 2
    err = capsys.readouterr().out  # this file's run() prints errors as accelcal.cli.main does, to stdout here
    assert "GEMM measurements but no memory ones (ops ['gemm']" in err and "run accelcal bench kernels" in err
    assert not out.exists()


def test_export_of_an_interconnect_profile_names_where_it_belongs(capsys):
    ic = Path(__file__).resolve().parents[1] / "profiles" / "interconnect" / "h100-nvswitch-8.yaml"
    assert run(["export", str(ic), "--format", "configurator"]) == 2
    out = capsys.readouterr().out
    assert "is an interconnect profile" in out and "pass a device profile as PROFILE;" in out
    assert "and this one as --interconnect" not in out  # export has no such option


def test_a_smoke_profile_says_it_is_not_for_planning(tmp_path, capsys):
    from accelcal.calibrate.compose import SMOKE_NOTE, describe_origin, smoke_sweep
    from accelcal.planner.serving.predict import serving_warnings

    d = Profile.load(GOOD).to_dict()
    d["identity"]["command"] = "accelcal calibrate --device cpu --smoke --out x.yaml"
    smoke = Profile.from_dict(d)
    assert smoke_sweep(smoke) and not smoke_sweep(Profile.load(GOOD))
    assert describe_origin(smoke).endswith(f"({SMOKE_NOTE})")
    path = tmp_path / "smoke.yaml"
    smoke.save(path)
    assert run(["show", str(path)]) == 0
    assert f"WARNING     {SMOKE_NOTE}" in capsys.readouterr().out
    from accelcal.models import ModelConfig

    assert f"profile {smoke.identity.name}: {SMOKE_NOTE}" in serving_warnings(smoke, None, ModelConfig.resolve("tiny"),
                                                                               64, 8)


def test_show_says_a_prefill_attention_byte_rate_is_a_floor_not_a_measurement(capsys):
    assert run(["show", str(REPO / "profiles" / "nvidia-h100.yaml")]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  bf16 ")]
    assert any(ln.startswith("  bf16 prefill") and "(a floor kept from binding, not a measured rate)" in ln for ln in lines)
    assert not any(ln.startswith("  bf16 decode") and "floor kept" in ln for ln in lines)


def test_compare_export_and_report_name_what_they_refuse(tmp_path, capsys):
    from accelcal.cli import main

    h100, h200 = "profiles/nvidia-h100.yaml", "profiles/nvidia-h200.yaml"
    fabric = "profiles/interconnect/h100-nvswitch-4of8.yaml"
    # a device profile against an interconnect one has nothing in common to compare
    assert main(["compare", h100, fabric]) == 2
    assert "compare takes two profiles of the same kind" in capsys.readouterr().err
    # what only NEW measures is listed, not silently left out
    assert main(["compare", h100, h200]) == 0
    out = capsys.readouterr().out
    assert "only in NEW (5, not compared): attention.bf16.chunk" in out
    assert main(["compare", h100, h200, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "attention.bf16.chunk" in data["only_in_new"] and data["missing_in_new"] == []
    # --datasheet must be a datasheet profile: a measured one made every scaling factor about 1
    assert main(["export", h100, "--datasheet", h100]) == 2
    assert "its source is 'measured', not 'datasheet'" in capsys.readouterr().err
    # missing files are named by their flag or argument
    assert main(["export", h100, "--datasheet", str(tmp_path / "none.yaml")]) == 2
    assert "--datasheet profile" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "PROFILE" in err and "--profile" not in err


def test_a_datasheet_prior_is_never_worded_or_judged_as_a_measurement(capsys):
    measured = REPO / "profiles" / "nvidia-h100.yaml"
    assert run(["show", str(H100)]) == 0
    out = capsys.readouterr().out
    assert "bf16      datasheet peak 990 TFLOP/s" in out and "fitted roof" not in out
    assert run(["export", str(H100)]) == 0
    d = yaml.safe_load(capsys.readouterr().out)
    assert d["gpu"]["mem_bw_measured_bytes_per_s"] is None and d["gpu"]["mem_bw_bytes_per_s"] == 3.35e12
    assert any(m.startswith("mem_bw_measured_bytes_per_s (the profile is a datasheet prior") for m in d["missing"])
    # the measured profile is slower than the vendor's peaks by design: noted, and not a failed regression check
    assert run(["compare", str(H100), str(measured), "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    assert "OLD is a datasheet prior (the vendor's peak figures, not measurements)" in out and "SLOWER" in out


def test_compare_says_when_one_cpu_profile_records_no_cpu_signature(tmp_path, capsys):
    shipped = REPO / "profiles" / "cpu-amd-epyc-2core.yaml"
    d = yaml.safe_load(shipped.read_text())
    assert not (d["identity"].get("versions") or {}).get("cpu_signature")  # measured before it was recorded
    d["identity"].setdefault("versions", {})["cpu_signature"] = "family 25 model 1; avx avx2 fma"
    signed = tmp_path / "signed.yaml"
    signed.write_text(yaml.safe_dump(d))
    assert run(["compare", str(shipped), str(signed)]) == 0
    assert "OLD records no CPU signature" in capsys.readouterr().out


def test_compare_says_when_the_cpu_device_is_another_share_of_the_cores(tmp_path, capsys):
    # run_bench --skip-collectives calibrates one rank: the device is then every core, not one rank's share
    shipped = REPO / "profiles" / "cpu-amd-epyc-2core.yaml"
    d = yaml.safe_load(shipped.read_text())
    assert d["identity"]["threads_per_device"] == 1 and d["identity"]["devices_per_node"] == 2
    d["identity"]["threads_per_device"], d["identity"]["devices_per_node"] = 2, 1
    d["collectives"] = []  # one rank measures none (and 2-rank entries would not fit a 1-device node)
    whole = tmp_path / "whole.yaml"
    whole.write_text(yaml.safe_dump(d))
    run(["compare", str(shipped), str(whole)])
    out = capsys.readouterr().out
    assert "the CPU device is another share of the cores: 1 vs 2 thread(s) per device" in out
    assert "devices per node differ: 2 vs 1" in out
    assert run(["compare", str(shipped), str(shipped)]) == 0
    assert "share of the cores" not in capsys.readouterr().out


def test_a_measuring_calibrate_names_what_its_out_holds_and_refuses_another_devices_profile(tmp_path, capsys):
    from accelcal.calibrate.cli import _check_replaced
    from accelcal.kernels.device import resolve_device

    cpu = resolve_device("cpu")
    gpu_profile = tmp_path / "h100.yaml"
    gpu_profile.write_text((REPO / "profiles" / "nvidia-h100.yaml").read_text())
    with pytest.raises(ValueError, match=r"--out .*h100.yaml holds nvidia-h100: NVIDIA H100 80GB HBM3 \(cuda\), "
                                         r"measured, .*; this run measures cpu: pass --force"):
        _check_replaced(gpu_profile, cpu, force=False)
    _check_replaced(gpu_profile, cpu, force=True)
    assert "this run replaces it when it ends" in capsys.readouterr().err
    mine = tmp_path / "cpu.yaml"
    mine.write_text((REPO / "profiles" / "cpu-amd-epyc-2core.yaml").read_text())
    _check_replaced(mine, cpu, force=False)  # a measured CPU profile: said, not refused
    assert "holds cpu-amd-epyc-2core: AMD EPYC" in capsys.readouterr().err
    with pytest.raises(ValueError, match="datasheet"):
        _check_replaced(H100, resolve_device("cpu"), force=False)  # the vendor's figures are not replaced silently


def test_bench_kernels_says_before_it_runs_that_it_replaces_an_earlier_run(tmp_path, capsys):
    from accelcal.cli import main

    (tmp_path / "kernels.csv").write_text("op\n")
    assert main(["bench", "kernels", "--ops", "overhead", "--out", str(tmp_path)]) == 0
    assert f"[kernels] note: {tmp_path} holds an earlier run (kernels.csv); this run replaces" in capsys.readouterr().err


def test_a_refit_of_smoke_results_stays_flagged_not_for_planning(tmp_path):
    from accelcal.calibrate.compose import smoke_sweep

    k = _write_results(tmp_path / "raw", synth_kernels(), "kernels")
    env = json.loads(k.with_suffix(".env.json").read_text())
    env["command"] = "__main__.py calibrate --device cpu --smoke --out /tmp/p.yaml"
    k.with_suffix(".env.json").write_text(json.dumps(env))
    out = tmp_path / "profiles" / "synth.yaml"
    assert run(["calibrate", "--from-results", str(k), "--out", str(out), "--name", "synth"]) == 0
    p = Profile.load(out)
    assert "(refitting the results of: __main__.py calibrate --device cpu --smoke" in p.identity.command
    assert smoke_sweep(p)


def test_sweep_lines_name_staged_files_by_where_they_will_be(tmp_path):
    staging, final = tmp_path / "node-raw" / ".partial-x1", tmp_path / "node-raw"
    got: list[str] = []
    say = calcli._staged(got.append, staging, final)
    say(f"collectives: wrote {staging}/collectives-round1.csv, {staging.resolve()}/collectives-round1.json")
    say("[3/9] all_reduce 4096 B")  # any other line passes through unchanged
    assert got == [f"collectives: wrote collectives-round1.csv, collectives-round1.json (staged: into {final} when "
                   f"the profile is written)", "[3/9] all_reduce 4096 B"]



def test_bench_kernels_that_measures_nothing_leaves_an_earlier_run_as_it_was(tmp_path, capsys, monkeypatch):
    from accelcal.cli import main
    from accelcal.kernels import suite
    from accelcal.results import ResultSet

    earlier = tmp_path / "kernels.csv"
    earlier.write_text("op\nearlier\n")
    # every TP degree skipped: refused before measuring, naming why
    assert main(["bench", "kernels", "--for-model", "tiny", "--tp", "3", "--out", str(tmp_path)]) == 2
    assert "--for-model tiny --tp 3: no GEMM shape left to measure (tiny at TP=3: tp=3 does not divide heads" in \
        capsys.readouterr().err
    # a run whose cases all come back skipped (or none ran): nothing written over the earlier files
    rs = ResultSet("kernels")
    rs.rows.append({"op": "gemm", "case": "c", "dtype": "fp8_e4m3", "figure": "device", "status": "skipped",
                    "reason": "no fp8 kernel"})
    monkeypatch.setattr(suite, "run_suite", lambda **kw: rs)
    assert main(["bench", "kernels", "--ops", "gemm", "--out", str(tmp_path)]) == 1
    assert f"nothing measured (1 case(s), none ok); {tmp_path} is left as it was" in capsys.readouterr().err
    assert earlier.read_text() == "op\nearlier\n" and sorted(p.name for p in tmp_path.iterdir()) == ["kernels.csv"]


@pytest.mark.parametrize("name", ["kernels.json", "kernels.parquet", "kernels.env.json"])
def test_from_results_names_the_csv_when_given_another_file_of_the_run(tmp_path, name):
    from accelcal.results import read_results

    p = tmp_path / name
    p.write_text("{}")
    with pytest.raises(ValueError, match=rf"{name}: expected a results CSV \(kernels.csv, written beside it by the "
                                         rf"same run\), not its \.(json|parquet) file"):
        read_results([p])


def test_an_interrupted_keep_partial_run_names_the_folder_it_kept_and_says_it_kept_it(tmp_path, capsys, monkeypatch):
    from accelcal.cli import main

    def interrupted(args, created):
        top = tmp_path / "new"  # a folder the run made above its raw folder, then its staging folder
        staging = top / "p-raw" / ".partial-abc"
        staging.mkdir(parents=True)
        created += [top, staging]
        raise KeyboardInterrupt

    monkeypatch.setattr(calcli, "_calibrate_run", interrupted)
    assert main(["calibrate", "--smoke", "--out", str(tmp_path / "new" / "p.yaml"), "--keep-partial"]) == 130
    err = capsys.readouterr().err
    assert f"partial raw results kept in {tmp_path / 'new' / 'p-raw' / '.partial-abc'} (--keep-partial)" in err
    assert f"kept in {tmp_path / 'new'} " not in err  # the folder above is not named as if it held them
    assert "interrupted; ranks stopped, temporary files removed, the partial raw results kept (--keep-partial)" in err
    assert (tmp_path / "new" / "p-raw" / ".partial-abc").is_dir()


@pytest.mark.parametrize("value", ["-0.001", "0", "inf", "nan"])
def test_an_ok_row_without_a_positive_finite_time_is_refused_by_file_and_line(tmp_path, value):
    # calibrate --from-results and import read the same way: the row is named, not dropped from one fit in silence
    from accelcal.results import read_results

    src = tmp_path / "raw"
    k = _write_results(src, synth_kernels(), "kernels")
    lines = k.read_text().splitlines()
    head = lines[0].split(",")
    col, status = head.index("median_s"), head.index("status")
    row = next(i for i, s in enumerate(lines[1:], 1) if s.split(",")[status] == "ok")
    cells = lines[row].split(",")
    cells[col] = value
    lines[row] = ",".join(cells)
    k.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"kernels.csv: line {row + 1} \(.*\): median_s {value if value != '0' else '0.0'}"
                                         rf" on an ok row; a measured time is a finite number > 0 s"):
        read_results([k])


def test_from_results_with_collectives_only_asks_for_the_kernels_run(tmp_path, capsys):
    c = _write_results(tmp_path / "raw", synth_collectives(), "collectives")
    assert run(["calibrate", "--from-results", str(c), "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().out  # this file's run() prints the error line on stdout
    assert "no kernels results among" in err and "(only collectives rows); a device profile is fitted from a kernels" in err
    assert "thread" not in err and not (tmp_path / "p.yaml").exists()


def test_from_results_refuses_measuring_options_it_would_ignore(tmp_path, capsys):
    cpu = REPO / "profiles" / "cpu-amd-epyc-2core-raw"
    out = tmp_path / "p.yaml"
    assert run(["calibrate", "--from-results", str(cpu / "kernels.csv"), "--smoke", "--nproc", "4", "--out",
                str(out)]) == 2
    msg = capsys.readouterr().out
    assert "--smoke, --nproc (options of a measuring run) would change nothing: drop them" in msg
    assert run(["calibrate", "--from-results", str(cpu / "kernels.csv"), "--device", "cpu", "--out", str(out)]) == 2
    assert "--device (options of a measuring run) would change nothing: drop it" in capsys.readouterr().out
    assert not out.exists()


def test_tp_without_for_model_is_refused_before_measuring(tmp_path, capsys, monkeypatch):
    from accelcal.kernels import suite

    def never(**kw):
        raise AssertionError("measured although the options were refused")

    monkeypatch.setattr(suite, "run_suite", never)
    assert run(["calibrate", "--device", "cpu", "--tp", "2", "--out", str(tmp_path / "p.yaml")]) == 2
    assert "--tp 2: the TP degrees of --for-model's shapes" in capsys.readouterr().out
    assert not (tmp_path / "p.yaml").exists() and not (tmp_path / "p-raw").exists()
