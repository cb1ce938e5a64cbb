"""A published collective latency table (size -> time per call), transcribed as CSV, read as nccl-tests runs.

    $ accelcal import nccl-tests sources/all_reduce_perf.txt sources/engine-allreduce.csv --out ic.yaml --citation URL

    from accelcal.collectives.latency_table import read_latency_table
    runs = read_latency_table("sources/engine-allreduce.csv")

Some collective timings are published as tables rather than nccl-tests logs, e.g. a serving engine's own
all-reduce kernel against its group size and message size.  Such a table, copied into a CSV with ``#``
comment lines saying where it comes from and how it was converted, has the columns

    kernel,op,group_size,dtype,size_bytes,time_s

in this order, as the first line after the comments.  ``kernel``: the implementation timed (lower-case name,
e.g. ``vllm_custom_ar``; empty = the collective library itself); ``op``: an accelcal collective (all_reduce, ...); ``size_bytes``: S in the nccl-tests convention;
``time_s``: seconds per call.  Each (kernel, op, group_size) becomes one run, fitted like a log's.
"""

from __future__ import annotations

import csv
import io
import math

from accelcal.safe_io import read_bytes
from accelcal.vocab import BUSBW_FACTORS, DTYPE_BYTES, is_kernel_name

from .nccl_tests import MAX_LOG_BYTES, NcclTestsError, Row, Run, Timing

__all__ = ["COLUMNS", "is_latency_table", "read_latency_table"]

COLUMNS = ("kernel", "op", "group_size", "dtype", "size_bytes", "time_s")
"""Header of a latency table, in this order."""


def _lines(path: str) -> list[tuple[int, str]]:
    text = read_bytes(path, what="latency table", max_bytes=MAX_LOG_BYTES).decode("utf-8", errors="replace")
    return [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip() and not ln.lstrip().startswith("#")]


def is_latency_table(path: str) -> bool:
    """True when the first non-comment line looks like a latency-table header (it names ``time_s``, not an
    accelcal results file's ``median_s``); :func:`read_latency_table` then checks it is exactly :data:`COLUMNS`."""
    lines = _lines(path)
    cols = {c.strip() for c in lines[0][1].split(",")} if lines else set()
    return "time_s" in cols and "median_s" not in cols


def read_latency_table(path: str) -> list[Run]:
    """One Run per (kernel, op, group_size); errors name the file, line and column."""
    lines = _lines(path)
    if not lines or tuple(c.strip() for c in lines[0][1].split(",")) != COLUMNS:
        where = f"{path}:{lines[0][0]}" if lines else path
        got = lines[0][1].strip() if lines else "nothing"
        raise NcclTestsError(f"{where}: a latency table's first line (after # comments) is the header "
                             f"{','.join(COLUMNS)} in this order; got {got!r}")
    runs: dict[tuple, Run] = {}
    for (lineno, _), rec in zip(lines[1:], csv.reader(io.StringIO("\n".join(ln for _, ln in lines[1:])))):
        if len(rec) != len(COLUMNS):
            raise NcclTestsError(f"{path}:{lineno}: expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), got {len(rec)}")
        kernel, op, gs, dtype, size, t = (c.strip() for c in rec)
        if kernel and not is_kernel_name(kernel):
            raise NcclTestsError(f"{path}:{lineno}: kernel {kernel!r}: lower-case letters, digits and '_' only")
        if op not in BUSBW_FACTORS:
            raise NcclTestsError(f"{path}:{lineno}: op {op!r}: expected one of {sorted(BUSBW_FACTORS)}")
        if dtype not in DTYPE_BYTES:
            raise NcclTestsError(f"{path}:{lineno}: dtype {dtype!r}: expected one of {sorted(DTYPE_BYTES)}")
        try:
            ranks, nbytes, secs = int(gs), int(size), float(t)
        except ValueError:
            raise NcclTestsError(f"{path}:{lineno}: group_size and size_bytes must be integers and time_s a number, "
                                 f"got {gs!r}, {size!r}, {t!r}") from None
        if ranks < 1 or nbytes < 1 or not (math.isfinite(secs) and secs > 0):
            raise NcclTestsError(f"{path}:{lineno}: need group_size >= 1, size_bytes >= 1 and time_s > 0, got "
                                 f"{ranks}, {nbytes}, {secs}")
        key = (kernel or None, op, ranks)
        run = runs.get(key)
        if run is None:
            run = runs[key] = Run(source=path, op=op, ranks=ranks, hosts=[], rows=[], fmt="latency-table",
                                  dtype=dtype, kernel=kernel or None, first_line=lineno,
                                  notes=[f"latency table: {kernel or 'library'} {op} on {ranks} ranks"])
        elif run.dtype != dtype:
            raise NcclTestsError(f"{path}:{lineno}: {op} on {ranks} ranks mixes dtypes {run.dtype} and {dtype}")
        run.rows.append(Row(nbytes, nbytes // DTYPE_BYTES[dtype], dtype, Timing(secs, nbytes / secs, None, None), None,
                            lineno))
    if not runs:
        raise NcclTestsError(f"{path}: nothing parsable: the header has no rows under it")
    return list(runs.values())
