"""accelcal validate end to end on the tiny models: one rank, two gloo ranks + ranking, profile writes."""

import json
import os
from pathlib import Path

import pytest
import yaml

from accelcal.calibrate.profile import MissingMeasurement, Profile
from accelcal.cli import main
from accelcal.validate.compare import Comparison, to_validation, write_validation
from accelcal.validate.configs import Case, default_cases

REPO = Path(__file__).resolve().parents[1]


def _quality(lo, hi, n):
    return {"points": n, "median_rel_err": 0.05, "max_rel_err": 0.15, "heldout_median_rel_err": 0.07,
            "heldout_p90_rel_err": 0.2, "range_min": float(lo), "range_max": float(hi), "converged": True, "flags": []}


def _layout_profile():
    """A CPU profile in the documented layout, for plumbing tests only: its numbers are
    round figures of a 2-core CPU's order of magnitude, not a measurement."""
    peak, bw, ovh = 5e10, 1e10, 5e-6
    pts = []
    for m, n, k in [(1, 256, 256), (16, 768, 256), (256, 256, 256), (512, 768, 256), (1024, 1024, 1024)]:
        t = ovh + max(2 * m * n * k / peak, 4 * (m * k + k * n + m * n) / bw)
        pts.append([float(m), float(n), float(k), t])
    mem = {"latency_s": 2e-6, "bandwidth_bytes_per_s": bw, "quality": _quality(1e3, 1e8, 8)}
    att = {"latency_s": 2e-5, "flop_per_s": 2e10, "bytes_per_s": 5e9, "quality": _quality(1e5, 1e10, 6)}
    return {
        "schema_version": 1, "method_version": 1,
        "identity": {"name": "test-layout-cpu", "source": "measured", "device_type": "cpu",
                     "device_name": "test CPU (layout fixture, not a measurement)", "devices_per_node": 2, "nodes": 1,
                     "memory_capacity_bytes": 8e9, "host": "test", "date": "2026-11-26", "command": "tests",
                     "versions": {}, "citations": [], "raw_data": []},
        "compute": {"fp32": {"peak_flop_per_s": peak, "memory_bandwidth_bytes_per_s": bw, "overhead_s": ovh,
                             "points": pts, "quality": _quality(pts[0][0], 2e9, len(pts))}},
        "memory": {"copy": dict(mem), "read": dict(mem), "write": dict(mem)},
        "overheads": {"eager_launch_s": 5e-6, "launch_sync_s": 6e-6, "sync_s": 1e-6, "graph_kernel_s": None},
        "attention": {"fp32": {"prefill": dict(att), "decode": dict(att)}},
        "collectives": [{"op": op, "scope": "intra_node", "group_size": 2, "dtype": "fp32",
                         "pieces": [{"max_bytes": None, "latency_s": 5e-5, "bandwidth_bytes_per_s": 2e9}],
                         "quality": _quality(1e3, 1e8, 8)} for op in ("all_reduce", "all_gather", "all_to_all", "send_recv")],
    }


def _measured_cpu_profile():
    for p in sorted((REPO / "profiles").rglob("*.yaml")):
        try:
            prof = Profile.load(p)
        except Exception:
            continue
        if prof.identity.source == "measured" and prof.identity.device_type == "cpu" and "fp32" in prof.dtypes():
            try:  # the TP=2 and ranking cases need a 2-rank all-reduce fit
                prof.collective_time_s("all_reduce", 1 << 20, 2)
            except MissingMeasurement:
                continue
            return p
    return None


@pytest.fixture
def profile_path(tmp_path):
    """A measured CPU profile from profiles/ when one exists (copied), else the layout fixture; either stands for
    this machine's CPU (validate --write records only runs on the device a profile describes)."""
    import yaml

    from accelcal.kernels.device import resolve_device

    dst = tmp_path / "node.yaml"
    src = _measured_cpu_profile()
    d = (yaml.safe_load(Profile.load(src).with_validation(None).to_yaml()) if src is not None  # no validation yet
         else _layout_profile())
    d["identity"]["device_name"] = resolve_device("cpu").name()
    Profile.from_dict(d, origin="test copy").save(dst)
    return dst


def test_write_refuses_a_profile_of_another_device(tmp_path, capsys):
    dst = tmp_path / "h100.yaml"
    dst.write_bytes((REPO / "profiles" / "nvidia-h100.yaml").read_bytes())
    before = dst.read_bytes()
    rc = main(["validate", "--profile", str(dst), "--device", "cpu", "--model", "tiny", "--quick", "--write"])
    err = capsys.readouterr().err
    assert rc == 2 and "describes NVIDIA H100 80GB HBM3 (cuda), but this run is on" in err
    assert dst.read_bytes() == before


def test_write_refuses_a_read_only_profile_before_measuring(tmp_path, capsys, monkeypatch):
    import accelcal.validate.runner as runner

    dst = tmp_path / "cpu.yaml"
    dst.write_bytes((REPO / "profiles" / "cpu-amd-epyc-2core.yaml").read_bytes())
    real_access = os.access
    # as root a chmod 0444 file stays writable: the check is what os.access says for a user it is read-only to
    monkeypatch.setattr(runner.os, "access", lambda p, mode: False if str(p) == str(dst) else real_access(p, mode))
    monkeypatch.setattr(runner, "predict_case", lambda *a, **k: (_ for _ in ()).throw(AssertionError("measured")))
    rc = main(["validate", "--profile", str(dst), "--device", "cpu", "--model", "tiny", "--quick", "--write"])
    assert rc == 2 and "read-only (no write permission); --write puts the validation section" in capsys.readouterr().err


def test_validate_refuses_an_interconnect_profile_by_name(capsys):
    rc = main(["validate", "--profile", str(REPO / "profiles" / "interconnect" / "h100-nvswitch-8.yaml"), "--device",
               "cpu", "--model", "tiny", "--quick"])
    err = capsys.readouterr().err
    assert rc == 2 and "--profile h100-nvswitch-8: is an interconnect profile (collectives only, no compute)" in err
    assert "WARNING" not in err and "compute data only for" not in err


def test_validating_another_devices_profile_warns(tmp_path, capsys):
    rc = main(["validate", "--profile", str(REPO / "profiles" / "nvidia-h100.yaml"), "--device", "cpu", "--model",
               "tiny", "--quick", "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["notes"][0].startswith("WARNING: ") and "describes NVIDIA H100 80GB HBM3 (cuda), but this run is on" \
        in out["notes"][0] and "not the profile's accuracy" in out["notes"][0]


def _cases_in(out):
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(("tiny.", "tiny-moe."))]


def test_validate_single_rank_end_to_end(profile_path, capsys):
    rc = main(["validate", "--profile", str(profile_path), "--device", "cpu", "--model", "tiny,tiny-moe", "--quick",
               "--shapes", "1", "--write"])
    out = capsys.readouterr().out
    assert rc == 0, out
    want = {c.name for c in default_cases("cpu", ["tiny", "tiny-moe"], moe_models={"tiny-moe"}, shapes=1)}
    assert len(want) == 4  # prefill and decode, dense and MoE
    assert set(_cases_in(out)) == want
    assert {"prefill", "decode"} <= {c.phase for c in default_cases("cpu", ["tiny"], quick=True)}
    v = Profile.load(profile_path).validation
    assert v is not None and {c.name for c in v.cases} == want
    for c in v.cases:
        assert c.measured_s > 0 and c.predicted_s > 0
        assert c.rel_err == pytest.approx(c.predicted_s / c.measured_s - 1)
    errs = sorted(abs(c.rel_err) for c in v.cases)
    assert v.max_abs_rel_err == pytest.approx(errs[-1])
    assert v.median_abs_rel_err == pytest.approx((errs[len(errs) // 2 - 1] + errs[len(errs) // 2]) / 2)
    assert "median |rel err|" in out and "wrote the validation section" in out



def test_validate_json_is_the_only_thing_on_stdout(profile_path, capsys):
    import json

    rc = main(["validate", "--profile", str(profile_path), "--device", "cpu", "--model", "tiny", "--quick",
               "--shapes", "1", "--no-ranking", "--format", "json"])
    cap = capsys.readouterr()
    assert rc == 0
    doc = json.loads(cap.out)  # one document: the progress lines went to stderr
    assert doc["cases"] and "validate:" in cap.err and "validate:" not in cap.out

def test_validate_two_gloo_ranks_and_ranking(profile_path, capsys):
    before = profile_path.read_bytes()
    rc = main(["validate", "--profile", str(profile_path), "--device", "cpu", "--nproc", "2", "--model", "tiny",
               "--quick", "--shapes", "1", "--results", str(profile_path.parent / "raw")])
    out = capsys.readouterr().out
    assert rc == 0, out
    names = _cases_in(out)
    assert any(".tp2." in n for n in names) and any(".tp1_dp2." in n for n in names)
    assert any(".tp1." in n for n in names)
    for phase in ("prefill", "decode"):
        assert f"ranking {phase}: measured" in out and f"ranking {phase}: predicted" in out
    assert "TP=2" in out and "TP=1 x DP=2" in out
    # The sharded layer was checked against the unsharded one on the real gloo all-reduce.
    check = [ln for ln in out.splitlines() if "TP output check" in ln]
    assert check and float(check[0].rsplit("=", 1)[1].split()[0]) < 1e-3
    assert profile_path.read_bytes() == before  # no --write: print only
    # Raw records: one row per case, samples kept (multi-rank ones shipped back from rank 0).
    from accelcal.results import read_results

    df = read_results([profile_path.parent / "raw" / "validation.csv"])
    assert set(df["case"]) == set(names) and (df["status"] == "ok").all()
    tp2 = df[df["tp"] == 2].iloc[0]
    assert tp2["n_samples"] >= 5 and tp2["median_s"] > 0
    assert tp2["rel_err"] == pytest.approx(tp2["predicted_s"] / tp2["median_s"] - 1)


def test_validation_section_round_trips_through_the_loader(profile_path):
    rows = [Comparison(Case("tiny", "prefill", 2, 64, 64), measured_s=2.5e-3, predicted_s=2.0e-3, method="host-queue"),
            Comparison(Case("tiny", "decode", 8, 1, 512, tp=2), measured_s=1.0e-3, predicted_s=1.3e-3, method="x"),
            Comparison(Case("tiny", "decode", 1, 1, 256), measured_s=4.0e-4, predicted_s=4.0e-4, method="x")]
    write_validation(profile_path, rows, device="cpu (test)", command="accelcal validate --profile p.yaml --write")
    v = Profile.load(profile_path).validation
    assert [c.name for c in v.cases] == [r.case.name for r in rows]
    assert [c.rel_err for c in v.cases] == pytest.approx([-0.2, 0.3, 0.0])
    assert v.median_abs_rel_err == pytest.approx(0.2) and v.max_abs_rel_err == pytest.approx(0.3)
    assert v.device == "cpu (test)"
    # its provenance: the command that measured it, shown by accelcal show
    assert v.command == "accelcal validate --profile p.yaml --write"
    from accelcal.calibrate.show import format_profile

    assert "(accelcal validate --profile p.yaml --write)" in format_profile(Profile.load(profile_path))
    assert to_validation(rows, "cpu").command == "" and "command" not in to_validation(rows, "cpu").to_dict()
    raw = yaml.safe_load(profile_path.read_text())["validation"]
    assert isinstance(raw["cases"][0]["measured_s"], float)
    # Saved again unchanged, the file is byte-identical (nothing lost in the round trip).
    text = profile_path.read_text()
    Profile.load(profile_path).save(profile_path)
    assert profile_path.read_text() == text
    assert to_validation(rows, "cpu").cases[1].phase == "decode"


def test_failed_run_leaves_profile_untouched(profile_path, monkeypatch, capsys):
    import accelcal.validate.measure as measure

    before = profile_path.read_bytes()
    calls = []
    real = measure.measure_case

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure in the second case")
        return real(*a, **kw)

    monkeypatch.setattr(measure, "measure_case", flaky)
    with pytest.raises(RuntimeError, match="injected"):
        main(["validate", "--profile", str(profile_path), "--device", "cpu", "--model", "tiny", "--quick", "--write"])
    assert len(calls) == 2
    assert profile_path.read_bytes() == before
    assert sorted(os.listdir(profile_path.parent)) == ["node.yaml"]  # no temp file left behind


def test_bad_inputs_are_clear_errors_and_touch_nothing(profile_path, capsys):
    before = profile_path.read_bytes()
    assert main(["validate", "--profile", str(profile_path), "--model", "no-such-model", "--quick"]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert main(["validate", "--profile", str(profile_path), "--nproc", "0"]) == 2
    assert "--nproc must be >= 1, got 0" in capsys.readouterr().err
    assert main(["validate", "--profile", str(profile_path), "--dtype", "fp8_e4m3", "--quick"]) == 2
    assert "--dtype fp8_e4m3" in capsys.readouterr().err
    assert main(["validate", "--profile", str(profile_path.parent / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert profile_path.read_bytes() == before


def test_cli_and_comparison_modules_import_without_torch():
    import subprocess
    import sys

    code = ("import sys; import accelcal.validate.cli, accelcal.validate.runner, accelcal.validate.compare, "
            "accelcal.validate.ranking, accelcal.validate.configs; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_ranking_orders_and_agreement():
    from accelcal.validate.ranking import Ranking, format_rankings

    r = Ranking("decode", ["TP=2", "TP=1 x DP=2"], measured_s=[3e-3, 1e-3], predicted_s=[2e-3, 2.5e-3])
    assert r.measured_order == ["TP=1 x DP=2", "TP=2"] and r.predicted_order == ["TP=2", "TP=1 x DP=2"]
    assert not r.agree and "DISAGREE" in format_rankings([r])
    ok = Ranking("prefill", ["TP=2", "TP=1 x DP=2"], measured_s=[1e-3, 2e-3], predicted_s=[1.5e-3, 1.6e-3])
    assert ok.agree and "-> agree" in format_rankings([ok])
    with pytest.raises(ValueError, match="2 labels, 1 measured"):
        Ranking("decode", ["a", "b"], measured_s=[1.0], predicted_s=[1.0, 2.0])
    # overlapping interquartile ranges: the measurement cannot order the layouts, so it cannot judge the planner
    close = Ranking("decode", ["TP=2", "TP=1 x DP=2"], measured_s=[10.4e-3, 9.6e-3], predicted_s=[5.5e-3, 7.6e-3],
                    measured_q1_s=[9.5e-3, 9.0e-3], measured_q3_s=[11.0e-3, 10.0e-3])
    assert not close.separated and close.verdict == "too close to rank"
    text = format_rankings([close])
    assert "too close to rank (measured gap 8.3%" in text and "orders them the other way" in text
    apart = Ranking("decode", ["TP=2", "TP=1 x DP=2"], measured_s=[10.4e-3, 9.6e-3], predicted_s=[5.5e-3, 7.6e-3],
                    measured_q1_s=[10.2e-3, 9.5e-3], measured_q3_s=[10.6e-3, 9.7e-3])
    assert apart.separated and apart.verdict == "DISAGREE"


def test_case_validation_shows_the_arithmetic():
    with pytest.raises(ValueError, match=r"batch\(5\) % dp\(2\) = 1"):
        Case("tiny", "decode", 5, 1, 64, dp=2)
    with pytest.raises(ValueError, match="q_len must be 1"):
        Case("tiny", "decode", 1, 4, 64)
    with pytest.raises(ValueError, match=r"q_len\(8\) must equal kv_len\(16\)"):
        Case("tiny", "prefill", 1, 8, 16)
    cases = default_cases("cuda", ["llama3-8b", "mixtral-8x7b"], nproc=2, has_graphs=True, moe_models={"mixtral-8x7b"})
    assert any(c.graphs for c in cases if c.model == "llama3-8b")
    assert not any(c.graphs or c.tp > 1 for c in cases if c.model == "mixtral-8x7b")
    assert {c.tp for c in cases} == {1, 2}


def test_a_failing_rank_fails_the_whole_multi_rank_run():
    from accelcal.validate.layers import LayerDims
    from accelcal.validate.tp_worker import run_rank_cases

    bad = LayerDims(hidden_size=64, heads=4, kv_heads=1, head_dim=16, ffn_size=128)  # kv_heads 1 cannot split over 2
    with pytest.raises(RuntimeError, match=r"kv_heads: 1 % 2 = 1"):
        run_rank_cases([Case("bad", "decode", 2, 1, 32, tp=2)], {"bad": bad}, nproc=2, progress=None)


def test_every_cpu_case_runs_with_the_profiles_threads_per_device(tmp_path, monkeypatch):
    """A CPU device is one rank's share of the cores: single-rank cases run with that many threads too."""
    import torch

    import accelcal.validate.measure as measure
    from accelcal.validate.runner import run_validation

    d = _layout_profile()
    d["identity"]["threads_per_device"] = 1
    path = tmp_path / "one-thread.yaml"
    Profile.from_dict(d, origin="layout fixture").save(path)
    seen, real = [], measure.measure_case

    def spy(case, *a, **k):
        seen.append(torch.get_num_threads())
        return real(case, *a, **k)

    monkeypatch.setattr(measure, "measure_case", spy)
    before = torch.get_num_threads()
    run = run_validation(path, device="cpu", models=["tiny"], quick=True, shapes=1, write=False, progress=None)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before  # restored afterwards
    assert any("threads_per_device" in n for n in run.notes)
    # tiny's layer (3 MB) fits in any server CPU's last-level cache, and the output says so
    from accelcal.kernels.device import resolve_device

    if measure.last_level_cache_bytes(resolve_device("cpu")) > 4 << 20:
        assert any("fit in the" in n and "last-level cache" in n for n in run.notes)


def test_unmeasured_gemm_shapes_are_one_note_per_section():
    from collections import namedtuple
    from types import SimpleNamespace as NS

    from accelcal.validate.runner import fallback_notes

    case = namedtuple("case", "name")
    # as planner.cost lists them: "<node>: <detail> (<source>)"
    line = "q_proj: fitted model; (N={n}, K=1024) not measured (sweep covered ['small']) (compute.fp32)"
    # a MoE layer's grouped GEMM words it differently: "8 x (shape model: ...; (N=.., K=..) not measured) (...)"
    moe = "experts_gate_up: 8 x (shape model: compute-bound; (N={n}, K=1024) not measured) (compute.fp32)"
    preds = {case(f"case{i}"): NS(extrapolated=[line.format(n=n) for n in (1024, 2048)] + [moe.format(n=6144)] +
                                     ["attention: no attention measured for fp32 prefill"]) for i in range(1, 4)}
    notes = fallback_notes(preds)
    assert len(notes) == 2, notes
    assert notes[0] == ("prediction fell back on an unmeasured figure in 3 case(s) (case1, ...): GEMM shapes not "
                        "measured (compute.fp32): N=1024 K=1024, N=2048 K=1024, N=6144 K=1024")
    assert "no attention measured for fp32 prefill" in notes[1]


def test_validate_two_ranks_json_is_one_document_on_stdout(profile_path, capfd):
    # the spawned ranks write to the process's own stdout file: their progress must go to stderr like the parent's
    import json

    rc = main(["validate", "--profile", str(profile_path), "--device", "cpu", "--nproc", "2", "--model", "tiny",
               "--quick", "--shapes", "1", "--no-ranking", "--format", "json"])
    cap = capfd.readouterr()
    assert rc == 0
    doc = json.loads(cap.out)
    assert any(".tp2." in c["case"] for c in doc["cases"]) and "[ranks=2]" in cap.err and "[ranks=2]" not in cap.out
