"""The per-rank entry point of the collective sweep.

    # one node, 8 GPUs:
    torchrun --standalone --nproc-per-node 8 -m accelcal.collectives.worker --device-type cuda --out results/
    # two nodes (run on each; trusted network only):
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m accelcal.collectives.worker --device-type cuda --out results/

``accelcal bench collectives --nproc N`` starts N of these itself on
127.0.0.1.  Each rank validates its environment (distenv), arms a hard
deadline (the process exits with code 124 when it passes), joins the process
group with an explicit short timeout, runs the harness, agrees with every
other rank that the sweep finished, and only then rank 0 writes the results
atomically.  ``destroy_process_group`` always runs.

Exit codes: 0 ok, 1 a collective failed (peer died, timed out), 2 bad
environment/options or ranks disagreeing on a case, 3 some case gave a wrong
result (the file is written, with failed rows), 124 deadline.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import socket
import sys
import threading
import time
from typing import Callable

from .distenv import DistEnv, DistEnvError, bind_listen_socket, from_environ
from .options import SweepOptions, add_worker_arguments

__all__ = ["main", "run_rank", "resolve_backend", "RankError"]

EXIT_OK, EXIT_COLLECTIVE, EXIT_CONFIG, EXIT_WRONG, EXIT_DEADLINE = 0, 1, 2, 3, 124


class RankError(RuntimeError):
    """A rank could not finish the sweep; ``exit_code`` says why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def resolve_backend(spec: str | None, device_type: str) -> str:
    """Pick the torch.distributed backend for ``device_type`` from ``gloo`` or ``cpu:gloo,cuda:nccl`` style specs."""
    import torch.distributed as dist

    if not spec:
        name = dist.Backend.default_device_backend_map.get(device_type)
        if not name:
            raise ValueError(f"torch has no default distributed backend for device type {device_type!r}; "
                             f"pass --backend (known map: {dict(dist.Backend.default_device_backend_map)})")
    elif ":" in spec:
        pairs = {}
        for item in spec.split(","):
            dev, _, be = item.strip().partition(":")
            if not dev or not be:
                raise ValueError(f"--backend {spec!r}: {item!r} is not device:backend (e.g. cpu:gloo,cuda:nccl)")
            pairs[dev] = be
        if device_type not in pairs:
            raise ValueError(f"--backend {spec!r} names no backend for device type {device_type!r}")
        name = pairs[device_type]
    else:
        name = spec
    if not dist.is_backend_available(name):
        raise ValueError(f"backend {name!r} is not available in this torch build (device type {device_type})")
    return name


def _arm_deadline(deadline_s: float, rank: int, phase: Callable[[], str]) -> threading.Timer:
    def fire() -> None:
        sys.stderr.write(f"accelcal collectives rank {rank}: error: hard deadline of {deadline_s:g} s passed "
                         f"during {phase()}; exiting\n")
        sys.stderr.flush()
        os._exit(EXIT_DEADLINE)

    t = threading.Timer(deadline_s, fire)
    t.daemon = True
    t.start()
    return t


def _explain(exc: BaseException, phase: str, opts: SweepOptions) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    low = str(exc).lower()
    if "timed out" in low or "timeout" in low:
        return (f"timed out after the {opts.pg_timeout_s:g} s process-group timeout waiting for other ranks "
                f"during {phase} ({text[:200]})")
    if any(k in low for k in ("connection closed", "connection reset", "broken pipe", "connection refused", "peer")):
        return f"lost the connection to another rank (it died or exited) during {phase} ({text[:200]})"
    return f"{type(exc).__name__} during {phase}: {text[:300]}"


def _init_process_group(denv: DistEnv, backend: str, device, timeout_s: float) -> None:
    import torch
    import torch.distributed as dist

    timeout = _dt.timedelta(seconds=timeout_s)
    kwargs = {"backend": backend, "timeout": timeout}
    if device.type != "cpu":
        kwargs["device_id"] = device.torch  # eager communicator set-up, required for graph capture
    if denv.agent_store:
        # torchrun's agent already hosts the store; env:// connects to it.
        dist.init_process_group(init_method="env://", rank=denv.rank, world_size=denv.world_size, **kwargs)
        return
    if denv.world_size == 1:
        dist.init_process_group(store=dist.HashStore(), rank=0, world_size=1, **kwargs)
        return
    sock = None
    if denv.rank == 0:
        fd = os.environ.get("ACCELCAL_LISTEN_FD", "")
        if fd.isdigit():
            # accelcal's launcher bound the port already (so no other sweep can take it in between).
            sock = socket.socket(fileno=int(fd))
        else:
            # Our own listening socket: loopback-only for single-node runs, and a busy port is a clear error.
            sock = bind_listen_socket(denv.master_addr, denv.master_port)
    t0 = time.monotonic()
    try:
        store = dist.TCPStore(denv.master_addr, denv.master_port, denv.world_size, is_master=denv.rank == 0,
                              timeout=timeout, master_listen_fd=sock.fileno() if sock else None, wait_for_workers=False)
    except (RuntimeError, OSError) as exc:
        raise RankError(f"cannot reach the rendezvous store at MASTER_ADDR={denv.master_addr} "
                        f"MASTER_PORT={denv.master_port}: gave up after {time.monotonic() - t0:.0f} s "
                        f"(timeout {timeout_s:g} s): {str(exc).splitlines()[0][:200]}", EXIT_COLLECTIVE) from None
    sweep_id = os.environ.get("ACCELCAL_SWEEP_ID")
    if sweep_id:
        # Ranks of one sweep share an id: a rank that reached another sweep's store (same port) says so at once.
        key = "accelcal/sweep_id"
        if denv.rank == 0:
            store.set(key, sweep_id)
        else:
            got = store.get(key).decode(errors="replace")
            if got != sweep_id:
                raise RankError(f"port {denv.master_port} taken by another sweep/process (its rendezvous answered "
                                f"with a different sweep id)", EXIT_CONFIG)
    dist.init_process_group(store=store, rank=denv.rank, world_size=denv.world_size, **kwargs)
    del torch


def run_rank(denv: DistEnv, opts: SweepOptions, progress: Callable[[str], object] | None = print):
    """Run this rank's part of the sweep; returns the result frame (every rank) or raises RankError."""
    import torch.distributed as dist

    from accelcal.kernels.device import resolve_device
    from accelcal.kernels.environment import capture_environment

    from .harness import CaseMismatch, Harness, parse_fault

    state: dict = {"phase": "start-up", "harness": None}

    def phase() -> str:
        return state["harness"].phase if state["harness"] is not None else state["phase"]

    timer = _arm_deadline(opts.deadline(), denv.rank, phase)
    harness = None
    try:
        try:
            fault = parse_fault(os.environ.get("ACCELCAL_FAULT"))
            backend = resolve_backend(opts.backend, opts.device_type)
            if opts.device_type == "cpu":
                import torch

                device = resolve_device("cpu")
                # Ranks share the node's cores: oversubscribed intra-op threads spin
                # against each other and turn small-message timings into noise.
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, denv.local_world_size)))
            else:
                import torch

                count = torch.accelerator.device_count() if torch.accelerator.is_available() else 0
                from_environ(device_count=count)  # re-validate LOCAL_RANK against the visible devices
                device = resolve_device(f"{opts.device_type}:{denv.local_rank}")
                torch.accelerator.set_device_index(denv.local_rank)
        except (ValueError, DistEnvError) as exc:
            raise RankError(str(exc), EXIT_CONFIG) from None
        state["phase"] = "process-group initialisation"
        try:
            _init_process_group(denv, backend, device, opts.pg_timeout_s)
        except DistEnvError as exc:
            raise RankError(str(exc), EXIT_CONFIG) from None
        except RankError:
            raise
        except Exception as exc:
            raise RankError(_explain(exc, state["phase"], opts), EXIT_COLLECTIVE) from None
        try:
            harness = Harness(denv, device, backend, opts.preset, progress=progress, fault=fault)
            state["harness"] = harness
            env = capture_environment(device)
            env.update(backend=backend, world_size=denv.world_size, nodes=denv.nodes,
                       local_world_size=denv.local_world_size, launcher=denv.launcher, pg_timeout_s=opts.pg_timeout_s,
                       preset=opts.preset)
            if backend.endswith("nccl") and not env.get("nccl_version"):
                import torch

                v = torch.cuda.nccl.version()
                env["nccl_version"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
            harness.setup_groups()
            env["groups"] = [list(g.ranks) for g in harness.groups]
            rs = harness.sweep(opts.ops, opts.dtypes, opts.sizes(), env=env)
            # Every rank must have finished before anything is written.
            harness.phase = "final agreement"
            harness._world_max([0.0])
        except CaseMismatch as exc:
            raise RankError(str(exc), EXIT_CONFIG) from None
        except RankError:
            raise
        except Exception as exc:
            raise RankError(_explain(exc, phase(), opts), EXIT_COLLECTIVE) from None
        if denv.rank == 0:
            harness.phase = "writing results"
            paths = rs.write(opts.out_dir, opts.stem)
            # Under accelcal's launcher these paths are a staging folder that the launcher renames into
            # place and deletes; it reports the final paths itself, so naming these would point nowhere.
            if progress and denv.launcher != "accelcal":
                progress(f"collectives: wrote {', '.join(str(p) for p in paths.values())}")
        return rs.frame()
    finally:
        try:
            if dist.is_initialized():
                if harness is not None:
                    harness.close()
                dist.destroy_process_group()
        except Exception:  # a broken group must not hide the real error
            pass
        timer.cancel()


def _guard() -> None:
    """Under accelcal's launcher: end with it (rank 0 first removes the staging and log folders)."""
    import signal

    from accelcal.guardian import watch_parent

    if os.environ.get("ACCELCAL_LAUNCHER") != "accelcal":
        return
    if os.environ.get("RANK") == "0":
        watch_parent(death_signal=signal.SIGTERM)
    else:
        watch_parent(cleanup=[], death_signal=signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accelcal.collectives.worker",
                                     description="One rank of the accelcal collective sweep (start with torchrun, srun "
                                                 "or `accelcal bench collectives --nproc N`).")
    add_worker_arguments(parser)
    args = parser.parse_args(argv)
    _guard()
    try:
        opts = SweepOptions.from_args(args)
        denv = from_environ()
    except (ValueError, DistEnvError) as exc:
        rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "?"))
        print(f"accelcal collectives rank {rank}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG

    def progress(line: str) -> None:
        print(line, flush=True)

    try:
        df = run_rank(denv, opts, progress=progress)
    except RankError as exc:
        print(f"accelcal collectives rank {denv.rank}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    failed = df[df["status"] == "failed"]
    if len(failed):
        if denv.rank == 0:
            for _, r in failed.iterrows():
                print(f"accelcal collectives rank 0: error: {r['op']} {r['case']}: {r['reason']}", file=sys.stderr)
        return EXIT_WRONG
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
