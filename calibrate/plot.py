"""PNG plots of a profile: roofline, GEMM efficiency vs M, bandwidth vs size (log-log), fits over points.

    from accelcal.calibrate.profile import Profile
    from accelcal.calibrate.plot import plot_profile
    paths = plot_profile(Profile.load("profiles/cpu.yaml"), "plots/", profile_path="profiles/cpu.yaml")

matplotlib is an optional extra (``pip install accelcal[plot]``); without it
:func:`plot_profile` raises ImportError saying so.  Memory and collective
points come from the profile's ``raw_data`` files when they are present; the
fitted curves are drawn over the measured range either way.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from accelcal.atomic import atomic_write_with

from accelcal.vocab import gemm_bytes, gemm_flop

from .profile import Profile

__all__ = ["plot_profile"]


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("accelcal plot needs matplotlib, an optional extra: pip install 'accelcal[plot]' "
                          "(or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _raw(p: Profile, profile_path: str | os.PathLike | None):
    if profile_path is None or not p.identity.raw_data:
        return None
    import pandas as pd
    base = Path(profile_path).parent
    frames = [pd.read_csv(base / r) for r in p.identity.raw_data if r.endswith(".csv") and (base / r).exists()]
    return pd.concat(frames, ignore_index=True, sort=False) if frames else None


def _save(fig, path: Path) -> Path:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    return path


def plot_profile(p: Profile, out_dir: str | os.PathLike, profile_path: str | os.PathLike | None = None) -> list[Path]:
    """Write the PNGs into ``out_dir``; returns their paths."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = p.identity.name
    paths: list[Path] = []
    raw = _raw(p, profile_path)

    # Roofline: achieved FLOP/s vs arithmetic intensity, with each dtype's fitted roof.
    fig, ax = plt.subplots(figsize=(7, 5))
    for dt, e in p.compute.items():
        ai = np.logspace(-1, 4, 200)
        line = ax.loglog(ai, np.minimum(e.peak_flop_per_s, ai * e.memory_bandwidth_bytes_per_s), label=f"{dt} roof")[0]
        if e.points:
            pts = np.array(e.points)
            f = np.array([gemm_flop(*r[:3]) for r in pts])
            b = np.array([gemm_bytes(*r[:3], dt) for r in pts])
            ax.loglog(f / b, f / pts[:, 3], "o", ms=4, color=line.get_color(), alpha=0.7, label=f"{dt} measured")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("FLOP/s")
    ax.set_title(f"{name}: GEMM roofline")
    ax.legend(fontsize=7)
    paths.append(_save(fig, out / "roofline.png"))
    plt.close(fig)

    # GEMM efficiency vs M per measured (N, K) line, with the fitted model's curve.
    fig, ax = plt.subplots(figsize=(7, 5))
    for dt, e in p.compute.items():
        lines: dict[tuple[float, float], list[list[float]]] = {}
        for r in e.points:
            lines.setdefault((r[1], r[2]), []).append(r)
        for (n, k), rows in sorted(lines.items())[:8]:
            rows.sort()
            ms = np.array([r[0] for r in rows])
            eff = np.array([gemm_flop(*r[:3]) / r[3] for r in rows]) / e.peak_flop_per_s
            l = ax.semilogx(ms, eff, "o", ms=4, label=f"{dt} N={n:g} K={k:g}")[0]
            mm = np.logspace(math.log10(ms.min()), math.log10(ms.max()), 60)
            fit = [gemm_flop(m, n, k) / p.gemm_time_s(m, n, k, dt).time_s / e.peak_flop_per_s for m in mm]
            ax.semilogx(mm, fit, "-", color=l.get_color(), alpha=0.6)
    ax.set_xlabel("M (tokens)")
    ax.set_ylabel("achieved FLOP/s / fitted peak")
    ax.set_title(f"{name}: GEMM efficiency vs M (points measured, lines fitted)")
    ax.legend(fontsize=6)
    paths.append(_save(fig, out / "gemm_efficiency.png"))
    plt.close(fig)

    # Bandwidth vs size, log-log: memory patterns and collectives.
    fig, ax = plt.subplots(figsize=(7, 5))
    for pat, e in p.memory.items():
        lo, hi = (e.quality.range_min, e.quality.range_max) if e.quality else (1e3, 1e10)
        s = np.logspace(math.log10(max(lo, 1.0)), math.log10(hi), 60)
        l = ax.loglog(s, s / np.array([p.memory_time_s(x, pat).time_s for x in s]), "-", label=f"memory {pat} fit")[0]
        if raw is not None:
            r = raw[(raw["op"] == pat) & (raw["figure"] == "device") & (raw["status"] == "ok")]
            ax.loglog(r["bytes"], r["bytes"] / r["median_s"], "o", ms=4, color=l.get_color())
    for c in p.collectives:
        if c.quality is None:
            continue
        s = np.logspace(math.log10(max(c.quality.range_min, 1.0)), math.log10(c.quality.range_max), 60)
        l = ax.loglog(s, s / np.array([p.collective_time_s(c.op, x, c.group_size, c.scope).time_s for x in s]), "--",
                      label=f"{c.op} n={c.group_size} {c.scope} fit (algbw)")[0]
        if raw is not None and "group_size" in raw:
            r = raw[(raw["op"] == c.op) & (raw["figure"] == "max_over_ranks") & (raw["status"] == "ok")
                    & (raw["group_size"] == c.group_size)]
            ax.loglog(r["size_bytes"], r["size_bytes"] / r["median_s"], "x", ms=4, color=l.get_color())
    ax.set_xlabel("bytes")
    ax.set_ylabel("bytes / s")
    ax.set_title(f"{name}: bandwidth vs size (points measured, lines fitted)")
    ax.legend(fontsize=6)
    paths.append(_save(fig, out / "bandwidth.png"))
    plt.close(fig)
    return paths
