"""A measured profile's GEMMs against an engine's own published GEMM table (the engine's linear op, same device).

    $ python benchmarks/engine_gemm_tables.py        # profiles/nvidia-h100.yaml vs TensorRT-LLM 1.2.0rc5's H100 table
    $ python benchmarks/engine_gemm_tables.py --profile profiles/nvidia-h200.yaml --table my_table.csv
    $ python benchmarks/engine_gemm_tables.py --model qwen3-32b --tp 1,2,4,8   # also one model's layers, per TP

The table (``--table``, CSV with columns gemm_dtype, m, n, k, latency_ms; '#' lines are comments) is published
data: by default the TensorRT-LLM rows of NVIDIA aiconfigurator's H100 GEMM table that fall on the preset models'
TP-divided projection shapes (benchmarks/data/, its header cites the source).  For each published row the
profile answers the same (M, N, K) as the serving model costs it: ``compute.bf16`` for bfloat16 rows;
``compute.fp8_e4m3`` plus the kernel that quantizes the bf16 input (the ``fused`` implementation's act_quant
group, from the profile's copy bandwidth) for fp8 rows (per-tensor) and for fp8_block rows (block-scaled; the
profile has no block-scaled data, so those rows show what costing them as per-tensor misses).  Printed: the
ratio published / profile by dtype and M range (median, 10th and 90th percentile) and the shapes furthest off;
with ``--model``, per TP degree and M, the summed time of that model's projections the table has (what one
layer's GEMMs add up to), published against profile.
A ratio above 1 means the engine's op takes longer than the profile says.  Nothing is fitted here; the
figures say where an engine runs other kernels than the ones accelcal measures (torch).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from accelcal.calibrate.profile import Profile
from accelcal.models.implementation import Implementation
from accelcal.vocab import DTYPE_BYTES

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT / "benchmarks/data/aiconfigurator-h100_sxm-trtllm-1.2.0rc5-gemm.csv"
TABLE_DTYPES = {"bfloat16": ("bf16", False), "fp8": ("fp8_e4m3", True), "fp8_block": ("fp8_e4m3", True)}
"""Published gemm_dtype -> (profile dtype, input quantized by a kernel of its own first)."""
M_RANGES = ((1, 128, "M 1-128 (decode)"), (129, 1024, "M 129-1024"), (1025, 1 << 30, "M > 1024 (prefill)"))


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SystemExit(f"{path}: no such table (CSV with gemm_dtype,m,n,k,latency_ms)")
    df = pd.read_csv(path, comment="#")
    need = {"gemm_dtype", "m", "n", "k", "latency_ms"}
    if not need <= set(df.columns):
        raise SystemExit(f"{path}: columns {sorted(df.columns)} lack {sorted(need - set(df.columns))}")
    df = df[df.m >= 1]
    return df[df.gemm_dtype.isin(list(TABLE_DTYPES))]


def profile_time_s(prof, m: int, n: int, k: int, dtype: str, quantized: bool, act_bytes: int, quant) -> float:
    """The GEMM as the serving model costs it: the fitted GEMM, after the input's quantize kernel for fp8."""
    t = prof.gemm_time_s(m, n, k, dtype).time_s
    if quantized:
        t += prof.memory_time_s(quant.bytes_per_element(act_bytes) * m * k, "copy").time_s
    return t


def compare(df: pd.DataFrame, prof) -> pd.DataFrame:
    quant = Implementation.from_name("fused").act_quant
    have = set(prof.dtypes())
    rows = []
    for r in df.itertuples(index=False):
        dtype, quantized = TABLE_DTYPES[r.gemm_dtype]
        if dtype not in have:
            continue
        ours = profile_time_s(prof, int(r.m), int(r.n), int(r.k), dtype, quantized, DTYPE_BYTES["bf16"], quant)
        rows.append((r.gemm_dtype, int(r.m), int(r.n), int(r.k), r.latency_ms * 1e-3, ours))
    return pd.DataFrame(rows, columns=["gemm_dtype", "m", "n", "k", "published_s", "profile_s"])


def model_sums(out: pd.DataFrame, model: str, tps: list[int]) -> list[str]:
    """Lines of summed published / profile time over ``model``'s TP-divided projection shapes (QKV, output,
    gate/up, down; kernels/model_shapes.py, the shapes the planner asks) that the table has, per dtype, TP and M."""
    from accelcal.kernels.model_shapes import model_gemm_shapes

    lines = []
    for t in tps:
        shapes, notes = model_gemm_shapes([model], [t])
        lines += [f"  {model} TP {t}: {n}" for n in notes]
        want = {(g.n, g.k): g.name.split(".", 1)[1].split("/")[0] for g in shapes
                if not g.name.split(".", 1)[1].startswith(("lm_head", "router"))}
        sub = out[[(n, k) in want for n, k in zip(out.n, out.k)]]
        for dt in TABLE_DTYPES:
            for m, grp in sub[sub.gemm_dtype == dt].groupby("m"):
                names = "+".join(sorted(want[(n, k)] for n, k in zip(grp.n, grp.k)))
                lines.append(f"  {model} TP {t} {dt:<9} M={m:<5} {names:<22} published {grp.published_s.sum() * 1e6:8.1f} us, "
                             f"profile {grp.profile_s.sum() * 1e6:8.1f} us (x{grp.published_s.sum() / grp.profile_s.sum():.2f})")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=str(ROOT / "profiles/nvidia-h100.yaml"))
    ap.add_argument("--table", default=str(DEFAULT_TABLE), help="published GEMM table (CSV: gemm_dtype,m,n,k,latency_ms)")
    ap.add_argument("--worst", type=int, default=5, help="shapes to list furthest off, per dtype")
    ap.add_argument("--model", default=None, help="also sum one model's projection shapes per TP and M (a preset name)")
    ap.add_argument("--tp", default="1,2,4,8", help="TP degrees for --model, comma-separated (default: 1,2,4,8)")
    args = ap.parse_args()
    try:
        tps = [int(t) for t in args.tp.split(",") if t.strip()]
        if not tps or min(tps) < 1:
            raise ValueError
    except ValueError:
        raise SystemExit(f"--tp: expected comma-separated integers >= 1, got {args.tp!r}") from None
    prof = Profile.load(args.profile)
    df = read_table(Path(args.table))
    out = compare(df, prof)
    if out.empty:
        raise SystemExit(f"no row of {args.table} has a dtype {prof.identity.name} measures ({prof.dtypes()})")
    out["ratio"] = out.published_s / out.profile_s
    rel = lambda p: os.path.relpath(p, ROOT) if Path(p).resolve().is_relative_to(ROOT) else p  # noqa: E731
    print(f"profile {prof.identity.name} ({rel(args.profile)}) vs published table {rel(args.table)}: {len(out)} rows, "
          f"{out.groupby(['n', 'k']).ngroups} (N, K) shapes")
    print("ratio = published / profile (fp8 rows: profile GEMM + its input's quantize kernel)")
    for dt in TABLE_DTYPES:
        sub = out[out.gemm_dtype == dt]
        if sub.empty:
            continue
        for lo, hi, label in M_RANGES:
            s = sub[(sub.m >= lo) & (sub.m <= hi)].ratio
            if len(s):
                print(f"  {dt:<9} {label:<20} n={len(s):<4} median x{s.median():.2f}  p10 x{s.quantile(0.1):.2f}  "
                      f"p90 x{s.quantile(0.9):.2f}")
        worst = sub.iloc[np.argsort(-np.abs(np.log(sub.ratio.to_numpy())))[:args.worst]]
        for r in worst.itertuples(index=False):
            print(f"    {dt} M={r.m} N={r.n} K={r.k}: published {r.published_s * 1e6:.1f} us, profile "
                  f"{r.profile_s * 1e6:.1f} us (x{r.ratio:.2f})")
    if args.model:
        print(f"{args.model}: summed over its projections in the table (profile fp8 = GEMM + input quantize kernel)")
        try:
            lines = model_sums(out, args.model, tps)
        except ValueError as exc:
            raise SystemExit(f"--model {args.model}: {exc}") from None
        print("\n".join(lines) if lines else f"  no shape of {args.model} at TP {args.tp} is in the table")
    return 0


if __name__ == "__main__":
    from _cli import run_main

    run_main(main)
