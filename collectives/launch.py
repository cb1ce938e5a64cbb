"""Start N local ranks of the collective sweep (or join an existing torchrun/Slurm job) and collect the results.

    from accelcal.collectives.launch import run_sweep
    df = run_sweep(2, device_type="cpu", preset="quick", out_dir="results/")
    df[["op", "dtype", "size_bytes", "group_size", "mode", "median_s", "busbw_bytes_per_s"]]

Locally, the ranks are ``python -m accelcal.collectives.worker`` processes
rendezvousing on 127.0.0.1 at a free port (or ``master_port``, else
$MASTER_PORT).  The launcher binds the rendezvous port itself and hands the
listening socket to rank 0, so a port another sweep holds is a
:class:`~accelcal.collectives.distenv.PortTaken` error before any rank starts,
and gloo is pinned to the loopback interface.  The ranks are tied to the
launcher (accelcal.guardian): SIGTERM, SIGKILL or any other end of the
launcher ends every rank within about a second, and rank 0 removes the
staging and log folders if the launcher could not.  The launcher
owns the hard outer deadline: when it passes, or when any rank exits non-zero,
every rank is killed and a :class:`SweepError` names the cause (the first rank
to fail and its message).  Rank 0 writes into a staging folder and the files
are moved into ``out_dir`` only after every rank exited 0, so a failed sweep
leaves no result file.  When this process is already one rank of a
torchrun/Slurm job (RANK and WORLD_SIZE set), the sweep runs in-process.
This module imports no torch on the local path.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from accelcal.results import STATUS_SKIPPED, read_results

from accelcal.guardian import CLEANUP_ENV, child_preexec, parent_env, raise_if_terminated

from .distenv import bind_listen_socket, from_environ, in_distributed_env, is_loopback, parse_port, pin_loopback_env
from .options import SweepOptions

__all__ = ["SweepError", "check_local_launch", "run_sweep"]

_SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}

MAX_RANKS_PER_CORE = 8
"""More CPU ranks per core than this are refused (above 2 per core a warning says the timings measure the
scheduler): each rank is a python process holding torch, a few hundred MB."""


class SweepError(RuntimeError):
    """The sweep did not finish on every rank; the message names the first cause."""


@dataclass
class _Rank:
    rank: int
    proc: subprocess.Popen
    log: Path
    exit_time: float | None = None
    killed_by_launcher: bool = False

    def error_line(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        lines = [ln for ln in text.splitlines() if ln.strip()]
        errs = [ln for ln in lines if ": error: " in ln]
        if errs:
            return errs[-1].split(": error: ", 1)[1]
        return lines[-1][:300] if lines else "(no output)"

    def describe(self) -> str:
        rc = self.proc.returncode
        if self.killed_by_launcher:
            return f"rank {self.rank}: stopped by the launcher"
        if rc is not None and rc < 0:
            return f"rank {self.rank} died: killed by signal {_SIGNAL_NAMES.get(-rc, -rc)}"
        return f"rank {self.rank} exited with code {rc}: {self.error_line()}"


def _kill(ranks: list[_Rank]) -> None:
    for r in ranks:
        if r.proc.poll() is None:
            r.killed_by_launcher = True
            try:
                os.killpg(r.proc.pid, signal.SIGKILL)  # each rank leads its own process group
            except ProcessLookupError:
                pass
    for r in ranks:
        try:
            r.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def run_sweep(nproc: int, device_type: str = "cpu", backend: str | None = None, preset: str = "quick",
              out_dir: str | os.PathLike = "results", sizes: list[int] | tuple[int, ...] | None = None,
              ops: list[str] | tuple[str, ...] | None = None, dtypes: list[str] | tuple[str, ...] | None = None,
              timeout_s: float | None = None, progress: Callable[[str], object] | None = print,
              pg_timeout_s: float = 60.0, master_port: int | None = None, stem: str = "collectives",
              host: str = "127.0.0.1", orphan_cleanup: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """Run the collective sweep on ``nproc`` ranks and return its records (also written to ``out_dir``).

    ``timeout_s`` is the hard outer deadline for the whole sweep (default: the
    preset's); ``pg_timeout_s`` the process-group timeout each collective gets.
    ``host`` is the address the rendezvous listens on: loopback by default; any
    other address exposes the store to the network (trusted networks only).
    ``orphan_cleanup``: more folders rank 0 removes if this process is killed
    (a caller's partial raw folder; see accelcal.guardian for which names qualify).
    """
    opts = SweepOptions(device_type=device_type, backend=backend, preset=preset,
                        sizes_bytes=tuple(sizes) if sizes else None, ops=tuple(ops or ()), dtypes=tuple(dtypes or ()),
                        out_dir=str(out_dir), stem=stem, pg_timeout_s=pg_timeout_s, deadline_s=timeout_s)
    if in_distributed_env():
        from .worker import RankError, run_rank

        denv = from_environ()
        if nproc and nproc != denv.world_size:
            raise ValueError(f"nproc={nproc} but the launcher's WORLD_SIZE={denv.world_size}; drop --nproc under torchrun/srun")
        try:
            return run_rank(denv, opts, progress=progress)
        except RankError as exc:
            raise SweepError(f"rank {denv.rank}: {exc}") from None
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    check_local_launch(nproc, device_type, backend)
    return _launch_local(nproc, opts, progress, master_port, host, tuple(orphan_cleanup))


def check_local_launch(nproc: int, device_type: str, backend: str | None = None) -> None:
    """Bad input before any rank starts (``accelcal calibrate`` calls it before its kernels too): more CPU ranks
    than MAX_RANKS_PER_CORE per core, a device type this torch cannot use or with fewer devices than ranks, or a
    backend it does not have (the ranks would each fail with it, which reads as a failed measurement)."""
    import torch

    from .worker import resolve_backend

    cores = os.cpu_count() or 1
    if device_type == "cpu" and nproc > MAX_RANKS_PER_CORE * cores:
        raise ValueError(f"--nproc {nproc}: more than {MAX_RANKS_PER_CORE} ranks per CPU core ({MAX_RANKS_PER_CORE} x "
                         f"{cores} core(s) = {MAX_RANKS_PER_CORE * cores}); each rank is a python process with torch, "
                         f"and so many would measure the scheduler and exhaust memory")
    if device_type != "cpu":
        mod = getattr(torch, device_type, None)
        if mod is None or not hasattr(mod, "is_available"):
            raise ValueError(f"--device-type {device_type!r}: torch knows no such device type (cpu, cuda, xpu, ...)")
        if not mod.is_available():
            raise ValueError(f"--device-type {device_type}: no {device_type} device is available to this torch build")
        count = getattr(mod, "device_count", lambda: nproc)()
        if nproc > count:
            raise ValueError(f"--nproc {nproc}: {device_type} has {count} device(s) here; one rank per device")
    resolve_backend(backend, device_type)


def _launch_local(nproc: int, opts: SweepOptions, progress: Callable[[str], object] | None,
                  master_port: int | None, host: str = "127.0.0.1", orphan_cleanup: tuple[str, ...] = ()) -> pd.DataFrame:
    from accelcal.preflight import check_dir

    if master_port is None and os.environ.get("MASTER_PORT"):
        master_port = parse_port(os.environ["MASTER_PORT"], "MASTER_PORT (from the environment)")
    elif master_port is not None:
        master_port = parse_port(master_port, "--port")
    cores = os.cpu_count() or 1
    if opts.device_type == "cpu" and nproc > 2 * cores and progress:
        progress(f"collectives: warning: --nproc {nproc} ranks on {cores} CPU core(s) ({nproc / cores:.0f} per core): "
                 f"timings will measure the scheduler, and start-up may hit the deadline")
    out_dir = check_dir(opts.out_dir, what="--out", need_bytes=16 * 2**20)
    # The launcher holds the port from here until rank 0 owns it: a second sweep on the same port fails now, before
    # any --out folder is made.
    listener = bind_listen_socket(host, master_port or 0)
    master_port = int(listener.getsockname()[1])
    made_out_dir = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except BaseException:
        listener.close()
        raise
    # Staging inside out_dir: same file system, so moving the files in is an atomic rename.
    staging = Path(tempfile.mkdtemp(prefix=".collectives-staging-", dir=out_dir))
    logs = Path(tempfile.mkdtemp(prefix="accelcal-collectives-logs-"))
    deadline_s = opts.deadline()
    # The ranks get a slightly later deadline of their own so the launcher's fires first and names the cause.
    staged = SweepOptions(**{**opts.__dict__, "out_dir": str(staging), "deadline_s": deadline_s + 5})
    base_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "GROUP_RANK")}
    base_env.update(MASTER_ADDR=host, MASTER_PORT=str(master_port), WORLD_SIZE=str(nproc),
                    LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK="0", ACCELCAL_LAUNCHER="accelcal", PYTHONUNBUFFERED="1",
                    ACCELCAL_SWEEP_ID=f"{os.getpid()}-{time.time_ns()}", **parent_env())
    from accelcal.kernels.environment import COMMAND_ENV, command_line

    base_env[COMMAND_ENV] = command_line()  # the ranks' provenance names the user's command, not the worker's
    base_env[CLEANUP_ENV] = os.pathsep.join([str(staging), str(logs), *map(str, orphan_cleanup)])
    pin_loopback_env(base_env, host)
    ranks: list[_Rank] = []
    t0 = time.monotonic()
    ok = False
    try:
        for r in range(nproc):
            log = logs / f"rank{r}.log"
            env = {**base_env, "RANK": str(r), "LOCAL_RANK": str(r)}
            fds: tuple[int, ...] = ()
            if r == 0:
                env["ACCELCAL_LISTEN_FD"] = str(listener.fileno())
                fds = (listener.fileno(),)
            with open(log, "wb") as fh:
                proc = subprocess.Popen([sys.executable, "-m", "accelcal.collectives.worker", *staged.to_argv()],
                                        env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, pass_fds=fds, preexec_fn=child_preexec)
            ranks.append(_Rank(r, proc, log))
            if r == 0:
                listener.close()  # rank 0 has its copy; ours would keep the port after rank 0 exits
            raise_if_terminated()
        if progress:
            scope = "" if is_loopback(host) else " (NOT loopback: the store is reachable from the network)"
            progress(f"collectives: started {nproc} rank(s) on {host}:{master_port}{scope}, deadline {deadline_s:g} s")
        _supervise(ranks, deadline_s, t0, progress)
        wrong = ranks[0].proc.returncode == 3
        files = sorted(staging.iterdir())
        if not files:
            raise SweepError(f"every rank exited 0 but rank 0 wrote no result files into {staging}")
        staged_df = read_results([staging / f"{opts.stem}.csv"])
        if staged_df.empty or set(staged_df["status"]) <= {STATUS_SKIPPED}:
            # every case skipped (e.g. a dtype the backend lacks): nothing measured, and an earlier run's files in
            # --out are not replaced by an empty set
            why = sorted({str(r) for r in staged_df["reason"].dropna() if str(r)})
            raise SweepError(f"nothing measured: {len(staged_df)} case(s), every one skipped"
                             + (f" ({'; '.join(why[:3])})" if why else "") + f"; {out_dir} is left as it was")
        for f in files:
            os.replace(f, out_dir / f.name)
        if progress:
            progress(f"collectives: wrote {', '.join(str(out_dir / f.name) for f in files)}")
        df = staged_df  # the same records, moved in by rename
        if wrong and progress:
            progress("collectives: some cases gave WRONG results; see the failed rows")
        ok = True
        return df
    finally:
        listener.close()
        _kill(ranks)
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
        if not ok and made_out_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed or stopped sweep leaves no empty --out folder behind
        left = [str(p) for p in (staging, logs) if p.exists()]
        if left and not ok:
            print(f"accelcal collectives: could not remove {', '.join(left)}; delete by hand", file=sys.stderr)


def _supervise(ranks: list[_Rank], deadline_s: float, t0: float, progress: Callable[[str], object] | None) -> None:
    pos = 0
    first_fail: float | None = None
    while True:
        now = time.monotonic()
        if progress:
            pos = _relay(ranks[0].log, pos, progress)
        for r in ranks:
            if r.exit_time is None and r.proc.poll() is not None:
                r.exit_time = now
                if r.proc.returncode not in (0, 3) and first_fail is None:
                    first_fail = now
        if all(r.exit_time is not None for r in ranks):
            break
        # Give the other ranks a moment to report their own view, then stop them.
        if first_fail is not None and now - first_fail > 2.0:
            _kill(ranks)
            break
        raise_if_terminated()
        if now - t0 > deadline_s:
            running = [r.rank for r in ranks if r.proc.poll() is None]
            _kill(ranks)
            tails = "; ".join(f"rank {r.rank}: {r.error_line()}" for r in ranks if r.rank in running)
            raise SweepError(f"hard deadline of {deadline_s:g} s passed with rank(s) {running} still running "
                             f"(hung or too slow); every rank was killed and no results were written. Last output: {tails}")
        time.sleep(0.05)
    if progress:
        _relay(ranks[0].log, pos, progress)
    failed = [r for r in ranks if r.proc.returncode not in (0, 3)]
    if failed:
        failed.sort(key=lambda r: (r.killed_by_launcher, r.exit_time or float("inf")))
        cause = failed[0]
        others = "; ".join(r.describe() for r in failed[1:])
        raise SweepError(f"collective sweep failed after {time.monotonic() - t0:.1f} s, no results written. "
                         f"First failure: {cause.describe()}" + (f". Then: {others}" if others else ""))


def _relay(log: Path, pos: int, progress: Callable[[str], object]) -> int:
    try:
        with open(log, "rb") as fh:
            fh.seek(pos)
            data = fh.read()
    except FileNotFoundError:
        return pos
    end = data.rfind(b"\n")
    if end < 0:
        return pos
    for line in data[: end + 1].decode(errors="replace").splitlines():
        if line.startswith(("[", "collectives:")):
            progress(line)
    return pos + end + 1
