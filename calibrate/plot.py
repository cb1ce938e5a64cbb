"""PNG plots of a profile: roofline, GEMM efficiency per dtype, memory bandwidth and collective busbw vs size.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.plot import plot_profile, plot_pareto
    notes: list[str] = []
    paths = plot_profile(Profile.load("profiles/cpu.yaml"), "results/cpu-plots", profile_path="profiles/cpu.yaml",
                         datasheet=Profile.load("profiles/datasheet/h100-sxm.yaml"), notes=notes)
    plot_pareto(plan_result, "results/cpu-plots/pareto.png")

matplotlib is an optional extra (``pip install accelcal[plot]``); without it
these raise ImportError saying so.  Memory and collective points come from the
profile's ``raw_data`` files when they are present; fitted curves are drawn over
the measured range.  A figure with nothing measured to show is not written:
``notes`` gets one line saying why (a datasheet prior has no points).  Rates are
in GB/s and TFLOP/s, sizes in binary units; collectives are shown as busbw
(nccl-tests convention), comparable across ops and group sizes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from accelcal.atomic import atomic_write_with
from accelcal.units import fmt_bytes
from accelcal.vocab import busbw_factor, gemm_bytes, gemm_flop

from .profile import Profile
from .show import roof_label

__all__ = ["MAX_SERIES", "plot_profile", "plot_pareto"]

MAX_SERIES = 8
"""Most series one axes shows: beyond that colours repeat and the legend stops being readable."""


def _plt():
    # a missing matplotlib raises ModuleNotFoundError: accelcal.cli.main names the 'plot' extra and the command
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


RESULT_COLUMNS = ("op", "figure", "status")
"""Columns an accelcal results CSV has (accelcal.results); other CSVs a profile cites (a transcribed published
table) are its sources, not measurement rows to draw."""


def _raw(p: Profile, profile_path: str | os.PathLike | None, notes: list[str]):
    if profile_path is None or not p.identity.raw_data:
        return None
    import pandas as pd
    from accelcal.safe_io import inside, read_csv

    frames = []
    found = p.identity.raw_csv_paths(profile_path)
    lost = [r for r in p.identity.raw_data if r.endswith(".csv")
            and not inside(Path(profile_path).parent, r, "raw_data entry").exists()]
    if lost:
        notes.append(f"measured points: {', '.join(lost)} not found beside {profile_path} (the profile's raw data, "
                     f"identity.raw_data): its figures draw the fits without those points")
    for q in found:
        df = read_csv(q, what="raw data", comment="#")
        if all(c in df.columns for c in RESULT_COLUMNS):
            # a results CSV accelcal wrote has whole rows: a cut copy is refused, not drawn short
            read_csv(q, what="raw data", comment="#", whole_rows=True)
            frames.append(df)
        else:
            notes.append(f"{q.name}: not an accelcal results CSV (no {'/'.join(RESULT_COLUMNS)} columns): a source "
                         f"the profile cites, not drawn as measured points")
    return pd.concat(frames, ignore_index=True, sort=False) if frames else None


def _save(fig, path: Path) -> Path:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    return path


def _bytes_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=4))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_bytes(v, 3)))
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)


def _legend(ax, n: int) -> None:
    if n:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _finish_rate_vs_size(plt, fig, ax, n_series: int, xlabel: str, ylabel: str, title: str, path: Path,
                         dots: bool = True) -> Path:
    """Binary size axis, rate from 0, grid, legend outside; saved and closed.  ``dots``: measured points drawn
    (else the title says the lines are fits whose points are not in these raw files)."""
    _bytes_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    how = "dots measured, lines fitted" if dots else "lines fitted; their points are not in the profile's raw files"
    ax.set_title(f"{title} ({how})", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, n_series)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_profile(p: Profile, out_dir: str | os.PathLike, profile_path: str | os.PathLike | None = None,
                 datasheet: Profile | None = None, notes: list[str] | None = None) -> list[Path]:
    """Write the PNGs into ``out_dir``; returns their paths.  ``datasheet`` adds its figures as reference lines;
    ``notes`` collects one line per figure not drawn and why."""
    plt = _plt()
    out = Path(out_dir)
    notes = notes if notes is not None else []
    raw = _raw(p, profile_path, notes)  # before the folder: unreadable raw data leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for draw in (_roofline, _gemm_efficiency, _memory_bandwidth, _collective_busbw):
        paths += draw(plt, p, out, raw, datasheet, notes)
    return paths


def _roofline(plt, p, out, raw, ds, notes) -> list[Path]:
    if not p.compute:
        notes.append("roofline: the profile has no GEMM entries")
        return []
    fig, ax = plt.subplots(figsize=(8, 5))
    ai = np.logspace(-1, 4, 200)
    for dt, e in list(p.compute.items())[:MAX_SERIES]:
        roof = np.minimum(e.peak_flop_per_s, ai * e.memory_bandwidth_bytes_per_s) / 1e12
        line = ax.loglog(ai, roof, "-", label=f"{dt} {roof_label(p)}")[0]
        if e.points:
            pts = np.array(e.points)
            f = np.array([gemm_flop(*r[:3]) for r in pts])
            b = np.array([gemm_bytes(*r[:3], dt) for r in pts])
            ax.loglog(f / b, f / pts[:, 3] / 1e12, "o", ms=3, color=line.get_color(), alpha=0.6)
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("TFLOP/s")
    kind = "datasheet prior (no measured points)" if p.is_datasheet else "dots measured, lines fitted"
    ax.set_title(f"{p.identity.name}: GEMM roofline ({kind})")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, len(p.compute))
    path = _save(fig, out / "roofline.png")
    plt.close(fig)
    return [path]


def _gemm_efficiency(plt, p, out, raw, ds, notes) -> list[Path]:
    """One figure per dtype: achieved FLOP/s over the best measured FLOP/s of that dtype, vs M, per (N, K)."""
    paths = []
    for dt, e in p.compute.items():
        if not e.points:
            notes.append(f"gemm efficiency {dt}: no measured GEMM points"
                         + (" (a datasheet prior has only its peak)" if p.is_datasheet else ""))
            continue
        lines: dict[tuple[float, float], list[list[float]]] = {}
        for r in e.points:
            lines.setdefault((r[1], r[2]), []).append(r)
        best = max(gemm_flop(*r[:3]) / r[3] for r in e.points if r[3] > 0)
        # The (N, K) lines with the most M points show the M dependence best; the rest are listed, not drawn.
        shown = sorted(lines.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:MAX_SERIES]
        fig, ax = plt.subplots(figsize=(8, 5))
        for (n, k), rows in sorted(shown):
            rows.sort()
            ms = np.array([r[0] for r in rows])
            eff = np.array([gemm_flop(*r[:3]) / r[3] for r in rows]) / best
            ln = ax.semilogx(ms, eff, "o", ms=4, label=f"N={n:g} K={k:g}")[0]
            if len(ms) > 1:
                mm = np.logspace(math.log10(ms.min()), math.log10(ms.max()), 60)
                fit = [min(1.0, gemm_flop(m, n, k) / p.gemm_time_s(m, n, k, dt).time_s / best) for m in mm]
                ax.semilogx(mm, fit, "-", color=ln.get_color(), alpha=0.6)
        ax.set_ylim(0, 1.0)
        ax.set_xlabel("M (tokens in the GEMM)")
        ax.set_ylabel("efficiency = FLOP/s / best measured")
        hidden = len(lines) - len(shown)
        ax.set_title(f"{p.identity.name}: {dt} GEMM efficiency vs M (best measured {best / 1e12:.4g} TFLOP/s)"
                     + (f"\n{len(shown)} of {len(lines)} (N, K) shapes shown" if hidden else ""), fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        _legend(ax, len(shown))
        paths.append(_save(fig, out / f"gemm_efficiency_{dt}.png"))
        plt.close(fig)
    return paths


def _memory_bandwidth(plt, p, out, raw, ds, notes) -> list[Path]:
    if not p.memory:
        notes.append("memory bandwidth: the profile has no memory entries")
        return []
    measured = [pat for pat, e in p.memory.items() if e.quality is not None]
    if not measured:
        notes.append("memory bandwidth: a datasheet prior has one bandwidth per pattern and no measured sizes to plot")
        return []
    fig, ax = plt.subplots(figsize=(8, 5))
    n = 0
    for pat in measured[:MAX_SERIES - 1]:
        e = p.memory[pat]
        s = np.logspace(math.log10(max(e.quality.range_min, 1.0)), math.log10(e.quality.range_max), 60)
        ln = ax.plot(s, s / np.array([p.memory_time_s(x, pat).time_s for x in s]) / 1e9, "-", label=f"{pat} fit")[0]
        n += 1
        if raw is not None:
            r = raw[(raw["op"] == pat) & (raw["figure"] == "device") & (raw["status"] == "ok")]
            ax.plot(r["bytes"], r["bytes"] / r["median_s"] / 1e9, "o", ms=4, color=ln.get_color())
    if ds is not None and "copy" in ds.memory:
        ax.axhline(ds.memory["copy"].bandwidth_bytes_per_s / 1e9, color="black", ls=":",
                   label=f"datasheet {ds.identity.device_name}")
        n += 1
    return [_finish_rate_vs_size(plt, fig, ax, n, "bytes moved per call", "GB/s",
                                 f"{p.identity.name}: memory bandwidth vs size", out / "memory_bandwidth.png")]


def _collective_rows(raw, c) -> Any:
    if raw is None or "group_size" not in raw:
        return None
    r = raw[(raw["op"] == c.op) & (raw["figure"] == "max_over_ranks") & (raw["status"] == "ok")
            & (raw["group_size"] == c.group_size) & (raw["dtype"] == c.dtype)]
    if "scope" in r:
        r = r[r["scope"] == c.scope]
    if "mode" in r and len(r):
        try:
            from .fit import collective_fit_mode  # the mode the fit used (blocking on gloo, pipelined on NCCL)

            mode = collective_fit_mode(r)
        except ImportError:
            mode = None
        if mode is not None:
            r = r[r["mode"] == mode]
    return r


def _collective_label(c) -> str:
    """One collective fit as the busbw figure names it: op, group size, scope and engine kernel."""
    return f"{c.op} n={c.group_size} {c.scope}" + (f" ({c.kernel})" if c.kernel else "")


def _collective_busbw(plt, p, out, raw, ds, notes) -> list[Path]:
    fitted = [c for c in p.collectives if c.quality is not None]
    if not fitted:
        notes.append("collective busbw: " + ("no collective measured in this profile (calibrate with --nproc >= 2)"
                                             if not p.collectives else
                                             "a datasheet prior has link bandwidths, no measured sizes to plot"))
        return []
    # Prefer the largest group per op: that is what TP uses; at most MAX_SERIES - 1 series plus the datasheet line.
    by_op: dict[str, list] = {}
    for c in fitted:
        by_op.setdefault(c.op, []).append(c)
    # the collective library's own entries before an engine kernel's (``kernel``) of the same op
    chosen = [c for cs in by_op.values()
              for c in sorted(cs, key=lambda c: (c.kernel is not None, -c.group_size))[:2]][:MAX_SERIES - 1]
    left = [c for c in fitted if c not in chosen]
    if left:
        notes.append(f"collective busbw: {len(left)} of {len(fitted)} fits (the figure keeps two per op, the "
                     f"collective library's before an engine kernel's, larger groups first): "
                     + ", ".join(_collective_label(c) for c in left)
                     + " (accelcal show lists every fit)")
    fig, ax = plt.subplots(figsize=(8, 5))
    dots = False
    for c in chosen:
        f = busbw_factor(c.op, c.group_size)
        s = np.logspace(math.log10(max(c.quality.range_min, 1.0)), math.log10(c.quality.range_max), 60)
        t = np.array([p.collective_time_s(c.op, x, c.group_size, c.scope, c.kernel).time_s for x in s])
        label = _collective_label(c)
        ln = ax.plot(s, s / t * f / 1e9, "-", label=label)[0]
        r = _collective_rows(raw, c) if c.kernel is None else None  # results CSVs hold the library's rows
        if r is not None and len(r):
            ax.plot(r["size_bytes"], r["size_bytes"] / r["median_s"] * f / 1e9, "o", ms=4, color=ln.get_color())
            dots = True
    n = len(chosen)
    prior = [c for c in (ds.collectives if ds is not None else []) if c.op == "all_reduce" and c.scope == "intra_node"]
    if prior:
        c = max(prior, key=lambda c: c.group_size)
        # a composed profile's fabric may have run on other devices (a published H100 log beside an H200): say so
        from .compose import fabric_part

        part = fabric_part(p, "intra_node")
        other = (f" (the fits: {part.name} on {part.device_name})"
                 if part is not None and part.device_name and part.device_name != ds.identity.device_name else "")
        ax.axhline(c.pieces[-1].bandwidth_bytes_per_s * busbw_factor(c.op, c.group_size) / 1e9, color="black", ls=":",
                   label=f"datasheet {ds.identity.device_name} busbw{other}")
        n += 1
    return [_finish_rate_vs_size(plt, fig, ax, n, "size S (nccl-tests size column; all_gather, reduce_scatter: "
                                 "the whole buffer)", "busbw (GB/s, nccl-tests convention)",
                                 f"{p.identity.name}: collective bus bandwidth vs size", out / "collectives_busbw.png",
                                 dots=dots)]


def plot_pareto(result: Any, path: str | os.PathLike) -> Path | None:
    """Request latency vs tokens/s per device of every ranked layout of the first device group (the planner's
    Pareto axes), the front joined and labelled; None (no file) when the plan has fewer than two layouts."""
    plt = _plt()
    g = result.groups[0]
    if len(g.ranked) < 2:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.scatter([c.tokens_per_s_per_device for c in g.ranked], [c.request_latency_s for c in g.ranked], s=14,
               color="#9aa5b1", label=f"{len(g.ranked)} feasible layouts")
    front = sorted(g.pareto, key=lambda c: c.tokens_per_s_per_device)
    ax.plot([c.tokens_per_s_per_device for c in front], [c.request_latency_s for c in front], "o-", color="#c0392b",
            label="Pareto front")
    for c in front[:MAX_SERIES]:
        ax.annotate(c.label, (c.tokens_per_s_per_device, c.request_latency_s), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    best = g.ranked[0]
    ax.plot([best.tokens_per_s_per_device], [best.request_latency_s], "*", ms=14, color="#f39c12",
            label=f"recommended {best.label}")
    ax.set_xlabel("tokens/s per device (decode)")
    ax.set_ylabel("request latency (s): TTFT + output tokens x TPOT")
    ax.set_title(f"{result.model.name} on {g.devices} x {g.device_name}: layouts (lower right is better)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    out = _save(fig, Path(path))
    plt.close(fig)
    return out
