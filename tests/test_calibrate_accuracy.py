"""Accuracy work on real CPU data: the CPU device definition, piecewise memory fits, the collective series the
profile fits, repeated rounds, the M trend of GEMM efficiency and the presets that feed them (no torch needed)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from accelcal.calibrate.fit import (MEMORY_MAX_PIECES, collective_fit_mode, fit_profile, median_over_repeats,
                                    select_collective_series)
from accelcal.calibrate.profile import ComputeEntry, Profile, ProfileError, gemm_model_time_s
from accelcal.calibrate.show import format_profile
from accelcal.calibrate.synthetic import perturb, synth_collectives, synth_env, synth_kernels
from accelcal.collectives.presets import FIT_PRESETS, PRESETS, fit_dtype
from accelcal.kernels.shapes import suite_preset

GOOD = Path(__file__).parent / "data" / "calibrate" / "good_measured.yaml"
KiB, MiB = 1 << 10, 1 << 20


# ----------------------------------------------------------------------------- CPU device = one rank's share


def test_cpu_device_is_one_rank_share_of_the_cores():
    env = dict(synth_env(), threads_per_device=1, devices_per_node=2, torch_num_threads=1)
    p = fit_profile(synth_kernels(), synth_collectives(), env, "pytest")
    i = p.identity
    assert (i.threads_per_device, i.devices_per_node) == (1, 2)
    assert i.memory_capacity_bytes == pytest.approx(16e9 / 2)  # RAM / ranks
    back = Profile.from_dict(p.to_dict(), origin="round trip")
    assert back.identity.threads_per_device == 1 and back.identity.devices_per_node == 2
    assert "one rank's share of the cores: 1 thread(s), 1/2 of the RAM" in format_profile(back)


def test_cpu_without_threads_keeps_the_old_node_definition():
    # Raw data from before the field, or accelcal bench kernels (every core): group size as ranks, each with its
    # share of the RAM (the node's RAM counted once), and a note that their compute is the whole node's.
    notes: list[str] = []
    p = fit_profile(synth_kernels(), synth_collectives(), synth_env(), "pytest", notes=notes)
    assert p.identity.threads_per_device is None and p.identity.devices_per_node == 2
    assert p.identity.memory_capacity_bytes == 16e9 / 2
    assert any("each of the 2 devices gets 1/2 of the RAM but the whole node's compute" in n for n in notes)


def test_threads_per_device_is_optional_and_checked():
    d = Profile.load(GOOD).to_dict()
    d["identity"].pop("threads_per_device", None)
    assert Profile.from_dict(d).identity.threads_per_device is None  # older files load
    d["identity"]["threads_per_device"] = 0
    with pytest.raises(ProfileError, match=r"identity.threads_per_device: expected an integer in \[1"):
        Profile.from_dict(d, origin="x.yaml")


# ----------------------------------------------------------------------------- memory: one piece per cache level


def _cache_kernels(seed: int = 0) -> tuple[pd.DataFrame, list[tuple[float, float, float]]]:
    """Synthetic read/copy/write rows: in L2 and beyond it, as one rank measured it on the 2-core EPYC VM
    (60 vs 22 GB/s; L3 and DRAM streamed alike there): (max bytes moved, latency, bandwidth)."""
    levels = [(1 * MiB, 1e-6, 60e9), (None, 5e-6, 20e9)]
    rng = np.random.default_rng(seed)
    k = synth_kernels()
    k = k[~k["op"].isin(["copy", "read", "write"])]
    rows = []
    moved = 2.0 ** np.arange(12, 29)  # 4 KiB .. 256 MiB moved: >= 3 sizes per level
    for op in ("copy", "read", "write"):
        t = []
        for b in moved:
            lat, bw = next((lv[1], lv[2]) for lv in levels if lv[0] is None or b <= lv[0])
            t.append(lat + b / bw)
        for b, tv in zip(moved, perturb(np.array(t), rng, 0.02, 0)):
            rows.append(dict(k.iloc[0].to_dict(), op=op, case=f"{op}_{int(b)}", dtype="fp32", figure="device",
                             median_s=tv, bytes=b, size_bytes=b, flop=None, m=None, n=None, k=None))
    return pd.concat([k, pd.DataFrame(rows)], ignore_index=True), levels


def test_memory_fit_follows_the_cache_hierarchy():
    kern, levels = _cache_kernels()
    p = fit_profile(kern, None, synth_env(), "pytest")
    e = p.memory["read"]
    assert e.pieces is not None and len(e.pieces) == 2 <= MEMORY_MAX_PIECES
    assert MiB / 2 <= e.pieces[0].max_bytes <= 2 * MiB  # the split sits at the L2 edge
    assert e.quality.heldout_median_rel_err < 0.05
    # The single-line reading (latency_s, bandwidth_bytes_per_s) is the DRAM-streaming piece.
    assert e.bandwidth_bytes_per_s == e.pieces[-1].bandwidth_bytes_per_s
    assert abs(e.bandwidth_bytes_per_s / 20e9 - 1) < 0.1
    # Queries use the piece that covers the bytes moved: in L2 the time is the L2 line's, not DRAM's.
    small = p.memory_time_s(256 * KiB, "read")
    assert small.time_s == pytest.approx(1e-6 + 256 * KiB / 60e9, rel=0.1)
    assert "piece max_bytes=" in small.detail
    big = p.memory_time_s(200 * MiB, "read")
    assert big.time_s == pytest.approx(5e-6 + 200 * MiB / 20e9, rel=0.1)
    back = Profile.from_dict(p.to_dict())
    assert back.memory["read"].pieces == e.pieces
    scaled = p.with_bandwidth_scale(2.0)
    assert scaled.memory_time_s(200 * MiB, "read").time_s < 0.6 * big.time_s


def test_memory_single_line_entries_still_load_and_pieces_are_checked():
    good = Profile.load(GOOD)
    assert all(e.pieces is None for e in good.memory.values())  # written before pieces existed
    e = good.memory["copy"]
    assert good.memory_time_s(1e6, "copy").time_s == pytest.approx(e.latency_s + 1e6 / e.bandwidth_bytes_per_s)
    d = copy.deepcopy(good.to_dict())
    d["memory"]["copy"]["pieces"] = [
        {"max_bytes": 1.0e6, "latency_s": 1e-6, "bandwidth_bytes_per_s": 5.0e10},
        {"max_bytes": None, "latency_s": 2e-6, "bandwidth_bytes_per_s": 9.0e9},
    ]
    with pytest.raises(ProfileError, match=r"memory.copy: latency_s/bandwidth_bytes_per_s .* must repeat the last piece"):
        Profile.from_dict(d, origin="x.yaml")
    d["memory"]["copy"]["pieces"][1]["max_bytes"] = 5.0
    with pytest.raises(ProfileError, match=r"memory.copy.pieces\[1\].max_bytes: the last piece must have max_bytes: null"):
        Profile.from_dict(d, origin="x.yaml")


# ----------------------------------------------------------------------------- collectives: what is fitted


def _modes(backend: str) -> pd.DataFrame:
    c = synth_collectives()
    c = c[c["op"] == "all_gather"].assign(backend=backend)
    slow = c.assign(mode="blocking", median_s=c["median_s"] * 2.0)
    other = c.assign(dtype="bf16", mode="pipelined", median_s=c["median_s"] * 5.0)
    return pd.concat([c, slow, other], ignore_index=True)


def test_gloo_fits_the_blocking_figure_nccl_the_pipelined_one():
    gloo, nccl = _modes("gloo"), _modes("nccl")
    assert collective_fit_mode(gloo) == "blocking" and collective_fit_mode(nccl) == "pipelined"
    rows, mode, dtype = select_collective_series(gloo, "cpu")
    assert (mode, dtype) == ("blocking", "fp32") and set(rows["mode"]) == {"blocking"} and set(rows["dtype"]) == {"fp32"}
    _, mode, dtype = select_collective_series(nccl, "cuda")
    assert (mode, dtype) == ("pipelined", "bf16")
    # The profile follows: gloo blocking times are 2x the pipelined ones in this table.
    p_g = fit_profile(synth_kernels(), gloo, synth_env(), "pytest")
    p_p = fit_profile(synth_kernels(), gloo[gloo["mode"] == "pipelined"], synth_env(), "pytest")
    t_g = p_g.collective_time_s("all_gather", 1 << 20, 2).time_s
    t_p = p_p.collective_time_s("all_gather", 1 << 20, 2).time_s
    assert t_g / t_p == pytest.approx(2.0, rel=0.1)
    assert fit_dtype("cpu") == "fp32" and fit_dtype("cuda") == "bf16"


def test_rounds_reduce_to_the_median_of_round_medians():
    c = synth_collectives()
    c = c[c["op"] == "all_gather"]
    r2 = c.copy()
    r3 = c.copy()
    r3.loc[r3.index[:5], "median_s"] *= 8.0  # one round caught in a slow state at five sizes
    merged = median_over_repeats(pd.concat([c, r2, r3], ignore_index=True))
    assert len(merged) == len(c) and not merged["size_bytes"].duplicated().any()
    assert np.allclose(merged.sort_values("size_bytes")["median_s"].values, c.sort_values("size_bytes")["median_s"].values)
    single = fit_profile(synth_kernels(), c, synth_env(), "pytest").collective_time_s("all_gather", 1 << 16, 2).time_s
    rounds = fit_profile(synth_kernels(), pd.concat([c, r2, r3]), synth_env(), "pytest")
    assert rounds.collective_time_s("all_gather", 1 << 16, 2).time_s == pytest.approx(single)


# ----------------------------------------------------------------------------- GEMM: M trend across lines


def test_gemm_uses_the_m_trend_of_other_lines_below_a_lines_range():
    # A GEMV path at M=1 runs at 0.6x the time the blocked-GEMM efficiency of M=16 implies, on every (N, K).
    peak, bw, el = 2e11, 2e10, 2
    lines = [(768, 512), (3584, 512), (512, 1792)]
    ms = [1, 16, 64, 256]
    slowdown = {1: 1.8 * 0.6, 16: 1.8, 64: 1.3, 256: 1.0}  # measured / roofline, the same on every line
    pts = [[m, n, k, gemm_model_time_s(m, n, k, el, peak, bw) * slowdown[m]] for n, k in lines for m in ms]
    truth = {(m, n, k): t for m, n, k, t in pts}
    held = [p for p in pts if not (p[0] == 1 and (p[1], p[2]) == lines[0])]
    p = Profile.from_dict(Profile.load(GOOD).to_dict())
    # The roofline parameters as fitted would be; the query's efficiency correction is what is tested.
    p.compute = {"bf16": ComputeEntry(peak_flop_per_s=peak, memory_bandwidth_bytes_per_s=bw, overhead_s=0.0, points=held)}
    est = p.gemm_time_s(1, 768, 512, "bf16")
    assert est.time_s == pytest.approx(truth[(1, 768, 512)], rel=1e-6)
    assert "M trend of 2 other measured line(s)" in est.detail and not est.extrapolated
    # Holding M=16's efficiency instead would be 1/0.6 - 1 = 67% too slow.
    held_eff = gemm_model_time_s(1, 768, 512, el, peak, bw) * slowdown[16]
    assert held_eff / truth[(1, 768, 512)] == pytest.approx(1 / 0.6)
    # Beyond every line's measured M the boundary efficiency is held (no trend to borrow).
    far = p.gemm_time_s(10**5, 768, 512, "bf16")
    assert far.extrapolated and "held the efficiency" in far.detail
    # With no other line covering the query's M, the line's boundary efficiency is held as before.
    p.compute = {"bf16": ComputeEntry(peak_flop_per_s=peak, memory_bandwidth_bytes_per_s=bw, overhead_s=0.0,
                                      points=[q for q in held if q[0] != 1])}
    alone = p.gemm_time_s(1, 768, 512, "bf16")
    assert alone.extrapolated and alone.time_s == pytest.approx(held_eff)


# ----------------------------------------------------------------------------- presets


def test_quick_presets_feed_the_fits():
    cpu, acc = suite_preset("quick", "cpu"), suite_preset("quick", "cuda")
    for p in (cpu, acc):
        assert len({c.q_len for c in p.attention_cases if c.phase == "prefill"}) >= 3, p.name
    sizes = np.array(cpu.memory_sizes_bytes)
    # >= 3 buffer sizes inside L2 (1 MiB), between L2 and L3 (32 MiB) and beyond L3.
    assert (sizes <= MiB).sum() >= 3 and ((sizes > MiB) & (sizes <= 32 * MiB)).sum() >= 3 and (sizes > 32 * MiB).sum() >= 3
    fq = FIT_PRESETS["quick"]
    assert PRESETS[fq.name] is fq and fq.timing_overrides["min_reps"] >= 30 and fq.cpu_rounds >= 1
    s = np.array(fq.cpu_sizes_bytes, dtype=float)
    assert np.allclose(s[1:] / s[:-1], 2.0)  # evenly spaced in log size


def test_bench_kernels_threads_flag_is_checked(capsys):
    from accelcal.cli import main

    assert main(["bench", "kernels", "--threads", "0", "--ops", "memory"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
