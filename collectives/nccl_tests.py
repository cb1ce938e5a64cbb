"""Read nccl-tests results (text output and ``-J`` JSON) and accelcal's own collectives CSV.

    from accelcal.collectives.nccl_tests import read_runs
    for run in read_runs(["logs/all_reduce_perf.txt", "logs/ag.json"]):
        print(run.op, run.ranks, run.nodes, run.scope, len(run.rows), run.nccl_version)
        sizes, times = run.series("both")        # S in bytes, seconds (out-of-place and in-place)

Formats, as nccl-tests writes them (src/util.cu of NVIDIA/nccl-tests, 2.x):

* text: ``# nccl-tests version V nccl-headers=H nccl-library=L``, ``# Collective
  test starting: <op>_perf``, ``# nThread .. nGpus .. graph: G``, one
  ``#  Rank R Group G Pid P on HOST device D [BUS] NAME`` line per rank (older
  versions drop ``Group``), ``NCCL version X`` (from the library), a column
  header (``size count type [redop] [root] time algbw busbw #wrong|error`` for
  out-of-place then in-place), one row per size, then ``# Out of bounds values :
  N OK|FAILED`` and ``# Avg bus bandwidth : X``.  mpirun tags (``[1,0]<stdout>:``,
  ``[0]``) are stripped.  One file may hold several runs (one per binary).
* JSON (``-J file.json``, JSON_FILE_VERSION 3): ``args`` (argv[0] names the
  binary), ``nccl_version`` (int), ``config`` (``graph``, ``devices`` with
  ``rank``/``hostname``/``device_info``), ``results`` (``size``, ``count``,
  ``type``, ``redop``, ``root``, ``out_of_place``/``in_place`` each with
  ``time`` (us), ``alg_bw``, ``bus_bw`` (GB/s) and ``nwrong``), ``out_of_bounds``.
* accelcal CSV (``accelcal bench collectives``): the rows the profile fit would use.

Conventions are ours (docs/collectives.md): S = the printed size (per-rank
buffer for all_reduce/broadcast/sendrecv, the total of n chunks for all_gather/
reduce_scatter/alltoall), algbw = S / t, busbw = algbw x factor(n); the factor
comes from :func:`accelcal.calibrate.profile.busbw_factor` and every row with
enough printed digits is checked against it.  A log is refused (``NcclTestsError``
naming the file and line) when a row has ``#wrong`` > 0, the footer says
``Out of bounds values : N FAILED``, a row is cut short, or nothing parses.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from accelcal.safe_io import read_bytes
from accelcal.textsafe import brief
from accelcal.vocab import BUSBW_FACTORS, SCOPES, busbw_factor

MAX_LOG_BYTES = 64 * 2**20
"""Largest nccl-tests log read (a full -b 8 -e 16G sweep of every binary is a few hundred KiB)."""

__all__ = ["NcclTestsError", "Timing", "Row", "Run", "BINARY_OPS", "parse_text", "parse_json", "read_collectives_csv",
           "read_runs", "sha256_of"]

BINARY_OPS: dict[str, str] = {
    "all_reduce": "all_reduce", "all_gather": "all_gather", "reduce_scatter": "reduce_scatter",
    "alltoall": "all_to_all", "broadcast": "broadcast", "sendrecv": "send_recv", "reduce": "reduce",
}
"""nccl-tests binary stem (``<stem>_perf``, ``<stem>_perf_mpi``) -> accelcal collective name."""

_DTYPES = {"float": "fp32", "half": "fp16", "bfloat16": "bf16", "double": None, "int8": None, "uint8": None,
           "int32": None, "uint32": None, "int64": None, "uint64": None, "f8e4m3": "fp8_e4m3", "f8e5m2": None,
           "int": None, "char": None}
"""nccl-tests type names -> accelcal dtype names (None: a type accelcal has no name for; kept as the raw name)."""

_TAG = re.compile(r"^\s*(?:(?:\[\d+(?:,\d+)*\](?:<std(?:out|err)>)?:?|\d+:(?=\s))\s?)+")
"""mpirun --tag-output (``[1,0]<stdout>:``), ``[0]`` and srun --label (`` 0: ``) prefixes."""
_INLINE_TAG = re.compile(r"\[\d+\]")
_RANK = re.compile(r"^#?\s*Rank\s+(\d+)\s+(?:Group\s+\d+\s+)?Pid\s+(\d+)\s+on\s+(\S+)\s+device\s+(\d+)\s+\[([^\]]*)\]\s*(.*)$")
_VERSION = re.compile(r"^#\s*nccl-tests version\s+(\S+)(?:\s+\([^)]*\))?(?:\s+nccl-headers=(\d+))?(?:\s+nccl-library=(\d+))?")
_RCCL_VERSION = re.compile(r"^#?\s*rccl-tests:?\s+version\s+(\S+)", re.I)
_STARTING = re.compile(r"^#\s*Collective test starting:\s*(\S+)")
_CONFIG = re.compile(r"^#\s*nThread\s+(\d+)\s+nGpus\s+(\d+).*?(?:graph:\s*(\d+))?\s*(?:unalign:\s*\d+\s*)?$")
_NCCL = re.compile(r"^\s*NCCL version\s+(\S+)")
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(\d+)\s*(OK|FAILED)?")
_FAILURE = re.compile(r"\bTest (?:NCCL |CUDA )?failure\b")
"""What nccl-tests prints when a run fails (common.cu's NCCLCHECK / CUDACHECK / testResult: ``host: Test NCCL failure
common.cu:1005 '...'`` and `` .. host pid N: Test failure common.cu:891``): the rows before it are not a finished run."""
NO_FOOTER = "no 'Out of bounds values' footer"
"""The start of a run's note when its log ends without the footer nccl-tests prints after the last size."""
NO_RANK_LINES = "no rank lines"
"""The start of a run's note when its log has no ``# Rank`` lines: the rank count is inferred, the hosts unknown."""
LOG_ERROR = "the log reports an error"
"""The start of a run's note when the log holds a line of the job failing around the run (_JOB_ERROR)."""
_JOB_ERROR = re.compile(r"NCCL WARN\b.*\b(?:error|fail)|slurmstepd: error|\bCANCELLED\b|non-zero exit code|"
                        r"Primary job\s+terminated|\bSegmentation fault\b|\bout of memory\b", re.I)
"""Lines of a job going wrong that nccl-tests' own failure line (_FAILURE) does not cover: NCCL's network warnings with
an error (``NCCL WARN NET/IB : Got completion from peer ... with error 12``), Slurm cancelling the step, mpirun's
non-zero exit summary.  The rows may be complete, but the run they come from did not end well."""
DOUBT_NOTES: tuple[str, ...] = (NO_FOOTER, NO_RANK_LINES, LOG_ERROR)
"""Starts of the run notes the importer keeps as quality flags (and plan / predict warn about)."""
_AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*([0-9.eE+-]+)")


class NcclTestsError(ValueError):
    """A log that cannot be used; the message names the file, the line and what was expected."""


@dataclass(frozen=True)
class Timing:
    """One half (out-of-place or in-place) of a result row."""

    time_s: float
    """Time per call, seconds (nccl-tests prints microseconds)."""
    algbw_bytes_per_s: float | None
    """S / time as printed (GB/s x 1e9); None when the file does not give it."""
    busbw_bytes_per_s: float | None
    """algbw x factor(n) as printed."""
    wrong: float | None
    """``#wrong`` elements (None: N/A, or an old ``error`` column that holds a magnitude, not a count)."""


@dataclass(frozen=True)
class Row:
    """One message size."""

    size_bytes: int
    """S, nccl-tests convention (the printed ``size``)."""
    count: int
    """Elements, as printed."""
    type_name: str
    """nccl-tests type name (float, half, bfloat16, ...)."""
    out_of_place: Timing | None
    """Out-of-place figures (None when only in-place ran)."""
    in_place: Timing | None
    """In-place figures (None when not given)."""
    line: int
    """1-based line (text) or result index (JSON) the row came from."""


@dataclass
class Run:
    """One nccl-tests run (one binary, one process layout) or one accelcal series."""

    source: str
    """The file it came from."""
    op: str
    """accelcal collective name (all_reduce, all_gather, reduce_scatter, all_to_all, broadcast, send_recv)."""
    ranks: int
    """Ranks in the run (the communicator size n used in the bus-bandwidth factor)."""
    hosts: list[str]
    """Host of each rank, in rank order (empty when the log has no rank lines)."""
    rows: list[Row]
    """Result rows, in file order."""
    fmt: str
    """``text``, ``json`` or ``accelcal-csv``."""
    devices: list[str] = field(default_factory=list)
    """Device name of each rank, as printed."""
    nccl_tests_version: str | None = None
    """``# nccl-tests version`` when present."""
    nccl_version: str | None = None
    """NCCL library version (``NCCL version 2.20.3+cuda12.3``, or the JSON/header library code)."""
    graph: int | None = None
    """``graph:`` of the config line: CUDA-graph launches per timing (0 = plain launches)."""
    avg_busbw_bytes_per_s: float | None = None
    """The footer's average bus bandwidth."""
    first_line: int = 1
    """Line where the run starts in its file."""
    notes: list[str] = field(default_factory=list)
    """What the reader noticed but accepted (no footer, inferred rank count, ...)."""
    dtype: str | None = None
    """accelcal dtype name of the rows (None when the type has no accelcal name)."""
    kernel: str | None = None
    """The implementation timed when it is not the collective library (a latency table's ``kernel`` column)."""

    @property
    def nodes(self) -> int:
        """Distinct hosts (1 when the log names none)."""
        return len(set(self.hosts)) if self.hosts else 1

    @property
    def scope(self) -> str:
        return SCOPES[1] if self.nodes > 1 else SCOPES[0]

    @property
    def group_size(self) -> int:
        """Group size of the profile entry: send_recv is a pair (every rank sends to its ring neighbour at once)."""
        return 2 if self.op.startswith("send_recv") else self.ranks

    def series(self, placement: str = "both") -> tuple[list[float], list[float]]:
        """(S in bytes, time in s) over the rows with S > 0: ``out``, ``in`` or ``both`` placements."""
        if placement not in ("out", "in", "both"):
            raise ValueError(f"placement must be out, in or both, got {placement!r}")
        xs, ts = [], []
        for r in self.rows:
            if r.size_bytes <= 0:
                continue
            for want, t in (("out", r.out_of_place), ("in", r.in_place)):
                if t is not None and placement in (want, "both") and t.time_s > 0:
                    xs.append(float(r.size_bytes))
                    ts.append(t.time_s)
        return xs, ts

    def describe(self) -> str:
        hosts = f"{self.nodes} host(s)" + (f" ({', '.join(sorted(set(self.hosts))[:4])}{'...' if self.nodes > 4 else ''})"
                                           if self.hosts else "")
        dev = f", {self.devices[0]}" if self.devices else ""
        return (f"{os.path.basename(self.source)}:{self.first_line}: {self.op} on {self.ranks} ranks, {hosts}{dev}, "
                f"{self._sizes_text()}, {self.fmt}")

    def _sizes_text(self) -> str:
        """``N sizes``, with the row count where some size repeats (nccl-tests -N, -o all, a pasted row)."""
        sizes = len({r.size_bytes for r in self.rows})
        return f"{sizes} sizes" + (f" ({len(self.rows)} rows)" if sizes != len(self.rows) else "")


def sha256_of(path: str | os.PathLike) -> str:
    return hashlib.sha256(read_bytes(path, what="nccl-tests log", max_bytes=MAX_LOG_BYTES)).hexdigest()


def _op_from_binary(name: str) -> str | None:
    stem = os.path.basename(name.strip())
    stem = re.sub(r"(_perf)?(_mpi)?(\.\w+)?$", "", stem)
    return BINARY_OPS.get(stem)


def op_from_filename(path: str) -> str | None:
    """The collective a file name says (``all_gather_perf.txt``, ``alltoall-8gpu.log``, ...), else None."""
    base = os.path.basename(path).lower()
    for stem in sorted(BINARY_OPS, key=len, reverse=True):
        if re.search(rf"(^|[^a-z]){stem}(_perf)?([^a-z]|$)", base):
            return BINARY_OPS[stem]
    return None


def _num(tok: str) -> float | None:
    try:
        v = float(tok)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _check_timing_values(time_us: float, algbw: float, busbw: float, where: str) -> None:
    """A measured time is > 0 and the bandwidths >= 0 (a row that breaks this was edited or corrupted)."""
    if time_us <= 0:
        raise NcclTestsError(f"{where}: time {time_us:g} us; a measured time is > 0 (an edited or corrupted row?)")
    if algbw < 0 or busbw < 0:
        raise NcclTestsError(f"{where}: negative bandwidth (algbw {algbw:g}, busbw {busbw:g} GB/s); expected >= 0")


def _timing(toks: Sequence[str], wrong_is_count: bool, where: str) -> Timing:
    t, alg, bus = (_num(x) for x in toks[:3])
    if t is None or alg is None or bus is None:
        raise NcclTestsError(f"{where}: expected time, algbw, busbw numbers, got {list(toks[:3])}")
    _check_timing_values(t, alg, bus, where)
    w = toks[3] if len(toks) > 3 else "N/A"
    wrong = None if w == "N/A" or not wrong_is_count else _num(w)
    if wrong_is_count and w != "N/A" and wrong is None:
        raise NcclTestsError(f"{where}: expected a #wrong count or N/A, got {w!r}")
    return Timing(t * 1e-6, alg * 1e9, bus * 1e9, wrong)


@dataclass
class _Header:
    lead: int
    """Columns before the first timing group (size, count, type, [redop], [root])."""
    group_width: int
    """Columns per timing group (4, or 8 with per-iteration statistics)."""
    wrong_is_count: bool
    """``#wrong`` (a count) rather than the old ``error`` (a magnitude)."""
    groups: int = 0
    """Timing groups the header names (2: out-of-place and in-place); 0 for a row read without a header."""


def _header(line: str) -> _Header | None:
    toks = line.lstrip("#").split()
    if len(toks) < 4 or toks[0] != "size" or "count" not in toks:
        return None
    starts = [i for i, t in enumerate(toks) if t in ("time", "cputime")]
    if not starts:
        return None
    width = (starts[1] - starts[0]) if len(starts) > 1 else len(toks) - starts[0]
    return _Header(lead=starts[0], group_width=max(4, width), wrong_is_count="#wrong" in toks, groups=len(starts))


def _guess_header(toks: Sequence[str]) -> _Header:
    """Columns of a row printed without a header line: size count type, then redop / root if present."""
    lead = 3
    if len(toks) > lead and _num(toks[lead]) is None:
        lead += 1  # redop
    if len(toks) - lead in (9, 5) and re.fullmatch(r"-?\d+", toks[lead] or ""):
        lead += 1  # root
    wrong = len(toks) > lead + 3 and re.fullmatch(r"\d+|N/A", toks[lead + 3]) is not None
    return _Header(lead=lead, group_width=4, wrong_is_count=wrong)


def _finish(run: Run | None, out: list[Run], path: str, op_hint: str | None) -> None:
    if run is None:
        return
    if not run.rows:
        return
    if not run.op:
        run.op = op_hint or ""
    if not run.op:
        raise NcclTestsError(f"{path}:{run.first_line}: cannot tell which collective this run measured (no "
                             f"'# Collective test starting: <op>_perf' line); name the file after the binary "
                             f"(e.g. all_gather_perf.txt) or pass --op")
    if run.hosts and len(run.hosts) != run.ranks:
        run.ranks = len(run.hosts)
    repeated = {k: n for k, n in Counter((r.size_bytes, r.type_name) for r in run.rows).items() if n > 1}
    if repeated:
        # nccl-tests -N repeats the sweep and -o all each reduction (each a measurement); a row pasted twice looks
        # the same: said, not dropped
        shown = ", ".join(f"{k[0]} B x{n}" for k, n in list(repeated.items())[:3])
        run.notes.append(f"{len(repeated)} size(s) appear more than once ({shown}{', ...' if len(repeated) > 3 else ''}):"
                         f" each row is a point of the fit (nccl-tests -N repeats the sweep, -o all each "
                         f"reduction; a row pasted twice counts twice)")
    _check_factors(run, path)
    types = {r.type_name for r in run.rows}
    if len(types) == 1:
        run.dtype = _DTYPES.get(next(iter(types)))
    out.append(run)


def _check_factors(run: Run, path: str) -> None:
    """Every row with enough printed digits must satisfy algbw = S/t and busbw = algbw x factor(n) (our factors)."""
    if run.ranks == 1:
        return  # factor(1) is 0 for the reductions and gathers: busbw 0 says nothing; the importer refuses such runs
    ratios: list[float] = []
    for r in run.rows:
        for t in (r.out_of_place, r.in_place):
            if t is None or not t.algbw_bytes_per_s or t.algbw_bytes_per_s < 1e9 or t.time_s <= 0:
                continue
            alg = r.size_bytes / t.time_s
            if abs(alg / t.algbw_bytes_per_s - 1) > 0.03 and t.time_s > 1e-5:
                raise NcclTestsError(f"{path}:{r.line}: algbw {t.algbw_bytes_per_s / 1e9:g} GB/s is not S / time = "
                                     f"{r.size_bytes} B / {t.time_s * 1e6:g} us = {alg / 1e9:.4g} GB/s: not nccl-tests "
                                     f"output, or the columns are shifted")
            ratio = t.busbw_bytes_per_s / t.algbw_bytes_per_s
            if run.ranks <= 0:
                ratios.append(ratio)
                continue
            f = busbw_factor(run.op, run.ranks)
            if abs(ratio / f - 1) > 0.03:
                raise NcclTestsError(f"{path}:{r.line}: busbw / algbw = {t.busbw_bytes_per_s / 1e9:g} / "
                                     f"{t.algbw_bytes_per_s / 1e9:g} = {ratio:.4g}, but the {run.op} factor for "
                                     f"{run.ranks} ranks is {f:.4g}: wrong collective (--op) or rank count?")
    if run.ranks <= 0:
        n_inferred = _ranks_from_ratio(run.op, ratios)
        if n_inferred is None:
            if all(busbw_factor(run.op, n) == 1.0 for n in (2, 8)):
                n_inferred = 2
                run.notes.append(f"{NO_RANK_LINES}: send/recv-style run taken as 2 ranks")
            else:
                raise NcclTestsError(f"{path}:{run.first_line}: no '# Rank ...' lines and no row with algbw >= 1 GB/s "
                                     f"to infer the rank count from busbw/algbw")
        else:
            run.notes.append(f"{NO_RANK_LINES}: {n_inferred} ranks inferred from busbw/algbw; the hosts are unknown, "
                             f"so the scope is taken from --scope (default intra_node)")
        run.ranks = n_inferred


def _ranks_from_ratio(op: str, ratios: Sequence[float]) -> int | None:
    """The rank count whose busbw factor best explains every printed busbw / algbw (None: no ratio, or none fits)."""
    if not ratios or all(busbw_factor(op, n) == busbw_factor(op, 2) for n in (3, 8)):
        return None
    errs = {n: sum(abs(busbw_factor(op, n) / r - 1) for r in ratios) / len(ratios) for n in range(2, 4097)}
    best = min(errs, key=errs.get)
    return best if errs[best] < 0.01 else None


def parse_text(text: str, path: str = "<text>", op_hint: str | None = None) -> list[Run]:
    """Every run in one nccl-tests text log; raises NcclTestsError naming ``path`` and the line."""
    runs: list[Run] = []
    run: Run | None = None
    header: _Header | None = None
    pending = {"version": None, "op": None, "first": 1, "nccl": None, "graph": None}
    oob_seen = False

    def new_run(line_no: int) -> Run:
        return Run(source=path, op=pending["op"] or "", ranks=0, hosts=[], rows=[], fmt="text",
                   nccl_tests_version=pending["version"], nccl_version=pending["nccl"], graph=pending["graph"],
                   first_line=pending["first"] or line_no)

    lines = text.splitlines()
    for i, raw in enumerate(lines, 1):
        line = _TAG.sub("", raw).rstrip()
        s = line.strip()
        if not s:
            continue
        m = _VERSION.match(s) or _RCCL_VERSION.match(s)
        if m:
            _finish(run, runs, path, op_hint)
            run, header, oob_seen = None, None, False
            pending.update(version=m.group(1), first=i, op=None, graph=None)
            if m.re is _VERSION and m.group(3):
                # the header's nccl-library code is the library the run loaded (an "NCCL version" line, when the
                # log has one, says the same in words and replaces it)
                pending["nccl"] = _nccl_code(int(m.group(3)))
            continue
        m = _STARTING.match(s)
        if m:
            if run is not None and run.rows:
                _finish(run, runs, path, op_hint)
                run, header, oob_seen = None, None, False
                pending.update(first=i, version=None, graph=None)
            pending["op"] = _op_from_binary(m.group(1))
            if pending["op"] is None:
                raise NcclTestsError(f"{path}:{i}: unknown nccl-tests binary {m.group(1)!r}; known: "
                                     f"{sorted(k + '_perf' for k in BINARY_OPS)}")
            if run is not None:
                run.op = pending["op"]
            continue
        m = _CONFIG.match(s)
        if m and s.startswith("#"):
            if run is not None and run.rows:
                _finish(run, runs, path, op_hint)
                run, header, oob_seen = None, None, False
            g = re.search(r"graph:\s*(\d+)", s)
            pending["graph"] = int(g.group(1)) if g else None
            run = new_run(i)
            if pending["first"] is None or pending["first"] > i:
                run.first_line = i
            pending["first"] = None
            continue
        m = _RANK.match(s)
        if m:
            if run is None or run.rows:
                _finish(run, runs, path, op_hint)
                run, header = new_run(i), None
            run.hosts.append(m.group(3))
            run.devices.append(m.group(6).strip())
            continue
        m = _NCCL.match(s)
        if m:
            pending["nccl"] = m.group(1)
            if run is not None:
                run.nccl_version = m.group(1)
            continue
        h = _header(s)
        if h is not None:
            header = h
            if run is None:
                run = new_run(i)
            continue
        m = _OOB.match(s)
        if m:
            bad = int(m.group(1))
            if bad > 0 or m.group(2) == "FAILED":
                raise NcclTestsError(f"{path}:{i}: nccl-tests reported wrong results ({s.lstrip('# ')}); "
                                     f"a run with wrong results is not a measurement")
            oob_seen = True
            if run is not None:
                run.notes.append("footer: out of bounds values 0 OK")
            continue
        m = _AVG.match(s)
        if m:
            if run is not None:
                run.avg_busbw_bytes_per_s = float(m.group(1)) * 1e9
            continue
        if _JOB_ERROR.search(s) and not s.startswith("#"):
            target = run if run is not None else (runs[-1] if runs else None)
            if target is not None and not any(n.startswith(LOG_ERROR) for n in target.notes):
                target.notes.append(f"{LOG_ERROR} at line {i}: {brief(s.strip(), 120)}")
            continue
        if _FAILURE.search(s):
            raise NcclTestsError(f"{path}:{i}: nccl-tests reported a failure ({brief(s.strip(), 120)}); a run that failed "
                                 f"is not a measurement: fix the run and import its complete log")
        if s.startswith("#") or not re.match(r"^\d", s):
            continue
        # A result row.
        toks = _INLINE_TAG.sub(" ", s).split()
        # a log pasted without its header still parses; a row that fails in a file with no nccl-tests line at
        # all before it is most likely not a log
        unlogged = (run is None and header is None and not runs
                    and pending["version"] is None and pending["op"] is None and pending["nccl"] is None)
        if run is None:
            run = new_run(i)
        hdr = header or _guess_header(toks)
        where = f"{path}:{i}" + ("" if not unlogged else
                                 " (no nccl-tests header, rank or version line before it: is this an nccl-tests log?)")
        if len(toks) < hdr.lead + 4:
            raise NcclTestsError(f"{where}: result row cut short ({len(toks)} columns, expected at least "
                                 f"{hdr.lead + 4}: size, count, type, ..., time, algbw, busbw, #wrong): "
                                 f"truncated log? line: {s[:100]!r}")
        size, count = _num(toks[0]), _num(toks[1])
        if size is None or count is None or not float(size).is_integer():
            raise NcclTestsError(f"{where}: expected integer size and count, got {toks[:2]}")
        if header is not None and header.groups > 1 and len(toks) != header.lead + header.groups * header.group_width:
            # a row of a headed log has the header's columns: fewer is a row cut short (or a group left out), more
            # a row of another layout; either way its numbers cannot be told apart
            want = header.lead + header.groups * header.group_width
            raise NcclTestsError(f"{where}: result row has {len(toks)} columns where the header names {want} "
                                 f"({header.lead} before the timings, then {header.groups} timing groups of "
                                 f"{header.group_width}, out-of-place and in-place): "
                                 + ("cut short: truncated log?" if len(toks) < want else "a row of another layout?")
                                 + f" line: {s[:100]!r}")
        body = toks[hdr.lead:]
        full = 2 * hdr.group_width
        if len(body) >= full or len(body) >= hdr.group_width + 4:
            oop = _timing(body[:4], hdr.wrong_is_count, where)
            inp = _timing(body[hdr.group_width:hdr.group_width + 4], hdr.wrong_is_count, where)
        elif len(body) >= 4:
            oop, inp = None, _timing(body[:4], hdr.wrong_is_count, where)
        else:
            raise NcclTestsError(f"{where}: result row cut short: {s[:100]!r}")
        for half, t in (("out-of-place", oop), ("in-place", inp)):
            if t is not None and t.wrong is not None and t.wrong > 0:
                raise NcclTestsError(f"{where}: {half} #wrong = {t.wrong:g} at size {int(size)} B: nccl-tests found "
                                     f"wrong results; a run with wrong results is not a measurement")
        run.rows.append(Row(int(size), int(count), toks[2], oop, inp, i))
    if run is not None and run.rows and not oob_seen:
        run.notes.append(f"{NO_FOOTER} after line {run.rows[-1].line}: the log may be cut after its last "
                         f"complete row")
    _finish(run, runs, path, op_hint)
    if not runs:
        raise NcclTestsError(f"{path}: nothing parsable: no nccl-tests result rows (expected lines like "
                             f"'  1048576  262144  float  sum  -1  12.3  85.2  149.1  0  12.1 ...' under a "
                             f"'#  size  count  type ...' header)")
    return runs


def _json_timing(d, where: str) -> Timing | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise NcclTestsError(f"{where}: expected an object with time/alg_bw/bus_bw/nwrong, got {brief(d)}")
    t = d.get("time", d.get("cpu_time"))
    vals = [t, d.get("alg_bw"), d.get("bus_bw")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in vals):
        raise NcclTestsError(f"{where}: expected finite numbers for time, alg_bw, bus_bw, got {vals}")
    _check_timing_values(*vals, where)
    w = d.get("nwrong")
    return Timing(float(t) * 1e-6, float(vals[1]) * 1e9, float(vals[2]) * 1e9,
                  None if w is None or isinstance(w, str) else float(w))


def _nccl_code(code: int) -> str:
    """NCCL_VERSION_CODE as a dotted version (2.20.3 = 22003; before 2.9: 1000 x major + 100 x minor + patch)."""
    if code >= 10000:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


def _nccl_version(code, path: str) -> str | None:
    """A -J file's nccl_version (NCCL_VERSION_CODE) as a dotted version; None where it records none."""
    if code is None:
        return None
    if not isinstance(code, int) or isinstance(code, bool) or code < 1000:
        raise NcclTestsError(f"{path}: nccl_version: expected NCCL_VERSION_CODE, a whole number such as 22902 for "
                             f"2.29.2, got {brief(code, 40)}")
    return _nccl_code(code)


def parse_json(text: str, path: str = "<json>", op_hint: str | None = None) -> list[Run]:
    """One run from an nccl-tests ``-J`` file."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NcclTestsError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}): truncated -J output?") from None
    if not isinstance(d, dict) or "results" not in d:
        raise NcclTestsError(f"{path}: expected an nccl-tests -J object with 'results', got keys "
                             f"{sorted(d) if isinstance(d, dict) else type(d).__name__}")
    args = d.get("args") or []
    if not isinstance(args, list):
        raise NcclTestsError(f"{path}: args: expected the command line as a list of strings, got {brief(args, 80)}")
    op = _op_from_binary(str(args[0])) if args else None
    cfg = d.get("config") or {}
    if not isinstance(cfg, dict):
        raise NcclTestsError(f"{path}: config: expected an object (devices, graph, ...), got {brief(cfg, 80)}")
    devs = cfg.get("devices") or []
    if not isinstance(devs, list) or not all(isinstance(x, dict) for x in devs):
        raise NcclTestsError(f"{path}: config.devices: expected a list of objects (hostname, device_info, ...), got "
                             f"{brief(devs, 80)}")
    run = Run(source=path, op=op or op_hint or "", ranks=0, hosts=[str(x.get("hostname", "")) for x in devs],
              rows=[], fmt="json", devices=[str(x.get("device_info", "")).strip() for x in devs],
              nccl_version=_nccl_version(d.get("nccl_version"), path),
              graph=cfg.get("graph") if isinstance(cfg.get("graph"), int) else None)
    if not isinstance(d["results"], list):
        raise NcclTestsError(f"{path}: results: expected a list, got {type(d['results']).__name__}")
    for i, r in enumerate(d["results"]):
        where = f"{path}: results[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("size"), int):
            raise NcclTestsError(f"{where}: expected an object with an integer size, got {brief(r, 80)}")
        oop, inp = _json_timing(r.get("out_of_place"), where + ".out_of_place"), _json_timing(r.get("in_place"), where + ".in_place")
        for half, t in (("out_of_place", oop), ("in_place", inp)):
            if t is not None and t.wrong is not None and t.wrong > 0:
                raise NcclTestsError(f"{where}.{half}.nwrong = {t.wrong:g}: nccl-tests found wrong results")
        count = r.get("count", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise NcclTestsError(f"{where}.count: expected a whole number of elements >= 0, got {brief(count, 40)}")
        run.rows.append(Row(int(r["size"]), count, str(r.get("type", "")), oop, inp, i))
    errors = d.get("errors")
    if isinstance(errors, list) and errors:
        raise NcclTestsError(f"{path}: errors = {str(errors)[:200]}: nccl-tests reported errors in this run")
    oob = d.get("out_of_bounds")
    # jsonBool writes the strings "true"/"false" (util.cu), older writers real booleans.
    if isinstance(oob, dict) and (oob.get("count", 0) or oob.get("okay") in (False, "false")):
        raise NcclTestsError(f"{path}: out_of_bounds = {oob}: nccl-tests found wrong results")
    if oob is None:
        run.notes.append("no out_of_bounds object: the run may have stopped early")
    avg = d.get("average_bus_bandwidth")
    if isinstance(avg, dict) and isinstance(avg.get("bandwidth"), (int, float)):
        run.avg_busbw_bytes_per_s = float(avg["bandwidth"]) * 1e9
    out: list[Run] = []
    _finish(run, out, path, op_hint)
    if not out:
        raise NcclTestsError(f"{path}: nothing parsable: 'results' is empty")
    return out


def read_collectives_csv(path: str, device_type: str | None = None) -> list[Run]:
    """accelcal's own collectives CSV: one Run per (op, scope, group), the series the profile fit uses."""
    from accelcal.calibrate.fit import median_over_repeats, select_collective_series
    from accelcal.results import read_results

    df = read_results([path])
    df = df[(df["status"] == "ok") & df["median_s"].notna()]
    if "figure" in df:
        df = df[df["figure"] == "max_over_ranks"]
    if not len(df):
        raise NcclTestsError(f"{path}: nothing parsable: no ok max_over_ranks collective rows")
    if "scope" not in df:
        df = df.assign(scope=SCOPES[0])
    dt = device_type or ("cpu" if "backend" in df and df["backend"].astype(str).str.contains("gloo").all() else "cuda")
    runs = []
    for (op, scope, gs), g in df.groupby(["op", "scope", "group_size"]):
        if op not in BUSBW_FACTORS:
            continue
        g, _, dtype = select_collective_series(g, dt)
        g = median_over_repeats(g)
        rows = [Row(int(s), 0, str(dtype), None, Timing(float(t), None, None, None), k)
                for k, (s, t) in enumerate(zip(g["size_bytes"], g["median_s"]))]
        n_nodes = 2 if scope == SCOPES[1] else 1
        runs.append(Run(source=path, op=str(op), ranks=int(gs), hosts=[], rows=rows, fmt="accelcal-csv",
                        dtype=str(dtype), notes=[f"accelcal series: {scope}, group {int(gs)}"]))
        runs[-1].hosts = [f"node{k % n_nodes}" for k in range(int(gs))] if n_nodes > 1 else []
    if not runs:
        raise NcclTestsError(f"{path}: nothing parsable: no known collective in the CSV")
    return runs


def read_runs(paths: Iterable[str | os.PathLike], op: str | None = None) -> list[Run]:
    """Every run in every file (text, .json, .csv), with the file's own op hint from its name."""
    out: list[Run] = []
    for p in paths:
        path = os.fspath(p)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} does not exist")
        op = BINARY_OPS.get(op, op) if op is not None else None  # nccl-tests' own stems (alltoall, sendrecv) too
        hint = op or op_from_filename(path)
        if op is not None and op not in BUSBW_FACTORS:
            raise ValueError(f"--op {op!r}: expected one of {sorted(BUSBW_FACTORS)} (or an nccl-tests binary's stem: "
                             f"{', '.join(k for k, v in BINARY_OPS.items() if k != v)})")
        suffix = Path(path).suffix.lower()
        if suffix == ".csv":
            out += read_collectives_csv(path)
            continue
        # Logs are ASCII, but a terminal capture may hold stray bytes: decode leniently after the bounded read.
        data = read_bytes(path, what="nccl-tests log", max_bytes=MAX_LOG_BYTES)
        text = data.decode("utf-8", errors="replace")
        if b"\x00" in data or text.count("\ufffd") > max(8, len(text) // 100):
            raise NcclTestsError(f"{path}: binary data, not a text log (NUL bytes or undecodable bytes); expected the "
                                 f"text an nccl-tests binary prints (e.g. all_reduce_perf ... > log.txt) or its -J JSON")
        runs = parse_json(text, path, hint) if suffix == ".json" or text.lstrip().startswith("{") else \
            parse_text(text, path, hint)
        said = sorted({r.op for r in runs if r.op != op})
        if op is not None and said:
            raise ValueError(f"--op {op}: {path} names its own collective, {', '.join(said)} (its '# Collective test "
                             f"starting' line or JSON); --op is for logs that do not say: leave it out")
        out += runs
    return out
