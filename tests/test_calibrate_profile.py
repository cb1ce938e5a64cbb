"""Profile schema, strict loader, atomic writes and the query API (no torch needed)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from accelcal.calibrate.profile import MissingMeasurement, Profile, ProfileError, ProfileQueryError
from accelcal.vocab import DTYPE_BYTES, attention_flop_bytes, busbw_factor, ring_latency_scale

DATA = Path(__file__).parent / "data"
GOOD = DATA / "calibrate" / "good_measured.yaml"
BAD = sorted((DATA / "bad_profiles").glob("*.yaml"))
DATASHEETS = sorted((Path(__file__).parent.parent / "profiles" / "datasheet").glob("*.yaml"))


@pytest.fixture(scope="module")
def good() -> Profile:
    return Profile.load(GOOD)


# ----------------------------------------------------------------------------- loader


def test_bad_corpus_is_large_enough():
    assert len(BAD) >= 15


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_profile_rejected_with_its_message(path: Path):
    expect = path.read_text().splitlines()[0].split("# expect: ", 1)[1].strip()
    with pytest.raises(ProfileError) as exc:
        Profile.load(path)
    msg = str(exc.value)
    assert str(path) in msg, "the error must name the file"
    assert expect in msg


def test_bad_profile_messages_are_distinct():
    msgs = []
    for path in BAD:
        with pytest.raises(ProfileError) as exc:
            Profile.load(path)
        msgs.append(str(exc.value).split(": ", 1)[1])
    assert len(set(msgs)) == len(msgs)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Profile.load(tmp_path / "nope.yaml")


def test_non_profile_file_reads_naturally(tmp_path):
    # e.g. `accelcal show /etc/hostname`: a YAML scalar, not a mapping; the key path must not be jargon.
    path = tmp_path / "hostname"
    path.write_text("myhost\n")
    with pytest.raises(ProfileError) as exc:
        Profile.load(path)
    assert str(exc.value) == (f"{path}: (top level): expected a mapping of profile sections (schema_version, identity, "
                              f"compute, ...), got str 'myhost'; is this an accelcal profile?")


def test_from_dict_names_origin():
    with pytest.raises(ProfileError, match=r"^mine: \(top level\): expected a mapping of profile sections .* got list \[1\]; is this an accelcal profile\?"):
        Profile.from_dict([1], origin="mine")


# ----------------------------------------------------------------------------- round trip and atomicity


def test_round_trip_equality(good: Profile, tmp_path):
    out = tmp_path / "p.yaml"
    good.save(out)
    again = Profile.load(out)
    assert again == good
    assert again.to_dict() == good.to_dict()
    # Floats are written so YAML reads them back as floats (no '1e9' strings).
    raw = yaml.safe_load(out.read_text())
    assert isinstance(raw["identity"]["memory_capacity_bytes"], float)
    assert isinstance(raw["collectives"][0]["pieces"][0]["bandwidth_bytes_per_s"], float)


def test_tiny_and_huge_floats_survive_yaml(good: Profile, tmp_path):
    p = good.with_bandwidth_scale(1.0)
    p.overheads.sync_s = 1e-9
    p.identity.memory_capacity_bytes = 1.5e13
    p.save(tmp_path / "x.yaml")
    q = Profile.load(tmp_path / "x.yaml")
    assert q.overheads.sync_s == 1e-9 and q.identity.memory_capacity_bytes == 1.5e13


def test_save_refuses_invalid_profile_and_keeps_old(good: Profile, tmp_path):
    out = tmp_path / "p.yaml"
    good.save(out)
    before = out.read_bytes()
    bad = good.with_bandwidth_scale(1.0)
    bad.memory["copy"].bandwidth_bytes_per_s = float("nan")
    with pytest.raises(ProfileError, match="memory.copy.bandwidth_bytes_per_s"):
        bad.save(out)
    assert out.read_bytes() == before


def test_crash_between_write_and_rename_keeps_old(good: Profile, tmp_path, monkeypatch):
    out = tmp_path / "p.yaml"
    good.save(out)
    before = out.read_bytes()

    def boom(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated crash"):
        good.with_bandwidth_scale(2.0).save(out)
    monkeypatch.undo()
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.yaml"], "temporary file left behind"
    Profile.load(out)


def test_killed_writer_process_leaves_old_profile(good: Profile, tmp_path):
    out = tmp_path / "p.yaml"
    good.save(out)
    before = out.read_bytes()
    # A child that writes a new profile but is SIGKILLed after the temp file is written, before the rename.
    script = textwrap.dedent(f"""
        import os, sys, time
        from accelcal.calibrate.profile import Profile
        real_replace = os.replace
        def slow_replace(src, dst):
            print("WRITTEN", flush=True)
            time.sleep(60)
            real_replace(src, dst)
        os.replace = slow_replace
        Profile.load({str(out)!r}).with_bandwidth_scale(3.0).save({str(out)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "WRITTEN"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == before
    assert Profile.load(out) == good


def test_profile_module_imports_no_torch():
    code = ("import sys; import accelcal.calibrate.profile as p; "
            "p.Profile.load(sys.argv[1]).gemm_time_s(64, 4096, 4096, 'fp32'); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code, str(GOOD)], check=True, timeout=60)


def test_calibrate_cli_and_fits_import_no_torch():
    code = ("import sys; import accelcal.calibrate.cli, accelcal.calibrate.fit, accelcal.calibrate.show, "
            "accelcal.calibrate.compare, accelcal.calibrate.export; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------------- datasheets


def test_four_datasheet_priors_exist():
    assert {p.stem for p in DATASHEETS} >= {"h100-sxm", "h200-sxm", "a100-sxm-80gb", "mi300x"}


@pytest.mark.parametrize("path", DATASHEETS, ids=[p.stem for p in DATASHEETS])
def test_datasheet_prior_is_labelled_and_flagged(path: Path):
    p = Profile.load(path)
    assert p.identity.source == "datasheet" and p.identity.citations
    assert all(not e.points for e in p.compute.values())
    # What a datasheet does not give stays null; the query answers but says so.
    assert p.overheads.eager_launch_s is None
    est = p.launch_overhead_s("eager")
    assert "not-measured" in est.flags and est.extrapolated
    g = p.gemm_time_s(8192, 8192, 8192, "bf16")
    assert "datasheet" in g.flags and g.extrapolated
    e = p.compute["bf16"]
    assert g.time_s == pytest.approx(2 * 8192**3 / e.peak_flop_per_s)
    m = p.memory_time_s(1e9, "read")
    assert m.time_s == pytest.approx(1e9 / p.memory["read"].bandwidth_bytes_per_s) and "not-measured" in m.flags


def test_h100_datasheet_numbers():
    p = Profile.load(Path(__file__).parent.parent / "profiles" / "datasheet" / "h100-sxm.yaml")
    assert p.compute["bf16"].peak_flop_per_s == 989.5e12  # 1979 TFLOPS with sparsity / 2
    assert p.memory["read"].bandwidth_bytes_per_s == 3.35e12
    assert p.identity.memory_capacity_bytes == 85017493504  # as the measured H100 reports it, not "80 GB"
    ar = p.collective_time_s("all_reduce", 1e9, 8)
    # busbw 450 GB/s (NVLink 900 GB/s bidirectional / 2); algbw = busbw / (2*7/8).
    assert ar.time_s == pytest.approx(1e9 / (450e9 / 1.75))


# ----------------------------------------------------------------------------- query API


def test_gemm_query_interpolates_and_extrapolates(good: Profile):
    e = good.compute["fp32"]
    m0, n0, k0, t0 = e.points[0]
    ma, mb = e.points[2][0], e.points[3][0]  # M = 4 and 8 on the same (N, K) line
    exact = good.gemm_time_s(m0, n0, k0, "fp32")
    assert exact.time_s == pytest.approx(t0) and not exact.extrapolated
    assert exact.source == "compute.fp32"
    assert (ma, mb) == (4.0, 8.0)
    mid = good.gemm_time_s(6, n0, k0, "fp32")
    assert "interpolated" in mid.detail and not mid.extrapolated
    lo, hi = sorted([e.points[2][3], e.points[3][3]])
    assert lo * 0.9 <= mid.time_s <= hi * 1.1
    far = good.gemm_time_s(10**6, n0, k0, "fp32")
    assert far.extrapolated and "extrapolated" in far.flags and "held the efficiency" in far.detail
    # Holding the boundary efficiency: time grows like the model (linear in M far out), not explosively.
    far2 = good.gemm_time_s(2 * 10**6, n0, k0, "fp32")
    assert far2.time_s / far.time_s == pytest.approx(2.0, rel=0.05)


def test_gemm_query_missing_dtype(good: Profile):
    with pytest.raises(MissingMeasurement) as exc:
        good.gemm_time_s(1, 2, 3, "fp8_e4m3")
    assert "fp8_e4m3" in str(exc.value) and "fp32" in str(exc.value)
    assert isinstance(exc.value, ProfileQueryError) and not isinstance(exc.value, KeyError)  # issue 10
    with pytest.raises(ValueError, match="m must be a positive"):
        good.gemm_time_s(0, 2, 3, "fp32")


def test_memory_query(good: Profile):
    e = good.memory["copy"]
    est = good.memory_time_s(1e6, "copy")
    assert est.time_s == pytest.approx(e.latency_s + 1e6 / e.bandwidth_bytes_per_s)
    assert not est.extrapolated and est.source == "memory.copy"
    assert good.memory_time_s(1e12, "copy").extrapolated
    with pytest.raises(MissingMeasurement, match="stream"):
        good.memory_time_s(1e6, "stream")


def test_collective_query_pieces_and_ring_model(good: Profile):
    ar = next(c for c in good.collectives if c.op == "all_reduce")
    assert len(ar.pieces) == 2
    small, big = ar.pieces
    est = good.collective_time_s("all_reduce", 4096, 2)
    assert est.time_s == pytest.approx(small.latency_s + 4096 / small.bandwidth_bytes_per_s)
    assert not est.extrapolated and est.source == "collectives[all_reduce,intra_node,2]"
    est = good.collective_time_s("all_reduce", 1 << 24, 2)
    assert est.time_s == pytest.approx(big.latency_s + (1 << 24) / big.bandwidth_bytes_per_s)
    ring = good.collective_time_s("all_reduce", 1 << 24, 8)
    assert ring.extrapolated and "ring-model" in ring.flags
    bw8 = big.bandwidth_bytes_per_s * busbw_factor("all_reduce", 2) / busbw_factor("all_reduce", 8)
    # Latency grows as NCCL's ring model says (base 6.6 us + 0.6 us x 2(n-1) steps over NVLink: 7.8 us at
    # n=2, 15 us at n=8), applied to the measured latency: x 15/7.8, not x 7.
    assert ring_latency_scale("all_reduce", 2, 8) == pytest.approx((6.6 + 0.6 * 14) / (6.6 + 0.6 * 2))
    assert ring.time_s == pytest.approx(big.latency_s * (15.0 / 7.8) + (1 << 24) / bw8)
    assert good.collective_time_s("all_reduce", 1 << 24, 1).time_s == 0.0
    with pytest.raises(MissingMeasurement, match="inter_node"):
        good.collective_time_s("all_reduce", 1 << 20, 2, scope="inter_node")
    with pytest.raises(MissingMeasurement, match="all_to_all"):
        good.collective_time_s("all_to_all", 1 << 20, 2)


def test_attention_and_launch_queries(good: Profile):
    e = good.attention["fp32"]["decode"]
    f, b = attention_flop_bytes(2, 1, 1024, 8, 2, 64, DTYPE_BYTES["fp32"], False)
    est = good.attention_time_s("decode", 2, 1, 1024, 8, 2, 64, "fp32", causal=False)
    assert est.time_s == pytest.approx(e.latency_s + max(f / e.flop_per_s, b / e.bytes_per_s))
    assert est.source == "attention.fp32.decode"
    fb = good.attention_time_s("prefill", 1, 512, 512, 8, 2, 64, "bf16")
    assert "not-measured" in fb.flags and fb.source == "compute.bf16"
    have = [f"{dt}.{ph}" for dt, phs in good.attention.items() for ph in phs]
    assert fb.detail.startswith(f"no attention measured for bf16 prefill (the profile has {have})")
    assert good.launch_overhead_s("eager").time_s == good.overheads.eager_launch_s
    g = good.launch_overhead_s("graph")
    assert g.extrapolated and g.time_s == good.overheads.eager_launch_s
    with pytest.raises(ValueError, match="mode"):
        good.launch_overhead_s("warp")


def test_causal_flop_count():
    f_full, _ = attention_flop_bytes(1, 4, 4, 1, 1, 1, 2, causal=False)
    f_causal, _ = attention_flop_bytes(1, 4, 4, 1, 1, 1, 2, causal=True)
    assert f_full == 4 * 16 and f_causal == 4 * 10  # 4x4 pairs vs lower triangle 1+2+3+4


def test_what_if_scales(good: Profile):
    fast = good.with_bandwidth_scale(2.0)
    assert fast.memory["copy"].bandwidth_bytes_per_s == 2 * good.memory["copy"].bandwidth_bytes_per_s
    assert good.memory["copy"].bandwidth_bytes_per_s == Profile.load(GOOD).memory["copy"].bandwidth_bytes_per_s
    # A memory-bound GEMM (M=1) gets twice as fast; a compute-bound one does not move.
    assert fast.gemm_time_s(1, 4096, 4096, "fp32").time_s == pytest.approx(
        0.5 * good.gemm_time_s(1, 4096, 4096, "fp32").time_s, rel=0.05)
    assert fast.gemm_time_s(2048, 4096, 4096, "fp32").time_s == pytest.approx(
        good.gemm_time_s(2048, 4096, 4096, "fp32").time_s, rel=0.01)
    big = 1 << 26
    slow = good.with_collective_scale(4.0)
    assert slow.collective_time_s("all_gather", big, 2).time_s == pytest.approx(
        4 * good.collective_time_s("all_gather", big, 2).time_s)
    untouched = good.with_collective_scale(4.0, scope="inter_node")
    assert untouched.collective_time_s("all_gather", big, 2).time_s == good.collective_time_s("all_gather", big, 2).time_s
    with pytest.raises(ValueError, match="factor"):
        good.with_bandwidth_scale(0)
    assert good.dtypes() == list(good.compute)


@pytest.mark.parametrize("key", ["memory", "overheads"])
def test_device_profile_without_memory_or_overheads_is_refused_at_load(tmp_path, key):
    d = yaml.safe_load(GOOD.read_text())
    del d[key]
    path = tmp_path / f"no_{key}.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ProfileError, match=rf"{path}: {key}: missing or empty; a device profile \(with compute\) needs"):
        Profile.load(path)


def test_raw_results_given_as_a_profile_get_a_hint(tmp_path):
    csv = tmp_path / "kernels.csv"
    csv.write_text("op,dtype,m\ngemm,bf16,128\nnote: a: b\n")
    with pytest.raises(ProfileError, match=r"not valid YAML: .*; is this an accelcal profile\? It looks like raw results"):
        Profile.load(csv)


def test_a_moe_table_given_as_a_profile_points_to_moe_table():
    table = Path(__file__).resolve().parents[1] / "profiles" / "engine-kernels" / "h100-vllm-0.14.0-moe.yaml"
    with pytest.raises(ProfileError, match=r"a published table of an engine's MoE op, not a profile: "
                                           r"pass it with --moe-table; --interconnect takes an interconnect profile"):
        Profile.load(table, what="--interconnect")


def test_device_names_compare_by_model_and_board():
    # one rule for "same device" (datasheet priors, the export's datasheet check, predict's fabric warning)
    from accelcal.calibrate.priors import device_model_tokens, same_device_model

    assert device_model_tokens("NVIDIA H100 80GB HBM3") == device_model_tokens("NVIDIA H100 SXM5 80GB") == {"H100"}
    assert device_model_tokens("NVIDIA A100-SXM4-80GB") == {"A100"}
    assert device_model_tokens("NVIDIA GeForce RTX 4090") == {"4090"}
    assert device_model_tokens("AMD Instinct MI300X") == {"MI300X"}
    assert same_device_model("NVIDIA H200 SXM 141GB", "NVIDIA H200")
    assert not same_device_model("NVIDIA H200", "NVIDIA GeForce RTX 4090")
    # one model on another board is another device: an H100 PCIe (350 W, HBM2e) is not an H100 SXM (700 W, HBM3)
    assert same_device_model("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM5 80GB")
    assert not same_device_model("NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3")
    assert not same_device_model("NVIDIA H100 NVL", "NVIDIA H100 SXM5 80GB")
    assert not same_device_model("NVIDIA A100-PCIE-40GB", "NVIDIA A100-SXM4-80GB")
    assert same_device_model("NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-40GB")
    # no model token (a CPU): the names themselves
    assert same_device_model("AMD EPYC", "amd epyc") and not same_device_model("AMD EPYC", "Intel(R) Xeon(R) Processor")


def test_datasheet_prior_is_the_same_model_on_the_same_board():
    from accelcal.calibrate.priors import find_datasheet

    p = Profile.load(Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml")
    assert find_datasheet(p).identity.device_name == "NVIDIA H100 SXM5 80GB"
    p.identity.device_name = "NVIDIA H100 PCIe"  # no PCIe datasheet ships: no prior rather than the SXM board's
    assert find_datasheet(p) is None


def test_a_number_yaml_reads_as_a_string_gets_a_form_yaml_reads_as_a_number(tmp_path):
    # PyYAML reads 8.5e10 and 1.0e9 as strings (a float needs a dot and a signed exponent); the hint's forms load
    text = (Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml").read_text().replace("memory_capacity_bytes: 85017493504.0",
                                                  "memory_capacity_bytes: 8.5e10")
    bad = tmp_path / "p.yaml"
    bad.write_text(text)
    with pytest.raises(ProfileError, match=r"identity.memory_capacity_bytes: expected a number, got the string "
                                           r"'8\.5e10'.*write it as 85000000000\.0 or 8\.5e\+10") as exc:
        Profile.load(bad)
    fixed = tmp_path / "q.yaml"
    fixed.write_text(text.replace("8.5e10", "8.5e+10"))
    assert Profile.load(fixed).identity.memory_capacity_bytes == 8.5e10
    assert "1.0e+9, not 1e9 or 1.0e9" in str(exc.value)
    small = tmp_path / "s.yaml"  # repr(5e-6) is '5e-06', itself a string to PyYAML: only the form it reads is offered
    small.write_text(text.replace("8.5e10", "8.5e+10").replace("sync_s: 2.7232000604271886e-06", "sync_s: 5e-6"))
    with pytest.raises(ProfileError, match=r"overheads.sync_s: .*write it as 5\.0e-06 \(e\.g\."):
        Profile.load(small)


def test_a_profile_date_must_be_iso_8601(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "profiles" / "nvidia-h100.yaml").read_text()
    bad = tmp_path / "p.yaml"
    bad.write_text(text.replace("date: '2026-11-26T06:03:07+00:00'", "date: yesterday", 1))
    with pytest.raises(ProfileError, match=r"identity.date: expected an ISO 8601 date such as 2026-11-26 .* got "
                                           r"'yesterday'"):
        Profile.load(bad)
    ok = tmp_path / "q.yaml"
    ok.write_text(text.replace("date: '2026-11-26T06:03:07+00:00'", "date: '2026-11-26'", 1))
    assert Profile.load(ok).identity.date == "2026-11-26"
    ok.write_text(text.replace("date: '2026-11-26T06:03:07+00:00'", "date: 2026-11-26", 1))  # a YAML date
    assert Profile.load(ok).identity.date == "2026-11-26"


def test_a_quoted_value_cut_short_keeps_a_visible_end():
    from accelcal.textsafe import brief

    assert brief("short") == "'short'"
    long = "134217728      33554432     float     sum  " * 20
    cut = brief(long, 40)
    assert cut.startswith("'134217728") and cut.endswith(f" ... ({len(repr(long))} chars)") and len(cut) < 70
    # what show says of a log given as a profile: the quote ends visibly instead of mid-token
    with pytest.raises(ProfileError, match=r"got str '.*\.\.\. \(\d+ chars\); is this an accelcal profile\?"):
        Profile.from_dict(long, origin="a.log")
