"""nccl-tests input: parsing real logs, refusing bad ones, importing into a profile, and the fit's accuracy."""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from pathlib import Path

import pytest
import yaml

from accelcal.calibrate.nccl_import import import_profile, profile_from_runs
from accelcal.calibrate.profile import MissingMeasurement, Profile, ProfileError, busbw_factor
from accelcal.cli import main
from accelcal.collectives.nccl_tests import NcclTestsError, parse_text, read_runs, sha256_of

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).parent / "fixtures" / "nccl_tests"
IB = FIX / "ib_2x8_h100_all_reduce_perf.txt"
NVS = FIX / "nvswitch_8_h100_all_reduce_perf.txt"


def test_text_log_two_hosts_both_placements():
    (run,) = read_runs([IB])
    assert (run.op, run.ranks, run.nodes, run.scope, run.group_size) == ("all_reduce", 16, 2, "inter_node", 16)
    assert run.hosts[:1] == ["bm-h100-01"] and run.hosts[-1] == "bm-h100-02"
    assert run.nccl_version == "2.26.2+cuda12.8" and run.graph == 0 and run.dtype == "fp32"
    assert len(run.rows) == 32 and run.rows[0].size_bytes == 8 and run.rows[-1].size_bytes == 17179869184
    first = run.rows[0]
    assert first.out_of_place.time_s == pytest.approx(68.52e-6) and first.in_place.time_s == pytest.approx(24.70e-6)
    last = run.rows[-1]
    # nccl-tests' busbw is our busbw: algbw x 2(n-1)/n for all_reduce on 16 ranks
    assert last.out_of_place.busbw_bytes_per_s == pytest.approx(
        last.size_bytes / last.out_of_place.time_s * busbw_factor("all_reduce", 16), rel=0.01)
    x, t = run.series("both")
    assert len(x) == 64 and len(run.series("out")[0]) == 32


def test_the_header_library_code_is_the_nccl_version_without_an_nccl_version_line():
    # "# nccl-tests version 2.18.3 nccl-headers=22902 nccl-library=22902": nccl-tests 2.18.3 on NCCL 2.29.2
    src = Path(__file__).resolve().parents[1] / "profiles" / "interconnect" / "sources"
    (run,) = read_runs([src / "h100-nvswitch-4of8-all_reduce.txt"])
    assert (run.nccl_tests_version, run.nccl_version) == ("2.18.3", "2.29.2")


def test_single_host_eight_ranks_is_intra_node():
    (run,) = read_runs([NVS])
    assert (run.ranks, run.nodes, run.scope, len(run.rows)) == (8, 1, "intra_node", 6)


def test_json_matches_text():
    (j,) = read_runs([FIX / "ib_2x8_h100_all_reduce_perf.json"])
    (t,) = read_runs([IB])
    assert j.fmt == "json" and (j.op, j.ranks, j.scope, j.nccl_version) == ("all_reduce", 16, "inter_node", "2.26.2")
    assert [r.size_bytes for r in j.rows] == [r.size_bytes for r in t.rows]
    js, ts = j.series("both"), t.series("both")  # (sizes, times): compare each list (approx takes flat data)
    assert len(js) == len(ts)
    for a, b in zip(js, ts):
        assert list(a) == pytest.approx(list(b))


@pytest.mark.parametrize("name,line,words", [
    ("wrong_all_reduce_perf.txt", 3, "#wrong = 4"),
    ("truncated_all_reduce_perf.txt", 38, "cut short"),
    ("oob_failed_all_reduce_perf.txt", 3, "Out of bounds values : 108 FAILED"),
])
def test_bad_logs_are_refused_naming_file_and_line(name, line, words):
    with pytest.raises(NcclTestsError) as exc:
        read_runs([FIX / name])
    assert f"{name}:{line}:" in str(exc.value) and words in str(exc.value)


def test_nothing_parsable_is_refused(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("NCCL INFO Bootstrap\nhello\n")
    with pytest.raises(NcclTestsError, match="notes.txt: nothing parsable"):
        read_runs([p])


def test_wrong_collective_is_caught_by_the_busbw_factor():
    with pytest.raises(NcclTestsError, match="busbw / algbw .* all_gather factor for 16 ranks"):
        read_runs([IB], op="all_gather")


def test_prefixed_lines_and_inferred_ranks():
    # srun --label / mpirun --tag-output prefixes; no rank lines: n from busbw/algbw
    rows = [ln for ln in IB.read_text().splitlines() if ln.strip().startswith(("#       size", "1073741824", "2147483648",
                                                                               "4294967296", "8589934592"))]
    (run,) = parse_text("\n".join(" 0: " + ln for ln in rows), "x.log", op_hint="all_reduce")
    assert run.ranks == 16 and len(run.rows) == 4 and any("inferred" in n for n in run.notes)


def test_accelcal_csv_is_read():
    csv = Path(__file__).parent.parent / "profiles" / "cpu-amd-epyc-2core-raw" / "collectives-round1.csv"
    runs = read_runs([csv])
    assert runs and all(r.fmt == "accelcal-csv" and r.rows for r in runs)
    assert {r.op for r in runs} >= {"all_reduce", "all_gather"}


def test_a_cut_accelcal_csv_is_refused_not_fitted_short(tmp_path):
    data = (Path(__file__).parent.parent / "profiles" / "cpu-amd-epyc-2core-raw" / "collectives-round1.csv").read_bytes()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(data[:-300])  # a copy that stopped mid-row
    with pytest.raises(ValueError, match=r"cut.csv: the last row is cut short \(no line end\): a truncated file\?"):
        read_runs([cut])
    lines = data.decode().splitlines(keepends=True)
    short = tmp_path / "short.csv"
    short.write_text("".join(lines[:5]) + ",".join(lines[5].split(",")[:6]) + "\n" + "".join(lines[6:]))
    with pytest.raises(ValueError, match=r"short.csv: data row 5 has 6 fields where the header has \d+: a cut or "):
        read_runs([short])


@pytest.mark.parametrize("time", ["-18.99", "0.00"])
def test_a_row_with_no_positive_time_is_refused_by_line(tmp_path, time):
    lines = NVS.read_text().splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.split()[:1] == ["268435456"])
    toks = lines[k].split()
    toks[5] = time  # the out-of-place time
    lines[k] = "  ".join(toks)
    log = tmp_path / "edited.txt"
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(NcclTestsError, match=rf"edited.txt:{k + 1}: time {float(time):g} us; a measured time is > 0"):
        read_runs([log])


def test_a_json_result_with_a_non_finite_or_negative_time_is_refused(tmp_path):
    doc = json.loads((FIX / "ib_2x8_h100_all_reduce_perf.json").read_text())
    for bad, message in ((float("nan"), "expected finite numbers for time"), (-3.0, "a measured time is > 0")):
        doc["results"][5]["out_of_place"]["time"] = bad
        f = tmp_path / "r.json"
        f.write_text(json.dumps(doc))
        with pytest.raises(NcclTestsError, match=message):
            read_runs([f])


def test_placements_that_disagree_are_flagged_and_one_can_be_fitted(tmp_path):
    lines = []
    for ln in IB.read_text().splitlines():
        t = ln.split()
        if t and t[0].isdigit() and len(t) >= 13:  # the in-place time 3x, its bandwidths / 3
            t[9], t[10], t[11] = f"{float(t[9]) * 3:.2f}", f"{float(t[10]) / 3:.2f}", f"{float(t[11]) / 3:.2f}"
            ln = "  ".join(t)
        lines.append(ln)
    log = tmp_path / "all_reduce_perf.txt"
    log.write_text("\n".join(lines) + "\n")
    said: list[str] = []
    both = import_profile([str(log)], name="mm", out=str(tmp_path / "mm.yaml"), progress=said.append)
    (e,) = both.collectives
    assert any("in-place times are 2.99x the out-of-place ones" in f for f in e.quality.flags)
    assert any(m.startswith("WARNING: all_reduce[inter_node,16]: in-place times are") for m in said)
    out = import_profile([str(log)], name="mo", out=str(tmp_path / "mo.yaml"), placement="out")
    assert not any("in-place times" in f for f in out.collectives[0].quality.flags)
    clean = import_profile([str(IB)], name="ib", out=str(tmp_path / "ib.yaml"))
    assert not any("in-place times" in f for f in clean.collectives[0].quality.flags)


def test_import_fit_reproduces_the_logs_own_busbw(tmp_path):
    out = tmp_path / "ib.yaml"
    prof = import_profile([str(IB)], name="ib", citations=["https://github.com/NVIDIA/nccl-tests/issues/309"],
                          out=str(out))
    (run,) = read_runs([IB])
    big, small = [], []
    for r in run.rows:
        for t in (r.out_of_place, r.in_place):
            est = prof.collective_time_s("all_reduce", r.size_bytes, 16, "inter_node").time_s
            model_busbw = r.size_bytes / est * busbw_factor("all_reduce", 16)
            log_busbw = r.size_bytes / t.time_s * busbw_factor("all_reduce", 16)  # = the printed busbw, unrounded
            (big if r.size_bytes >= 64 * 1024 else small).append(abs(model_busbw / log_busbw - 1))
    print(f"busbw |rel err| >= 64 KiB: median {statistics.median(big):.2%} max {max(big):.2%} ({len(big)} points); "
          f"< 64 KiB: median {statistics.median(small):.2%} max {max(small):.2%} ({len(small)} points)")
    # Where busbw is printed with real digits the fit reproduces it; tiny messages are latency-bound and noisier
    # (the log's own first 8 B call took 68.5 us, its in-place twin 24.7 us).
    assert statistics.median(big) <= 0.03 and statistics.median(small) <= 0.15
    loaded = Profile.load(out)
    assert loaded.identity.source == "published" and loaded.is_interconnect
    rel = next(iter(loaded.identity.raw_sha256))
    assert loaded.identity.raw_sha256[rel] == sha256_of(IB)
    assert (out.parent / rel).resolve() == IB.resolve()


def test_cli_keeps_the_naming_scheme(tmp_path, capsys):
    # as calibrate: --out is a .yaml whose stem is the profile's name; --name, if given, must say the same
    assert main(["import", "nccl-tests", str(NVS), "--out", str(tmp_path / "ic.yaml"), "--name", "foo"]) == 2
    assert "--name 'foo' differs from the stem of --out" in capsys.readouterr().err
    assert main(["import", "nccl-tests", str(NVS), "--out", str(tmp_path / "ic.txt")]) == 2
    assert "expected a profile path ending in .yaml" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    assert main(["import", "nccl-tests", str(NVS), "--out", str(tmp_path / "ic.yaml"), "--name", "ic"]) == 0
    assert Profile.load(tmp_path / "ic.yaml").identity.name == "ic"


def test_cli_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "ic.yaml"
    assert main(["import", "nccl-tests", str(NVS), "--out", str(out)]) == 0
    assert Profile.load(out).identity.source == "measured"  # no citation: the user's own run
    before = out.read_text()
    assert main(["import", "nccl-tests", str(IB), "--out", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == before
    assert main(["import", "nccl-tests", str(IB), "--out", str(out), "--force", "--citation", "u"]) == 0
    assert Profile.load(out).collectives[0].scope == "inter_node"
    assert main(["import", "nccl-tests", str(FIX / "wrong_all_reduce_perf.txt"), "--out", str(tmp_path / "w.yaml")]) == 2
    assert "wrong_all_reduce_perf.txt:3:" in capsys.readouterr().err and not (tmp_path / "w.yaml").exists()
    # a destination that cannot be written is said before the fit, by the argument's name (not a temp file's)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["import", "nccl-tests", str(NVS), "--out", str(blocker / "ic.yaml")]) == 2
    res = capsys.readouterr()
    assert f"--out {blocker / 'ic.yaml'}: {blocker} is not a folder" in res.err and "[import] read" not in res.out


def test_large_message_only_log_is_flagged():
    prof = import_profile([str(NVS)], name="nvs")
    assert any("latency is the large-message intercept" in f for f in prof.collectives[0].quality.flags)
    assert "fit-flagged" in prof.collective_time_s("all_reduce", 1 << 14, 8, "intra_node").flags


def _ic_dict(prof: Profile) -> dict:
    return yaml.safe_load(prof.to_yaml())


def test_interconnect_profile_strictness():
    d = _ic_dict(import_profile([str(NVS)], name="nvs", citations=["https://github.com/NVIDIA/nccl-tests/issues/290"]))
    d["identity"]["citations"] = []
    with pytest.raises(ProfileError, match="a published profile must cite"):
        Profile.from_dict(d, "ic.yaml")
    d["identity"]["citations"] = ["x"]
    d["collectives"] = []
    with pytest.raises(ProfileError, match="neither"):
        Profile.from_dict(d, "ic.yaml")


def test_unmeasured_gather_and_send_recv_are_bounded_by_all_reduce_and_flagged():
    prof = import_profile([str(NVS)], name="nvs")
    ag = prof.collective_time_s("all_gather", 1 << 28, 8, "intra_node")
    ar = prof.collective_time_s("all_reduce", 1 << 28, 8, "intra_node")
    assert ag.time_s == ar.time_s and "upper-bound" in ag.flags and ag.extrapolated
    # a PP hand-off without a send_recv log: S over one link at the all-reduce's bus bandwidth, flagged
    sr = prof.collective_time_s("send_recv", 1 << 28, 2, "intra_node")
    f = 2 * (8 - 1) / 8  # busbw factor of an all-reduce over the log's 8 ranks
    assert sr.time_s == prof.collective_time_s("all_reduce", (1 << 28) / f, 8, "intra_node").time_s
    assert {"derived", "upper-bound", "extrapolated"} <= set(sr.flags) and "send_recv not measured" in sr.detail
    with pytest.raises(MissingMeasurement, match="no send_recv data for scope 'inter_node'"):
        prof.collective_time_s("send_recv", 1 << 20, 2, "inter_node")  # no all_reduce across nodes either
    # across nodes the bus bandwidth is the node's (every device's NIC): one device's hand-off gets 1/8 of it
    ib = Profile.load(str(Path(__file__).parent.parent / "profiles" / "interconnect" / "h100-2x8-ib-ndr400.yaml"))
    sr = ib.collective_time_s("send_recv", 1 << 28, 2, "inter_node")
    assert sr.time_s == ib.collective_time_s("all_reduce", (1 << 28) * 8 / (2 * 15 / 16), 16, "inter_node").time_s
    assert "derived" in sr.flags and "upper-bound" not in sr.flags
    assert 40e9 < (1 << 28) / sr.time_s < 70e9  # about one 400 Gb/s NIC (50 GB/s), not the node's 8 together


def test_subset_of_a_node_keeps_the_node_size_and_composes_to_it():
    from accelcal.calibrate.compose import compose

    src = Path(__file__).parent.parent / "profiles" / "interconnect" / "sources"
    logs = [src / f"h100-nvswitch-4of8-{op}.txt" for op in ("all_reduce", "all_gather", "reduce_scatter")]
    own = import_profile(logs, name="four-of-eight")
    assert own.identity.devices_per_node == 4  # from the rank lines: 4 ranks on one host
    sub = import_profile(logs, name="four-of-eight", devices_per_node=8)
    assert sub.identity.devices_per_node == 8 and {c.group_size for c in sub.collectives} == {4}
    with pytest.raises(ValueError, match=r"--devices-per-node 2: the logs' rank lines put 4 ranks on one host"):
        import_profile(logs, name="x", devices_per_node=2)
    with pytest.raises(ValueError, match=r"--devices-per-node must be an integer >= 1, got 0"):
        import_profile(logs, name="x", devices_per_node=0)
    # A device profile measured on one GPU takes the node size from its intra-node fabric.
    dev = Profile.load(Path(__file__).parent.parent / "profiles" / "nvidia-h200.yaml")
    assert dev.identity.devices_per_node == 1 and compose(dev, sub).identity.devices_per_node == 8


def test_switch_fabric_keeps_the_measured_latency_at_other_group_sizes():
    src = Path(__file__).parent.parent / "profiles" / "interconnect" / "sources"
    logs = [src / "h100-nvswitch-4of8-all_reduce.txt"]
    ring = import_profile(logs, name="ring", devices_per_node=8)
    switch = import_profile(logs, name="switch", devices_per_node=8, fabric="nvswitch")
    assert {c.fabric for c in switch.collectives} == {"nvswitch"} and {c.fabric for c in ring.collectives} == {None}
    piece = switch.collectives[0].piece_for(8192)
    # measured group: both the same
    assert switch.collective_time_s("all_reduce", 8192, 4).time_s == ring.collective_time_s("all_reduce", 8192, 4).time_s
    # 8 ranks through the switch: the 4-rank latency, bus bandwidth held (algbw x factor(4)/factor(8))
    bw8 = piece.bandwidth_bytes_per_s * busbw_factor("all_reduce", 4) / busbw_factor("all_reduce", 8)
    est = switch.collective_time_s("all_reduce", 8192, 8)
    assert est.time_s == pytest.approx(piece.latency_s + 8192 / bw8)
    assert "switch-model" in est.flags and est.extrapolated and "ring-model" not in est.flags
    # no fabric recorded: NCCL's ring steps, 15/10.2 from 4 to 8 ranks over NVLink
    est_ring = ring.collective_time_s("all_reduce", 8192, 8)
    assert est_ring.time_s == pytest.approx(piece.latency_s * (6.6 + 0.6 * 14) / (6.6 + 0.6 * 6) + 8192 / bw8)
    # the key survives a write and the strict loader refuses a fabric it does not know
    d = _ic_dict(switch)
    assert Profile.from_dict(d, "ic.yaml").collectives[0].fabric == "nvswitch"
    d["collectives"][0]["fabric"] = "carrier-pigeon"
    with pytest.raises(ProfileError, match="fabric"):
        Profile.from_dict(d, "ic.yaml")
    with pytest.raises(ValueError, match="--fabric 'token-ring'"):
        import_profile(logs, name="x", fabric="token-ring")


def test_shipped_nvswitch_profiles_record_their_fabric():
    root = Path(__file__).parent.parent / "profiles" / "interconnect"
    for name in ("h100-nvswitch-4of8", "h100-nvswitch-8"):
        assert {c.fabric for c in Profile.load(root / f"{name}.yaml").collectives} == {"nvswitch"}, name
    assert {c.fabric for c in Profile.load(root / "pcie-rtx4090-8.yaml").collectives} == {"pcie"}


def test_the_same_log_twice_is_refused_not_counted_as_two_runs(tmp_path):
    log = Path(__file__).parent.parent / "profiles" / "interconnect" / "sources" / "h100-nvswitch-8-all_reduce.txt"
    with pytest.raises(ValueError, match=r"is given twice \(sha256 [0-9a-f]{12}\.\.\.\): each log counts as one run"):
        import_profile([str(log), str(log)], out=str(tmp_path / "a.yaml"))
    copy = tmp_path / "copy.txt"
    copy.write_bytes(log.read_bytes())
    with pytest.raises(ValueError, match=f"{copy} has the same contents as {log}"):
        import_profile([str(log), str(copy)], out=str(tmp_path / "a.yaml"))
    assert not (tmp_path / "a.yaml").exists()


def test_a_file_that_is_not_a_log_is_named_as_such(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\nThe sweep took\n2.5 minutes).\n")
    with pytest.raises(NcclTestsError, match=r"notes.md:4 \(no nccl-tests header, rank or version line before it: "
                                             r"is this an nccl-tests log\?\): result row cut short"):
        read_runs([str(notes)])


def test_accelcal_csv_import_keeps_the_provenance_of_its_env_json(tmp_path):
    raw = Path(__file__).parent.parent / "profiles" / "cpu-amd-epyc-2core-raw"
    env = json.loads((raw / "collectives-round1.env.json").read_text())
    p = import_profile([str(raw / "collectives-round1.csv")], out=str(tmp_path / "ic.yaml"))
    ident = p.identity
    assert (ident.host, ident.date) == (env["host"], env["date"])
    assert (ident.device_type, ident.device_name) == ("cpu", env["device_name"])
    assert ident.versions["torch"] == env["torch_version"]


def test_import_errors_carry_the_full_command_name(tmp_path, capsys):
    bad = tmp_path / "notes.md"
    bad.write_text("2.5 minutes).\n")
    assert main(["import", "nccl-tests", str(bad), "--out", str(tmp_path / "a.yaml")]) == 2
    assert main(["import", "nccl-tests", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "a.yaml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("accelcal import nccl-tests: error: ") for line in lines), lines


def test_an_op_that_contradicts_the_logs_own_collective_is_refused(tmp_path, capsys):
    log = Path(__file__).parent.parent / "profiles" / "interconnect" / "sources" / "h100-nvswitch-4of8-all_reduce.txt"
    assert "# Collective test starting: all_reduce_perf" in log.read_text()
    with pytest.raises(ValueError, match=r"--op broadcast: .* names its own collective, all_reduce .*leave it out"):
        read_runs([log], op="broadcast")
    assert {r.op for r in read_runs([log], op="all_reduce")} == {"all_reduce"}
    assert main(["import", "nccl-tests", str(log), "--op", "broadcast", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "names its own collective" in capsys.readouterr().err and not (tmp_path / "x.yaml").exists()


def test_a_binary_file_or_a_json_run_with_errors_is_refused(tmp_path):
    blob = tmp_path / "all_reduce_perf.txt"
    blob.write_bytes(bytes(range(256)) * 16)
    with pytest.raises(NcclTestsError, match="binary data, not a text log"):
        read_runs([blob])
    doc = json.loads((FIX / "ib_2x8_h100_all_reduce_perf.json").read_text())
    doc["errors"] = ["NCCL failure common.cu:1010 'unhandled system error'"]
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(NcclTestsError, match="nccl-tests reported errors in this run"):
        read_runs([f])


def test_scope_intra_node_is_refused_for_a_log_whose_ranks_spanned_hosts(tmp_path):
    with pytest.raises(ValueError, match=r"--scope intra_node: ib_2x8_h100_all_reduce_perf.txt ran its 16 ranks on 2 "
                                         r"hosts \(bm-h100-01, bm-h100-02\)"):
        import_profile([str(IB)], name="x", out=str(tmp_path / "x.yaml"), scope="intra_node")
    assert not (tmp_path / "x.yaml").exists()
    assert import_profile([str(IB)], name="y", scope="inter_node").collectives[0].scope == "inter_node"


def test_a_failed_run_is_refused_and_a_log_without_its_footer_is_flagged_in_the_profile(tmp_path):
    text = NVS.read_text().splitlines()
    rows = [i for i, line in enumerate(text) if line.strip()[:1].isdigit()]
    # a run that crashed after three sizes: nccl-tests' failure lines, no footer
    failed = tmp_path / "failed_all_reduce_perf.txt"
    failed.write_text("\n".join(text[:rows[2] + 1] + ["node005: Test NCCL failure common.cu:1005 'unhandled cuda error'",
                                                      " .. node005 pid 295203: Test failure common.cu:891"]) + "\n")
    with pytest.raises(NcclTestsError, match=r"failed_all_reduce_perf.txt:\d+: nccl-tests reported a failure "
                                             r"\([\"']node005: Test NCCL failure common.cu:1005"):
        read_runs([failed])
    # cut after a complete row: read, and the profile keeps the reader's doubt as a flag, not only a printed note
    cut = tmp_path / "cut_all_reduce_perf.txt"
    cut.write_text("\n".join(text[:rows[-2] + 1]) + "\n")
    p = profile_from_runs(read_runs([cut]), name="cut")
    (entry,) = p.collectives
    assert any("no 'Out of bounds values' footer after line" in f for f in entry.quality.flags)
    (whole,) = profile_from_runs(read_runs([NVS]), name="whole").collectives
    assert not any("footer" in f for f in whole.quality.flags)


def test_a_one_rank_nccl_tests_log_is_refused_with_the_reason_not_a_traceback(tmp_path, capsys):
    # nccl-tests -g 1 prints busbw 0.00 for all_reduce (factor 2(n-1)/n = 0): the reader must not divide by it
    lines = NVS.read_text().splitlines()
    one = []
    for line in lines:
        if line.startswith("#  Rank") and "Rank  0 " not in line:
            continue
        cells = line.split()
        if cells and cells[0].isdigit():
            cells[7] = cells[11] = "0.00"  # out-of-place and in-place busbw
            line = "  ".join(cells)
        one.append(line.replace("nGpus 8", "nGpus 1"))
    log = tmp_path / "one_all_reduce_perf.txt"
    log.write_text("\n".join(one) + "\n")
    assert main(["import", "nccl-tests", str(log), "--out", str(tmp_path / "one.yaml")]) == 2
    assert "all_reduce over 1 rank: a collective of one rank moves no data" in capsys.readouterr().err
    assert not (tmp_path / "one.yaml").exists()


def test_one_rank_is_no_collective_and_a_one_host_log_as_inter_node_is_flagged(tmp_path, capsys):
    csv = Path(__file__).parent.parent / "profiles" / "cpu-amd-epyc-2core-raw" / "collectives-round1.csv"
    lines = csv.read_text().splitlines()
    head = lines[0].split(",")
    one = [lines[0]]
    for line in lines[1:]:  # the same rows as a one-rank sweep writes them: group size 1, busbw factor 0
        cells = line.split(",")
        cells[head.index("group_size")] = "1"
        cells[head.index("busbw_factor")] = "0.0"
        one.append(",".join(cells))
    (tmp_path / "collectives.csv").write_text("\n".join(one) + "\n")
    assert main(["import", "nccl-tests", str(tmp_path / "collectives.csv"), "--out", str(tmp_path / "one.yaml")]) == 2
    assert "without its collectives.env.json beside it" in capsys.readouterr().err  # the run's device and versions
    (tmp_path / "collectives.env.json").write_text(csv.with_suffix(".env.json").read_text())
    assert main(["import", "nccl-tests", str(tmp_path / "collectives.csv"), "--out", str(tmp_path / "one.yaml")]) == 2
    err = capsys.readouterr().err
    assert "over 1 rank: a collective of one rank moves no data between devices" in err
    assert not (tmp_path / "one.yaml").exists()
    assert main(["bench", "collectives", "--nproc", "1", "--out", str(tmp_path / "b")]) == 2
    assert "--nproc 1: a collective needs at least 2 ranks" in capsys.readouterr().err
    p = profile_from_runs(read_runs([NVS]), name="nvs", scope="inter_node")
    (entry,) = p.collectives
    assert any("every rank of the log ran on host" in f and "NCCL_P2P_DISABLE" in f for f in entry.quality.flags)


def test_an_import_without_a_citation_says_it_is_labelled_measured(tmp_path, capsys):
    assert main(["import", "nccl-tests", str(NVS), "--out", str(tmp_path / "mine.yaml")]) == 0
    err = capsys.readouterr().err
    assert "no --citation, so the profile is labelled measured (your own run)" in err
    assert Profile.load(tmp_path / "mine.yaml").identity.source == "measured"
    assert main(["import", "nccl-tests", str(NVS), "--out", str(tmp_path / "theirs.yaml"), "--citation",
                 "https://example.org/log"]) == 0
    assert "no --citation" not in capsys.readouterr().err
    assert Profile.load(tmp_path / "theirs.yaml").identity.source == "published"


def _rows_rewritten(edit) -> list[str]:
    """The NVSwitch fixture's lines with ``edit(cells)`` applied to each data row."""
    out = []
    for line in NVS.read_text().splitlines():
        cells = line.split()
        if cells and cells[0].isdigit():
            line = "  ".join(edit(cells))
        out.append(line)
    return out


def test_op_takes_the_nccl_tests_binary_stem_as_well(tmp_path):
    def alltoall(cells):  # busbw = algbw x (n - 1) / n at 8 ranks
        cells[7], cells[11] = f"{float(cells[6]) * 7 / 8:.2f}", f"{float(cells[10]) * 7 / 8:.2f}"
        cells[4] = "-1"
        return cells
    log = tmp_path / "log.txt"  # a name that says nothing, as a pasted log
    log.write_text("\n".join(_rows_rewritten(alltoall)) + "\n")
    (run,) = read_runs([log], op="alltoall")
    assert (run.op, run.ranks) == ("all_to_all", 8)
    with pytest.raises(ValueError, match=r"--op 'all2all': expected one of .*\(or an nccl-tests binary's stem: "
                                         r"alltoall, sendrecv\)"):
        read_runs([log], op="all2all")


def test_a_log_mixing_element_types_says_so(tmp_path, capsys):
    lines = NVS.read_text().splitlines()
    half = [line.replace("  float  ", "   half  ") for line in lines if line.split() and line.split()[0].isdigit()]
    at = max(i for i, line in enumerate(lines) if line.split() and line.split()[0].isdigit())
    log = tmp_path / "dall_all_reduce_perf.txt"
    log.write_text("\n".join(lines[:at + 1] + half + lines[at + 1:]) + "\n")
    assert main(["import", "nccl-tests", str(log), "--out", str(tmp_path / "d.yaml")]) == 2
    err = capsys.readouterr().err
    assert "the rows mix element types ['float', 'half'] (nccl-tests -d all)" in err and "has no accelcal" not in err


def test_a_log_whose_job_failed_or_has_no_rank_lines_is_flagged_and_plan_and_predict_say_so(tmp_path, capsys):
    lines = NVS.read_text().splitlines()
    cut = [line for line in lines if not line.startswith("# Out of bounds") and not line.startswith("# Avg")]
    cut.append("slurmstepd: error: *** STEP 4242.0 ON node005 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***")
    log = tmp_path / "failed_all_reduce_perf.txt"
    log.write_text("\n".join(cut) + "\n")
    (run,) = read_runs([log])
    assert any(n.startswith("the log reports an error at line") and "CANCELLED" in n for n in run.notes)
    out = tmp_path / "failed.yaml"
    assert main(["import", "nccl-tests", str(log), "--out", str(out)]) == 0
    capsys.readouterr()
    rc = main(["predict", "--profile", str(ROOT / "profiles" / "nvidia-h100.yaml"), "--interconnect", str(out),
               "--model", "llama3.1-70b", "--tp", "8", "--engine", "vllm", "--concurrency", "4", "--isl", "256",
               "--osl", "8", "--format", "json"])
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert rc == 0 and any(w.startswith("collective fit in doubt") and "CANCELLED" in w for w in warnings)
    assert any("no 'Out of bounds values' footer" in w for w in warnings)
    # pasted without its rank lines: the rank count is inferred and the hosts unknown, so the entry is in doubt
    bare = tmp_path / "bare_all_reduce_perf.txt"
    bare.write_text("\n".join(line for line in lines if "Rank" not in line) + "\n")
    p = profile_from_runs(read_runs([bare]), name="bare")
    (entry,) = p.collectives
    assert entry.group_size == 8 and any("no rank lines: 8 ranks inferred" in f for f in entry.quality.flags)


def test_a_collective_fit_on_its_bandwidth_bound_is_in_doubt():
    from accelcal.calibrate.compose import doubtful_collectives
    from accelcal.calibrate.profile.reader import MAX_BANDWIDTH_BYTES_PER_S

    p = profile_from_runs(read_runs([NVS]), name="nvs")
    assert doubtful_collectives(p) == []  # a complete log with its ranks: nothing to doubt
    entry = p.collectives[0]
    entry.pieces[-1] = dataclasses.replace(entry.pieces[-1], bandwidth_bytes_per_s=MAX_BANDWIDTH_BYTES_PER_S)
    (line,) = doubtful_collectives(p)
    assert "all_reduce[intra_node,8]: bandwidth at the fit's upper bound" in line


def test_a_size_that_appears_twice_is_counted_once_and_noted(tmp_path):
    lines = NVS.read_text().splitlines(keepends=True)
    row = next(i for i, ln in enumerate(lines) if re.match(r"\s+\d+\s+\d+\s+float", ln))
    log = tmp_path / "all_reduce_perf.txt"
    log.write_text("".join(lines[:row + 1] + [lines[row]] + lines[row + 1:]))  # the first row pasted twice
    (once,), (twice,) = read_runs([NVS]), read_runs([log])
    assert len(twice.rows) == len(once.rows) + 1  # kept: nccl-tests -N repeats rows the same way
    sizes = len({r.size_bytes for r in once.rows})
    assert f"{sizes} sizes, " in once.describe() and "rows)" not in once.describe()
    assert f"{sizes} sizes ({sizes + 1} rows), " in twice.describe()
    size = once.rows[0].size_bytes
    assert any(n.startswith(f"1 size(s) appear more than once ({size} B x2)") for n in twice.notes)
    assert not any("more than once" in n for n in once.notes)


@pytest.mark.parametrize("edit, words", [
    # a row cut after the out-of-place group, not at the end of the file: its numbers are out-of-place ones
    (lambda row: " ".join(row.split()[:10]), "result row has 10 columns where the header names 13"),
    (lambda row: " ".join(row.split()[:9]), "result row has 9 columns where the header names 13"),
    (lambda row: row + "  7", "result row has 14 columns where the header names 13"),
    (lambda row: " ".join(t for i, t in enumerate(row.split()) if i != 2), "has 12 columns"),  # no type column
])
def test_a_row_without_the_headers_columns_is_refused_wherever_it_is(tmp_path, edit, words):
    lines = NVS.read_text().splitlines()
    first = next(i for i, s in enumerate(lines) if s.strip().startswith("134217728"))
    lines[first + 1] = edit(lines[first + 1])  # the second row of six: the file goes on after it
    p = tmp_path / "edited_all_reduce_perf.txt"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(NcclTestsError) as exc:
        read_runs([p])
    assert f"edited_all_reduce_perf.txt:{first + 2}:" in str(exc.value) and words in str(exc.value)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(config=[1, 2]), "config: expected an object (devices, graph, ...), got [1, 2]"),
    (lambda d: d["config"].update(devices=["a", "b"]), "config.devices: expected a list of objects"),
    (lambda d: d["results"][3].update(count="x"), "results[3].count: expected a whole number of elements >= 0"),
    (lambda d: d.update(nccl_version=-5), "nccl_version: expected NCCL_VERSION_CODE, a whole number such as 22902"),
    (lambda d: d.update(args="all_reduce_perf"), "args: expected the command line as a list of strings"),
])
def test_a_malformed_json_run_is_refused_by_key_not_a_traceback(tmp_path, edit, message):
    doc = json.loads((FIX / "ib_2x8_h100_all_reduce_perf.json").read_text())
    edit(doc)
    f = tmp_path / "r.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(NcclTestsError) as exc:
        read_runs([f])
    assert message in str(exc.value) and str(f) in str(exc.value)


def test_import_never_replaces_its_input_or_a_device_profile_and_wants_a_real_citation(tmp_path, capsys):
    import shutil

    log = tmp_path / "nvs.yaml"  # a log under a .yaml name: --out may name it
    shutil.copy(NVS, log)
    assert main(["import", "nccl-tests", str(log), "--out", str(log), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err and log.read_bytes() == NVS.read_bytes()
    device = tmp_path / "node.yaml"
    shutil.copy(ROOT / "profiles" / "nvidia-h100.yaml", device)
    assert main(["import", "nccl-tests", str(NVS), "--out", str(device), "--force"]) == 2
    assert "is a device profile (nvidia-h100" in capsys.readouterr().err
    assert device.read_bytes() == (ROOT / "profiles" / "nvidia-h100.yaml").read_bytes()
    assert main(["import", "nccl-tests", str(NVS), "--out", str(tmp_path / "ic.yaml"), "--citation", " "]) == 2
    assert "--citation: where the logs were published" in capsys.readouterr().err
    assert not (tmp_path / "ic.yaml").exists()
