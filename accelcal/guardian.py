"""Tie rank processes to the accelcal process that started them: any end of the parent ends every rank.

    # parent (launcher), before starting ranks:
    from accelcal.guardian import install_termination_handler, child_preexec, parent_env
    install_termination_handler()            # SIGTERM/SIGHUP unwind like Ctrl-C, so `finally` cleans up
    subprocess.Popen(cmd, preexec_fn=child_preexec, start_new_session=True, env={**env, **parent_env()})
    # rank (worker), first thing:
    from accelcal.guardian import watch_parent
    watch_parent(cleanup=[staging_dir, log_dir])

Three layers, because each alone has a gap:

1. ``install_termination_handler`` turns SIGTERM and SIGHUP in the parent into
   :class:`Terminated` (a ``KeyboardInterrupt``), so the launcher's ``finally``
   blocks kill the ranks and remove staging and log folders exactly as after Ctrl-C.
2. ``PR_SET_PDEATHSIG`` (Linux, via ctypes ``prctl``): the kernel signals the
   rank the moment its parent dies, SIGKILL included.
3. ``watch_parent``: a daemon thread polls ``os.getppid()`` (portable; it also
   covers a rank whose main thread is stuck inside a collective) and, when
   the parent is gone, removes the folders it was told to and exits with
   :data:`EXIT_ORPHANED`.  Rank 0 gets SIGTERM as its death signal (so its
   handler or the thread can clean up first), other ranks SIGKILL.

The death signal belongs to the *thread* that started the rank: start ranks
from a thread that lives as long as the run (the CLI's main thread does).
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

__all__ = ["Terminated", "raise_if_terminated", "EXIT_ORPHANED", "PARENT_PID_ENV", "CLEANUP_ENV",
           "install_termination_handler", "set_parent_death_signal", "child_preexec", "parent_env", "watch_parent"]

EXIT_ORPHANED = 125
"""Exit code of a rank that stopped because the process that started it was gone."""

PARENT_PID_ENV = "ACCELCAL_PARENT_PID"
"""Environment variable naming the pid a rank must outlive no longer than a poll interval."""

CLEANUP_ENV = "ACCELCAL_ORPHAN_CLEANUP"
"""os.pathsep-separated folders an orphaned rank removes before exiting (staging and log folders)."""

_CLEANABLE_PREFIXES = (".collectives-staging-", "accelcal-collectives-logs-", "accelcal-validate-", ".partial-")
"""Only folders accelcal itself created with these name prefixes are ever removed by an orphan..."""

_CLEANABLE_RAW = re.compile(r".+\.raw-\d{8}T\d{6}Z")
"""... or a calibrate run's default raw folder, ``<stem>.raw-<UTC stamp>`` (passed only when that run created it)."""

_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM or SIGHUP; raised where Ctrl-C would be, so the same clean-up runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_pending: int | None = None
"""The signal the termination handler got, if any.  Its exception can be lost when the signal lands inside code
that swallows exceptions (an at-fork hook while a rank is being started prints 'Exception ignored'), and the
handler ignores later signals: loops that start or wait on ranks call :func:`raise_if_terminated`."""


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` if the termination handler has run (its own raise may have been swallowed)."""
    if _pending is not None:
        raise Terminated(_pending)


def install_termination_handler() -> bool:
    """SIGTERM/SIGHUP raise :class:`Terminated` in the main thread; False when not callable here (not main thread)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        return False
    _pending = None  # a signal an earlier command in this process handled is not this one's

    def handler(signum: int, _frame: object) -> None:
        global _pending
        # Once is enough: a second SIGTERM during clean-up must not interrupt the clean-up itself.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        _pending = signum
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, handler)
    return True


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def child_preexec() -> None:
    """``preexec_fn`` for rank processes: SIGTERM on parent death (the rank's handler or watcher then cleans up)."""
    set_parent_death_signal(signal.SIGTERM)


def parent_env() -> dict[str, str]:
    """Environment entries that let a rank watch this process."""
    return {PARENT_PID_ENV: str(os.getpid())}


def _cleanup(paths: Iterable[str]) -> None:
    for p in paths:
        if p and (Path(p).name.startswith(_CLEANABLE_PREFIXES) or _CLEANABLE_RAW.fullmatch(Path(p).name)):
            shutil.rmtree(p, ignore_errors=True)


def watch_parent(parent_pid: int | None = None, cleanup: Iterable[str] | None = None, interval_s: float = 0.2,
                 death_signal: int = signal.SIGTERM) -> threading.Thread | None:
    """Exit (code EXIT_ORPHANED) within ``interval_s`` of the parent's end, after removing ``cleanup`` folders.

    ``parent_pid`` defaults to $ACCELCAL_PARENT_PID, ``cleanup`` to $ACCELCAL_ORPHAN_CLEANUP; without a
    parent pid (started by torchrun/srun) nothing is armed and None is returned.
    """
    if parent_pid is None:
        raw = os.environ.get(PARENT_PID_ENV, "")
        if not raw.isdigit():
            return None
        parent_pid = int(raw)
    paths = list(cleanup) if cleanup is not None else [p for p in os.environ.get(CLEANUP_ENV, "").split(os.pathsep) if p]

    def orphaned(reason: str) -> None:
        _cleanup(paths)
        try:
            sys.stderr.write(f"accelcal rank (pid {os.getpid()}): error: {reason}; exiting\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - the log folder may be gone already
            pass
        os._exit(EXIT_ORPHANED)

    set_parent_death_signal(death_signal)
    if death_signal == signal.SIGTERM and threading.current_thread() is threading.main_thread():
        def on_term(*_: object) -> None:
            # The death signal may come while the parent is still being torn down: when its first thread exits,
            # the kernel signals and re-parents us to a sibling thread, so getppid() still names it for a moment.
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                if os.getppid() != parent_pid:
                    orphaned(f"the launcher (pid {parent_pid}) is gone")
                time.sleep(0.05)
            # The launcher is alive: it stops this rank and reports; leave its folders to it.
            sys.stderr.write(f"accelcal rank (pid {os.getpid()}): error: got SIGTERM; exiting\n")
            os._exit(128 + signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_term)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        orphaned(f"the launcher (pid {parent_pid}) is gone")

    def at_exit() -> None:
        # A rank whose main thread held the GIL inside a collective when the parent died ends through its
        # normal error path (the peer is gone); the folders must still go.
        if os.getppid() != parent_pid:
            _cleanup(paths)

    atexit.register(at_exit)

    def loop() -> None:
        ev = threading.Event()
        while not ev.wait(interval_s):
            if os.getppid() != parent_pid:
                orphaned(f"the launcher (pid {parent_pid}) is gone")

    t = threading.Thread(target=loop, name="accelcal-parent-watch", daemon=True)
    t.start()
    return t
