"""Run multi-rank validation cases (TP=k, TP=1 x DP=k) on k local ranks.

    from accelcal.validate.configs import Case
    from accelcal.validate.layers import LayerDims
    from accelcal.validate.tp_worker import run_rank_cases
    dims = LayerDims(hidden_size=256, heads=8, kv_heads=4, head_dim=32, ffn_size=768)
    results = run_rank_cases([Case("tiny", "decode", 8, 1, 512, tp=2)], {"tiny": dims}, nproc=2,
                             device_type="cpu", dtype="fp32", preset="quick")
    print(results[0]["measured_s"])

Ranks are spawned here (gloo on the CPU, nccl on GPUs) with the same pattern
as the collectives launcher: rendezvous on 127.0.0.1 only (rank 0 binds a
free loopback port itself and publishes it to the others through the run's
temporary folder, so no other process can take it in between; gloo is pinned
to the loopback interface), ranks tied to this process (accelcal.guardian:
they end within a second of it, SIGKILL included), short
process-group timeouts, a hard outer deadline that terminates every rank, any
rank failing makes the whole run fail, and only rank 0 writes the results
(atomically, to a temporary file the parent reads).  The TP layer itself calls
``dist.all_reduce`` inside the timed forward; there is no second collective
harness here.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Callable

__all__ = ["run_rank_cases", "DEFAULT_DEADLINE_S"]

DEFAULT_DEADLINE_S = 300.0
"""Hard limit for one multi-rank run, start-up included."""

PG_TIMEOUT_S = 60.0
"""Process-group operation timeout: a peer that stops answering fails the run within this."""


def _rendezvous(rank: int, nproc: int, folder: Path, timeout_s: float):
    """A TCPStore on 127.0.0.1: rank 0 listens on a port it bound itself and writes it to ``folder/port``."""
    import torch.distributed as dist

    from accelcal.atomic import atomic_write_text
    from accelcal.collectives.distenv import bind_listen_socket

    timeout = _dt.timedelta(seconds=timeout_s)
    port_file = folder / "port"
    if rank == 0:
        sock = bind_listen_socket("127.0.0.1", 0)
        port = int(sock.getsockname()[1])
        store = dist.TCPStore("127.0.0.1", port, nproc, is_master=True, timeout=timeout,
                              master_listen_fd=sock.fileno(), wait_for_workers=False)
        atomic_write_text(port_file, str(port))
        return store, sock
    end = time.monotonic() + timeout_s
    while not port_file.exists():
        if time.monotonic() > end:
            raise RuntimeError(f"rank {rank}: rank 0 did not open the rendezvous within {timeout_s:g} s")
        time.sleep(0.02)
    port = int(port_file.read_text())
    return dist.TCPStore("127.0.0.1", port, nproc, is_master=False, timeout=timeout), None


def _rank_main(rank: int, nproc: int, parent_pid: int, device_type: str, backend: str, job: dict,
               out_path: str) -> None:
    # Runs in a spawned process: imports torch here, not in the parent's import of this module.
    import signal

    from accelcal.collectives.distenv import pin_loopback_env
    from accelcal.guardian import watch_parent

    # End with the parent (rank 0 removes the run's temporary folder if the parent could not).
    watch_parent(parent_pid, cleanup=[str(Path(out_path).parent)] if rank == 0 else [],
                 death_signal=signal.SIGTERM if rank == 0 else signal.SIGKILL)
    pin_loopback_env(os.environ, "127.0.0.1")  # gloo's pair sockets on lo, not on the hostname's address

    import torch
    import torch.distributed as dist

    from accelcal.atomic import atomic_write_text
    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.timing import TimingConfig

    from .configs import Case
    from .layers import LayerDims
    from .measure import check_sharded_output, measure_case_ranks

    if device_type == "cpu":
        # Each rank stands for one device: the profile's threads per device when it says, else an
        # even split of the cores so ranks do not fight for them.
        torch.set_num_threads(job.get("threads_per_rank") or max(1, (os.cpu_count() or 1) // nproc))
        device = resolve_device("cpu")
    else:
        device = resolve_device(f"{device_type}:{rank}")
        if device_type == "cuda":
            torch.cuda.set_device(rank)
    store, _sock = _rendezvous(rank, nproc, Path(out_path).parent, PG_TIMEOUT_S)
    dist.init_process_group(backend, store=store, rank=rank, world_size=nproc,
                            timeout=_dt.timedelta(seconds=PG_TIMEOUT_S))
    try:
        cfg = TimingConfig.preset(job["preset"])
        dims = {name: LayerDims(**d) for name, d in job["dims"].items()}
        # Pre-flight: every rank must run the same cases, or the all-reduces pair up wrongly.
        digest = torch.tensor([float(zlib.crc32(json.dumps(job["cases"], sort_keys=True).encode()))],
                              dtype=torch.float64, device=device.torch)
        lo, hi = digest.clone(), digest.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        if lo.item() != hi.item():
            raise RuntimeError(f"rank {rank}: ranks disagree on the validation cases")
        rows = []
        for cd in job["cases"]:
            case = Case(**cd)
            if case.ranks != nproc:
                raise ValueError(f"case {case.name} needs tp({case.tp}) * dp({case.dp}) = {case.ranks} ranks, run has {nproc}")
            check_err = check_sharded_output(case, dims[case.model], device, rank)
            m = measure_case_ranks(case, dims[case.model], job["dtype"], device, cfg, rank)
            rows.append({"case": cd, "check_max_abs_err": check_err, "measured_s": m.measured_s, "method": m.method, "n": m.stats.n,
                         "rel_iqr": m.stats.rel_iqr, "rotated_sets": m.rotated_sets, "warnings": list(m.warnings),
                         "samples_s": list(m.stats.samples_s)})
            if rank == 0 and job.get("progress"):
                # progress, like the parent's, on stderr: stdout carries the command's output (--format json)
                print(f"  [ranks={nproc}] {case.name}: {m.measured_s * 1e3:.3f} ms ({m.method}, n={m.stats.n})",
                      file=sys.stderr, flush=True)
        dist.barrier()
        if rank == 0:
            atomic_write_text(out_path, json.dumps({"rows": rows, "threads_per_rank": torch.get_num_threads()}))
    finally:
        dist.destroy_process_group()


def run_rank_cases(cases: list[Any], dims: dict[str, Any], nproc: int, device_type: str = "cpu", dtype: str = "fp32",
                   preset: str = "quick", backend: str | None = None, deadline_s: float = DEFAULT_DEADLINE_S,
                   progress: Callable[[str], None] | None = print,
                   threads_per_rank: int | None = None) -> dict[str, Any]:
    """Measure ``cases`` (each needing ``nproc`` ranks) on ``nproc`` spawned ranks; rank 0's rows.

    ``threads_per_rank`` sets each CPU rank's torch threads (None: cores // nproc).

    Raises RuntimeError when a rank fails or the deadline passes (every rank is
    then terminated); nothing is returned half-done.
    """
    import dataclasses

    import torch.multiprocessing as mp

    if nproc < 2:
        raise ValueError(f"--nproc must be >= 2 for multi-rank cases, got {nproc}")
    backend = backend or ("gloo" if device_type == "cpu" else "nccl")
    job = {
        "cases": [c.to_dict() for c in cases],
        "dims": {name: dataclasses.asdict(d) for name, d in dims.items()},
        "dtype": dtype,
        "preset": preset,
        "progress": progress is not None,
        "threads_per_rank": threads_per_rank,
    }
    with tempfile.TemporaryDirectory(prefix="accelcal-validate-") as tmp:
        out_path = str(Path(tmp) / "rank0.json")
        if progress:
            progress(f"validate: starting {nproc} {backend} ranks on 127.0.0.1 (loopback) for {len(cases)} case(s)")
        ctx = mp.start_processes(_rank_main, args=(nproc, os.getpid(), device_type, backend, job, out_path),
                                 nprocs=nproc, join=False, start_method="spawn")
        deadline = time.monotonic() + deadline_s
        try:
            while not ctx.join(timeout=0.5):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"multi-rank validation passed its {deadline_s:.0f} s deadline; all ranks stopped")
        except BaseException as exc:  # Ctrl-C and SIGTERM (guardian.Terminated) included: no rank outlives us
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            for p in ctx.processes:
                p.join(5)
            if not isinstance(exc, Exception):
                raise
            if isinstance(exc, RuntimeError) and "deadline" in str(exc):
                raise
            raise RuntimeError(f"multi-rank validation failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}") from exc
        if not os.path.exists(out_path):
            raise RuntimeError("multi-rank validation ended without rank 0's results")
        from accelcal.safe_io import load_json

        return load_json(out_path, what="rank 0's validation results", expect=dict)
