"""Synthetic result tables with known parameters, for testing the fits (and the benchmark without real data).

    from accelcal.calibrate.synthetic import synth_kernels, synth_collectives, TRUTH
    kdf = synth_kernels(seed=0, noise=0.03, outliers=2)
    cdf = synth_collectives(seed=0, noise=0.03, outliers=2)
    # fit and compare the fitted parameters with TRUTH

Rows follow the long format of docs/ARCHITECTURE.md (``accelcal.results``), so
they go through exactly the code path real measurements take.  Noise is
multiplicative Gaussian; each outlier multiplies one point by 3 (or 0.4).
Every number here is a test input, never a hardware claim.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from accelcal.results import CORE_COLUMNS

from accelcal.vocab import DTYPE_BYTES, attention_flop_bytes, gemm_bytes, gemm_element_bytes, gemm_flop

from .profile import gemm_model_time_s

__all__ = ["TRUTH", "synth_kernels", "synth_collectives", "synth_env", "perturb"]

TRUTH: dict[str, Any] = {
    "gemm": {"fp32": {"peak_flop_per_s": 2.0e11, "memory_bandwidth_bytes_per_s": 2.0e10, "overhead_s": 4e-6},
             "bf16": {"peak_flop_per_s": 8.0e11, "memory_bandwidth_bytes_per_s": 4.0e10, "overhead_s": 6e-6}},
    "gemm_lines": [(4096, 4096), (1024, 4096), (4096, 1024), (2048, 2048), (14336, 4096)],
    "gemm_ms": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048],
    "memory": {"copy": (2e-6, 1.5e10), "read": (1e-6, 2.5e10), "write": (1.5e-6, 1.2e10)},
    "overheads": {"launch_eager": 5e-6, "launch_sync": 9e-6, "sync": 2e-6},
    "attention": {"prefill": (2e-5, 1.5e11, 3e10), "decode": (1e-5, 5e10, 2e10)},
    # all_reduce over 2 ranks, two protocol regimes split at 64 KiB.
    "all_reduce": {"group_size": 2, "split_bytes": 65536, "pieces": [(5e-6, 2e9), (4e-5, 1.2e10)]},
    "all_gather": {"group_size": 2, "pieces": [(1e-5, 8e9)]},
}
"""The parameters the synthetic tables are generated from."""


def perturb(t: np.ndarray, rng: np.random.Generator, noise: float, outliers: int) -> np.ndarray:
    """Multiplicative noise plus ``outliers`` points scaled by 3 or 0.4 (alternating)."""
    t = np.asarray(t, dtype=float) * (1.0 + rng.normal(0.0, noise, len(t)))
    if outliers:
        idx = rng.choice(len(t), size=outliers, replace=False)
        for j, i in enumerate(idx):
            t[i] *= 3.0 if j % 2 == 0 else 0.4
    return t


def _row(**kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {c: None for c in CORE_COLUMNS}
    r.update(status="ok", reason="", n_samples=20)
    r.update(kw)
    med = r.get("median_s")
    if med is not None and r["status"] == "ok":
        # A nominal 2% spread around the median, so the rows are complete result records.
        r.update(q1_s=0.99 * med, q3_s=1.01 * med, iqr_s=0.02 * med, min_s=0.98 * med, max_s=1.05 * med,
                 mean_s=med, stddev_s=0.01 * med, cv=0.01, rel_iqr=0.02)
    return r


def synth_env() -> dict[str, Any]:
    return {"date": "2026-01-01T00:00:00+00:00", "host": "synthetic", "method_version": 1, "python_version": "3.11",
            "torch_version": "synthetic", "device": "cpu", "device_type": "cpu", "device_name": "Synthetic CPU",
            "device_count": 1, "device_memory_total_bytes": 16e9, "cpu_model": "synthetic", "torch_num_threads": 2}


def synth_kernels(seed: int = 0, noise: float = 0.03, outliers: int = 2) -> pd.DataFrame:
    """GEMM (fp32, bf16), memory, overheads and attention rows from :data:`TRUTH`."""
    rng = np.random.default_rng(seed)
    rows = []
    for dt, par in TRUTH["gemm"].items():
        el, out_el = gemm_element_bytes(dt)
        shapes = [(m, n, k) for n, k in TRUTH["gemm_lines"] for m in TRUTH["gemm_ms"]]
        t = [gemm_model_time_s(m, n, k, el, par["peak_flop_per_s"], par["memory_bandwidth_bytes_per_s"], par["overhead_s"],
                               out_elsize=out_el) for m, n, k in shapes]
        for (m, n, k), tv in zip(shapes, perturb(np.array(t), rng, noise, outliers)):
            rows.append(_row(suite="kernels", op="gemm", case=f"m{m}_n{n}_k{k}_{dt}", dtype=dt, figure="device",
                             method="host-queue", median_s=tv, flop=gemm_flop(m, n, k), bytes=gemm_bytes(m, n, k, dt),
                             m=m, n=n, k=k, shape=f"synthetic.{n}x{k}"))
    sizes = 2.0 ** np.arange(12, 29)
    for op, (lat, bw) in TRUTH["memory"].items():
        moved = sizes * (2 if op == "copy" else 1)
        for s, b, tv in zip(sizes, moved, perturb(lat + moved / bw, rng, noise, outliers)):
            rows.append(_row(suite="kernels", op=op, case=f"{op}_{int(s)}", dtype="fp32", figure="device",
                             method="host-queue", median_s=tv, bytes=b, size_bytes=s))
    for op, v in TRUTH["overheads"].items():
        rows.append(_row(suite="kernels", op=op, case=op, dtype="fp32", figure="eager", method="host-queue", median_s=v))
    rows.append(_row(suite="kernels", op="graph_kernel", case="graph_kernel", dtype="fp32", figure="", method="",
                     status="skipped", reason="no graphs on cpu"))
    for phase, (lat, fr, br) in TRUTH["attention"].items():
        cases = []
        for batch in (1, 4):
            for kv in (256, 1024, 4096):
                q = kv if phase == "prefill" else 1
                cases.append(dict(batch=batch, heads=8, kv_heads=2, head_dim=64, q_len=q, kv_len=kv,
                                  causal=phase == "prefill"))
        for dt in ("fp32",):
            t = []
            for c in cases:
                f, b = attention_flop_bytes(c["batch"], c["q_len"], c["kv_len"], c["heads"], c["kv_heads"], c["head_dim"],
                                            DTYPE_BYTES[dt], c["causal"])
                t.append(lat + max(f / fr, b / br))
            for c, tv in zip(cases, perturb(np.array(t), rng, noise, 0)):
                rows.append(_row(suite="kernels", op=f"attn_{phase}", case=str(c), dtype=dt, figure="device",
                                 method="host-queue", median_s=tv, **c))
    return pd.DataFrame(rows)


def synth_collectives(seed: int = 0, noise: float = 0.03, outliers: int = 2) -> pd.DataFrame:
    """all_reduce (two regimes) and all_gather over 2 ranks, sizes 1 KiB .. 64 MiB, two sizes per octave."""
    rng = np.random.default_rng(seed)
    rows = []
    sizes = np.unique(np.round(2.0 ** np.arange(10, 26.5, 0.5)))
    for op in ("all_reduce", "all_gather"):
        spec = TRUTH[op]
        if len(spec["pieces"]) == 2:
            (l0, b0), (l1, b1) = spec["pieces"]
            t = np.where(sizes <= spec["split_bytes"], l0 + sizes / b0, l1 + sizes / b1)
        else:
            (l0, b0), = spec["pieces"]
            t = l0 + sizes / b0
        n = spec["group_size"]
        for s, tv in zip(sizes, perturb(t, rng, noise, outliers)):
            rows.append(_row(suite="collectives", op=op, case=f"{op}_{int(s)}", dtype="fp32", figure="max_over_ranks",
                             method="events", median_s=tv, bytes=s, size_bytes=s, count=s / 4, group_size=n,
                             scope="intra_node", world_size=n, nodes=1, backend="gloo", mode="pipelined"))
    return pd.DataFrame(rows)
