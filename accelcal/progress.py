"""Progress for long sweeps: a bar with elapsed time and ETA on a terminal, one line per stage in a log.

    from accelcal.progress import StageProgress
    bar = StageProgress(quiet=args.quiet)          # tqdm bars on a TTY (stderr); plain lines otherwise
    bar.start("gemm", total=120)
    for case in cases:
        ...; bar.advance(f"m{m} n{n} k{k}")
    bar.close()                                     # "[kernels] gemm: 120 cases in 35.2 s (3 skipped)"

    run_sweep(..., progress=bar.lines("collectives"))   # "[i/n] ..." lines drive a bar, others pass through

On a terminal each stage gets a tqdm bar (case count, elapsed, ETA) and the
case text as its postfix; in a non-TTY log (``run_bench.sh`` tees to a file)
each stage prints one line when it ends (and, with ``log_every_s``, a
"done/total after N s" line at most that often while it runs, so a long stage
in a log is not silent; with ``quiet_below_s``, only a stage that ran at least
that long prints its closing line); ``quiet`` prints nothing.  Without
tqdm (it comes with the ``measure`` extra) the bar degrades to the log lines.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Callable, TextIO

__all__ = ["LOG_EVERY_S", "StageProgress"]

LOG_EVERY_S = 20.0
"""How often a long stage in a log (stderr not a terminal) reports its progress: the commands' common cadence."""

_CASE_LINE = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)")
"""A sweep's per-case line, ``[i/n] text`` (collectives/harness.py prints these)."""


class StageProgress:
    """One stage at a time: :meth:`start`, :meth:`advance` per case, :meth:`close` (or the next start)."""

    def __init__(self, prefix: str = "kernels", quiet: bool = False, stream: TextIO | None = None,
                 tty: bool | None = None, log_every_s: float | None = None, quiet_below_s: float = 0.0) -> None:
        self.prefix = prefix
        """Shown before the stage name in log lines."""
        self.log_every_s = log_every_s
        """Log mode: a progress line at most this often while a stage runs (None: only the closing line)."""
        self.quiet_below_s = quiet_below_s
        """Log mode: a stage that ends sooner than this prints no closing line (a plan or predict that answers in
        seconds leaves its log as it was; one that runs minutes says what it did)."""
        self._last_log = 0.0
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        """Bars on a terminal, one line per stage otherwise."""
        self._stage: str | None = None
        self._total = 0
        self._done = 0
        self._skipped = 0
        self._t0 = 0.0
        self._bar: Any = None

    def start(self, stage: str, total: int | None) -> None:
        """Open ``stage`` with ``total`` cases (None: unknown, no ETA); closes the stage before it."""
        self.close()
        self._stage, self._total, self._done, self._skipped = stage, int(total or 0), 0, 0
        self._t0 = self._last_log = time.perf_counter()
        if self.quiet or not self.tty:
            return
        try:
            from tqdm import tqdm
        except ModuleNotFoundError:
            self.tty = False  # no tqdm: fall back to the log lines
            return
        self._bar = tqdm(total=total or None, desc=f"{self.prefix} {stage}", unit="case", file=self.stream,
                         dynamic_ncols=True, leave=True)

    def advance(self, text: str = "", n: int = 1) -> None:
        self._done += n
        if self._bar is not None:
            self._bar.update(n)
            if text:
                self._bar.set_postfix_str(text[:60], refresh=False)
        elif self.log_every_s is not None and not self.quiet and self._stage is not None:
            now = time.perf_counter()
            if now - self._last_log >= self.log_every_s:
                self._last_log = now
                of = f"/{self._total}" if self._total else ""
                print(f"[{self.prefix}] {self._stage}: {self._done}{of} after {now - self._t0:.0f} s"
                      + (f" ({text[:60]})" if text else ""), file=self.stream, flush=True)

    def skipped(self) -> None:
        """Count a recorded skip of the current case (reported in the stage's closing line)."""
        self._skipped += 1

    def set_position(self, done: int, total: int, text: str = "") -> None:
        """Jump to ``done`` of ``total`` (for sweeps that report ``[i/n]`` themselves)."""
        if self._bar is not None and total and self._bar.total != total:
            self._bar.total = total
        if self._total != total:
            self._total = total
        self.advance(text, max(0, done - self._done))

    def write(self, line: str) -> None:
        """A line that is not a case (a note, a file written): above the bar, or straight to the log."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """End the current stage: close its bar, or print its one log line."""
        if self._stage is None:
            return
        elapsed = time.perf_counter() - self._t0
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self.quiet and elapsed >= self.quiet_below_s:
            of = f"/{self._total}" if self._total and self._total != self._done else ""
            skip = f" ({self._skipped} skipped)" if self._skipped else ""
            print(f"[{self.prefix}] {self._stage}: {self._done}{of} cases in {elapsed:.1f} s{skip}",
                  file=self.stream, flush=True)
        self._stage = None

    def counter(self, stage: str, after_s: float = 2.0) -> Callable[[int, int], None]:
        """A ``(done, total)`` callable for work that counts for itself (a simulation's finished requests): the
        stage opens once the work has run ``after_s`` seconds, so a quick run shows nothing, then follows each
        report.  Call :meth:`close` when the work returns."""
        t0 = time.perf_counter()

        def feed(done: int, total: int) -> None:
            if self._stage != stage:
                if time.perf_counter() - t0 < after_s:
                    return
                self.start(stage, total)
            self.set_position(done, total)
        return feed

    def lines(self, stage: str) -> Callable[[str], None]:
        """A ``progress`` callable for sweeps that print ``[i/n] text`` per case: those lines move a bar for
        ``stage``; any other line is written through.  Call :meth:`close` when the sweep returns."""
        def feed(line: str) -> None:
            m = _CASE_LINE.match(line)
            if m is None:
                self.write(line)
                return
            if self._stage != stage:
                self.start(stage, int(m.group(2)))
            self.set_position(int(m.group(1)), int(m.group(2)), m.group(3))
        return feed
