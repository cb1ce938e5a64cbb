"""Long-format result records and the files they are written to.

    from accelcal.results import ResultSet
    rs = ResultSet(suite="kernels", env={"device": "cpu"})
    rs.add_timing(op="gemm", case="m64_n4096_k4096_bf16", params={"m": 64}, dtype="bf16",
                  timing=op_timing, flop=2 * 64 * 4096 * 4096, bytes_moved=2 * 4096 * 4096)
    rs.add_skip(op="gemm", case="fp8", params={}, dtype="fp8_e4m3", reason="no fp8 on cpu")
    paths = rs.write("results/", stem="kernels")   # CSV (+Parquet) + pytest-benchmark JSON

One row per case and figure (``device`` / ``eager``), units in column names.
The same schema serves kernels, collectives and validation, so the fitting code
reads one format.  Files appear atomically: a crash mid-write leaves none.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # pandas comes with the measure extra; writing records needs it, importing this module does not
    import pandas as pd

from .atomic import atomic_write_text, atomic_write_with

__all__ = ["CORE_COLUMNS", "ResultSet", "read_results", "STATUS_OK", "STATUS_SKIPPED", "STATUS_FAILED"]

STATUS_OK = "ok"
STATUS_SKIPPED = "skipped"
STATUS_FAILED = "failed"

CORE_COLUMNS: tuple[str, ...] = (
    "suite",  # kernels | collectives | validation | ...
    "op",  # gemm, copy, all_reduce, ...
    "case",  # unique, human-readable case id within (suite, op)
    "dtype",
    "figure",  # device | eager | (collectives: max_over_ranks)
    "method",  # graph | queue | host-queue | events | host
    "status",  # ok | skipped | failed
    "reason",  # why skipped/failed; noise notes for ok rows
    "n_samples",
    "median_s",
    "q1_s",
    "q3_s",
    "iqr_s",
    "min_s",
    "max_s",
    "mean_s",
    "stddev_s",
    "cv",
    "rel_iqr",
    "flop",
    "bytes",
    "flop_per_s",
    "bytes_per_s",
)
"""Columns every record has; op-specific parameters (m, n, k, size_bytes, group_size, ...) follow."""


@dataclass
class ResultSet:
    """Rows of one benchmark run plus the environment they were measured in."""

    suite: str
    """Which suite produced the rows (``kernels``, ``collectives``, ``validation``)."""
    env: dict[str, Any] = field(default_factory=dict)
    """Provenance captured at the start of the run (see kernels.environment)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """One dict per case and figure."""
    samples: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    """Every kept sample, keyed by (case, figure, op)."""

    def _base(self, op: str, case: str, params: Mapping[str, Any], dtype: str) -> dict[str, Any]:
        row: dict[str, Any] = {c: None for c in CORE_COLUMNS}
        row.update(suite=self.suite, op=op, case=case, dtype=dtype, reason="")
        for k, v in params.items():
            if k in CORE_COLUMNS:
                raise ValueError(f"parameter name {k!r} collides with a core result column")
            row[k] = v
        return row

    def add_stats(
        self,
        *,
        op: str,
        case: str,
        params: Mapping[str, Any],
        dtype: str,
        figure: str,
        method: str,
        stats: Any,
        flop: float | None = None,
        bytes_moved: float | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Add one figure from a :class:`accelcal.kernels.timing.Stats`."""
        row = self._base(op, case, params, dtype)
        summary = stats.summary()
        summary["n_samples"] = summary.pop("n")
        row.update({k: summary[k] for k in summary if k in row})
        row.update(figure=figure, method=method, status=STATUS_OK, reason=note)
        row["flop"] = flop
        row["bytes"] = bytes_moved
        med = stats.median_s
        row["flop_per_s"] = flop / med if flop and med > 0 else None
        row["bytes_per_s"] = bytes_moved / med if bytes_moved and med > 0 else None
        self.rows.append(row)
        self.samples[(case, figure, op)] = list(stats.samples_s)
        return row

    def add_timing(
        self,
        *,
        op: str,
        case: str,
        params: Mapping[str, Any],
        dtype: str,
        timing: Any,
        flop: float | None = None,
        bytes_moved: float | None = None,
    ) -> list[dict[str, Any]]:
        """Add both figures of a :class:`accelcal.kernels.timing.OpTiming`."""
        note = "; ".join(timing.warnings)
        return [
            self.add_stats(op=op, case=case, params=params, dtype=dtype, figure="device", method=timing.device_method,
                           stats=timing.device, flop=flop, bytes_moved=bytes_moved, note=note),
            self.add_stats(op=op, case=case, params=params, dtype=dtype, figure="eager", method=timing.eager_method,
                           stats=timing.eager, flop=flop, bytes_moved=bytes_moved, note=note),
        ]

    def add_skip(self, *, op: str, case: str, params: Mapping[str, Any], dtype: str, reason: str,
                 status: str = STATUS_SKIPPED) -> dict[str, Any]:
        """Record a case that could not run (unsupported dtype, out of memory, ...) and why."""
        if status not in (STATUS_SKIPPED, STATUS_FAILED):
            raise ValueError(f"status must be {STATUS_SKIPPED!r} or {STATUS_FAILED!r}, got {status!r}")
        row = self._base(op, case, params, dtype)
        row.update(figure="", method="", status=status, reason=reason)
        self.rows.append(row)
        return row

    def extend(self, other: "ResultSet") -> None:
        self.rows.extend(other.rows)
        self.samples.update(other.samples)

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame: core columns first, then parameters in first-seen order."""
        import pandas as pd

        extra: list[str] = []
        for r in self.rows:
            for k in r:
                if k not in CORE_COLUMNS and k not in extra:
                    extra.append(k)
        df = pd.DataFrame(self.rows, columns=list(CORE_COLUMNS) + extra)
        for col in df.columns:
            # counts and shapes stay whole numbers in the files (a skipped row's missing value made them 50.0)
            vals = [r[col] for r in self.rows if r.get(col) is not None]
            if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
                df[col] = df[col].astype("Int64")
        return df

    def benchmark_json(self) -> dict[str, Any]:
        """The rows in the JSON layout ``pytest-benchmark compare`` reads."""
        benches = []
        for r in self.rows:
            if r["status"] != STATUS_OK:
                continue
            samples = self.samples.get((r["case"], r["figure"], r["op"]), [])
            params = {k: _jsonable(v) for k, v in r.items() if k not in CORE_COLUMNS and v is not None}
            name = f"{r['op']}[{r['case']}-{r['figure']}]"
            q1, q3, iqr = r["q1_s"], r["q3_s"], r["iqr_s"]
            benches.append({
                "group": f"{self.suite}.{r['op']}",
                "name": name,
                "fullname": f"{self.suite}::{name}",
                "params": params,
                "param": r["case"],
                "extra_info": {k: _jsonable(r[k]) for k in ("dtype", "figure", "method", "flop", "bytes", "flop_per_s", "bytes_per_s", "reason")},
                "options": {"timer": r["method"], "disable_gc": False, "min_rounds": 1, "max_time": 0, "min_time": 0, "warmup": True},
                "stats": {
                    "min": r["min_s"], "max": r["max_s"], "mean": r["mean_s"], "stddev": r["stddev_s"],
                    "rounds": r["n_samples"], "median": r["median_s"], "iqr": iqr, "q1": q1, "q3": q3,
                    "iqr_outliers": sum(1 for s in samples if s < q1 - 1.5 * iqr or s > q3 + 1.5 * iqr),
                    "stddev_outliers": sum(1 for s in samples if abs(s - r["mean_s"]) > r["stddev_s"]),
                    "outliers": "", "ld15iqr": q1 - 1.5 * iqr, "hd15iqr": q3 + 1.5 * iqr,
                    "ops": 1.0 / r["mean_s"] if r["mean_s"] else 0.0, "total": sum(samples),
                    "data": samples, "iterations": 1,
                },
            })
        return {
            "machine_info": {k: _jsonable(v) for k, v in self.env.items()},
            "commit_info": {},
            "benchmarks": benches,
            "datetime": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "version": "accelcal-results-1",
        }

    def write(self, out_dir: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Write ``<stem>.csv``, ``<stem>.parquet`` (when pyarrow is present),
        ``<stem>.json`` (pytest-benchmark layout) and ``<stem>.env.json``, each atomically."""
        out = Path(out_dir)
        stem = stem or self.suite
        df = self.frame()
        paths: dict[str, Path] = {}
        paths["csv"] = atomic_write_text(out / f"{stem}.csv", df.to_csv(index=False))
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            pass
        else:
            pq = df.copy()
            for col in pq.columns:
                if pq[col].dtype == object:
                    pq[col] = pq[col].map(lambda v: None if v is None else str(v))
            paths["parquet"] = atomic_write_with(out / f"{stem}.parquet", lambda tmp: pq.to_parquet(tmp, index=False))
        paths["json"] = atomic_write_text(out / f"{stem}.json", json.dumps(self.benchmark_json(), indent=1))
        paths["env"] = atomic_write_text(out / f"{stem}.env.json", json.dumps({k: _jsonable(v) for k, v in self.env.items()}, indent=1))
        return paths


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        if isinstance(v, float) and v != v:
            return None
        return v
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):
        return v.item()
    return str(v)


_SHAPE_COLUMNS: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k"),
    "attn_prefill": ("batch", "heads", "kv_heads", "head_dim", "q_len", "kv_len"),
    "attn_decode": ("batch", "heads", "kv_heads", "head_dim", "q_len", "kv_len"),
    "@collectives": ("size_bytes", "group_size", "scope"),
}
"""Columns a fit reads from the rows of an op (or, with '@', of a suite) besides CORE_COLUMNS."""


def read_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate result CSVs, checking each has the core columns."""
    import pandas as pd

    frames = []
    for p in paths:
        from .safe_io import read_csv

        p = Path(p)
        if p.suffix.lower() in (".json", ".parquet"):
            # the run's other copies of its records, or its .env.json: the CSV is the one read here
            raise ValueError(f"{p}: expected a results CSV ({p.name.split('.')[0]}.csv, written beside it by the "
                             f"same run), not its {p.suffix} file")
        df = read_csv(p, what="results file", whole_rows=True)
        missing = [c for c in CORE_COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"{p}: not an accelcal results file; missing columns {missing}")
        if "median_s" in df.columns and "status" in df.columns:
            # a measured row's time is a positive finite number: an edited or damaged file is refused whole, by row,
            # rather than one fit silently dropping it or the whole series
            med = pd.to_numeric(df["median_s"], errors="coerce")
            bad = df.index[(df["status"].astype(str) == STATUS_OK) & ~((med > 0) & (med < float("inf")))]
            if len(bad):
                i = bad[0]
                raise ValueError(f"{p}: line {i + 2} ({df.at[i, 'op']} {df.at[i, 'case']}): median_s "
                                 f"{df.at[i, 'median_s']} on an ok row; a measured time is a finite number > 0 s"
                                 + (f" ({len(bad)} such rows)" if len(bad) > 1 else ""))
        for kind, need in _SHAPE_COLUMNS.items():
            rows = df["suite"].astype(str).eq(kind[1:]) if kind.startswith("@") else df["op"].astype(str).eq(kind)
            lack = [c for c in need if c not in df.columns] if rows.any() else []
            if lack:
                what = f"its {kind[1:]} rows" if kind.startswith("@") else f"its {kind} rows"
                raise ValueError(f"{p}: {what} need the columns {list(need)} to be fitted; missing {lack}")
        frames.append(df)
    if not frames:
        raise ValueError("no results files given")
    return pd.concat(frames, ignore_index=True, sort=False)
