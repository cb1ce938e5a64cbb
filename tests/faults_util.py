"""Helpers for the fault-injection tests (tests/test_faults*.py) and benchmarks/fault_table.py.

    from tests.faults_util import listening_sockets, start_sweep, wait_gone
    proc, out = start_sweep(tmp_path)
    pids = wait_for_ranks(proc)
    print(listening_sockets(pids))      # {("127.0.0.1", 41234), ...}

No torch: the sweep runs in child processes started through the real CLI.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_PROFILE = REPO / "profiles" / "nvidia-h100.yaml"
CPU_RAW = REPO / "profiles" / "cpu-amd-epyc-2core-raw"


def accelcal_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "accelcal", *args]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = []
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(st).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(st.split("/")[2]))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], bound_s: float) -> float:
    """Seconds until every pid is gone (zombies count as gone); raises AssertionError past ``bound_s``."""
    t0 = time.monotonic()
    while any(alive(p) for p in pids):
        if time.monotonic() - t0 > bound_s:
            raise AssertionError(f"ranks {[p for p in pids if alive(p)]} still running {bound_s} s after the parent ended")
        time.sleep(0.05)
    return time.monotonic() - t0


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in glob.glob(f"/proc/{pid}/fd/*"):
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def _hex_addr(h: str) -> str:
    if len(h) == 8:
        return ".".join(str(int(h[i:i + 2], 16)) for i in (6, 4, 2, 0))
    # IPv6: four little-endian 32-bit words
    words = [h[i:i + 8] for i in range(0, 32, 8)]
    raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
    import ipaddress

    return str(ipaddress.IPv6Address(raw))


def listening_sockets(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by ``pids`` (the kernel's socket table)."""
    inodes = set().union(*(_socket_inodes(p) for p in pids)) if pids else set()
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            f = ln.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A = LISTEN
                addr, port = f[1].split(":")
                out.add((_hex_addr(addr), int(port, 16)))
    return out


def start_sweep(out: Path, *extra: str) -> subprocess.Popen:
    """`accelcal bench collectives --nproc 2` long enough to be killed mid-run (output to out/../sweep.log)."""
    log = open(out.parent / "sweep.log", "wb")
    return subprocess.Popen(accelcal_cmd("bench", "collectives", "--nproc", "2", "--quick", "--out", str(out),
                                         "--ops", "all_reduce,all_gather", *extra),
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def wait_for_ranks(proc: subprocess.Popen, n: int = 2, timeout_s: float = 60.0, listening: bool = True) -> list[int]:
    """Pids of the ``n`` ranks once they run (and, with ``listening``, once rank 0 listens)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        kids = children(proc.pid)
        if len(kids) >= n and (not listening or listening_sockets(kids)):
            return kids
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (rc {proc.returncode}) before its ranks were seen")
        time.sleep(0.05)
    raise AssertionError(f"ranks did not start within {timeout_s} s")


def kill_and_measure(proc: subprocess.Popen, sig: int, bound_s: float) -> tuple[float, list[int], dict[str, str]]:
    """Send ``sig`` to the parent once its ranks run; seconds until every rank is gone, the ranks, rank 0's env."""
    ranks = wait_for_ranks(proc)
    time.sleep(1.0)  # inside the sweep proper, not start-up
    env = environ_of(min(ranks))
    os.kill(proc.pid, sig)
    took = wait_gone(ranks, bound_s)
    proc.wait(timeout=30)
    return took, ranks, env


def leftovers(out: Path, rank_env: dict[str, str]) -> list[str]:
    """Staging folders in ``out`` and the run's log/staging folders named in a rank's environment that still exist."""
    left = [str(p) for p in out.glob(".collectives-staging-*")] if out.exists() else []
    for p in rank_env.get("ACCELCAL_ORPHAN_CLEANUP", "").split(os.pathsep):
        if p and os.path.exists(p) and p not in left:
            left.append(p)
    return left


__all__ = ["accelcal_cmd", "alive", "children", "environ_of", "kill_and_measure", "leftovers", "listening_sockets",
           "start_sweep", "wait_for_ranks", "wait_gone", "REPO", "SAMPLE_PROFILE", "CPU_RAW", "signal"]
