"""Rank, world and device mapping from the launcher's environment, validated with clear errors.

    from accelcal.collectives.distenv import from_environ
    denv = from_environ()              # reads RANK, WORLD_SIZE, LOCAL_RANK, ... (torchrun or Slurm)
    print(denv.rank, denv.world_size, denv.node_rank, denv.nodes)

Works with torchrun (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
MASTER_ADDR, MASTER_PORT), with Slurm's srun (SLURM_PROCID, SLURM_NTASKS,
SLURM_LOCALID, SLURM_NODEID, SLURM_NNODES; MASTER_ADDR/MASTER_PORT still set by
the batch script), and with accelcal's own local launcher.  No torch import, so a
bad environment fails in milliseconds.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import Mapping

__all__ = ["DistEnv", "DistEnvError", "bind_listen_socket", "from_environ", "in_distributed_env", "is_loopback",
           "loopback_ifname", "pin_loopback_env", "parse_port", "PortTaken"]


class DistEnvError(ValueError):
    """The launcher environment is missing, malformed or inconsistent."""


class PortTaken(DistEnvError):
    """The rendezvous port is held by another sweep or process."""


def parse_port(value: str | int, what: str = "--port") -> int:
    """A TCP port 1..65535 from an argument or environment value; a clear ValueError otherwise."""
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise DistEnvError(f"{what}={str(value)[:20]!r} is not a TCP port number (1..65535)") from None
    if not 1 <= port <= 65535:
        raise DistEnvError(f"{what}={port} is not a TCP port (1..65535)")
    return port


def loopback_ifname() -> str | None:
    """The name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS), None when not found."""
    try:
        names = [n for _, n in socket.if_nameindex()]
    except (OSError, AttributeError):
        return None
    for cand in ("lo", "lo0"):
        if cand in names:
            return cand
    return next((n for n in names if n.startswith("lo")), None)


def pin_loopback_env(env: dict[str, str], addr: str) -> dict[str, str]:
    """Pin gloo's (and nccl's bootstrap) listeners to the loopback interface when ``addr`` is loopback.

    gloo otherwise binds its pair sockets to the address the hostname resolves
    to, which on most machines is reachable from the network.  An explicit
    GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME in the environment is kept (the user chose).
    """
    if is_loopback(addr):
        lo = loopback_ifname()
        if lo:
            env.setdefault("GLOO_SOCKET_IFNAME", lo)
            env.setdefault("NCCL_SOCKET_IFNAME", lo)
    return env


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int
    """Global rank, 0 .. world_size-1."""
    world_size: int
    """Number of ranks in the job."""
    local_rank: int
    """Rank within this node; picks the device (cuda:<local_rank>)."""
    local_world_size: int
    """Ranks on this node."""
    node_rank: int
    """Which node this rank runs on, 0 .. nodes-1."""
    nodes: int
    """Number of nodes (world_size / local_world_size)."""
    master_addr: str
    """Rendezvous host."""
    master_port: int
    """Rendezvous TCP port."""
    launcher: str
    """Who started us: ``torchrun``, ``slurm``, ``accelcal`` or ``env``."""
    agent_store: bool = False
    """True under torchrun: the agent already hosts the rendezvous store."""


def _int(env: Mapping[str, str], key: str, hint: str) -> int:
    if key not in env or env[key] == "":
        raise DistEnvError(f"environment variable {key} is not set; {hint}")
    try:
        return int(env[key])
    except ValueError:
        raise DistEnvError(f"environment variable {key}={env[key]!r} is not an integer") from None


def in_distributed_env(env: Mapping[str, str] | None = None) -> bool:
    """True when a launcher (torchrun, Slurm srun) already set up this process as one rank."""
    env = os.environ if env is None else env
    return ("RANK" in env and "WORLD_SIZE" in env) or ("SLURM_PROCID" in env and "MASTER_ADDR" in env)


def from_environ(env: Mapping[str, str] | None = None, device_count: int | None = None) -> DistEnv:
    """Read and validate the rank layout; ``device_count`` checks LOCAL_RANK against the visible devices."""
    env = dict(os.environ if env is None else env)
    hint = "start this module with torchrun, srun, or `accelcal bench collectives --nproc N`"
    if "RANK" not in env and "SLURM_PROCID" in env:
        # Slurm: map its variables onto the torchrun names.
        launcher = "slurm"
        env.setdefault("RANK", env["SLURM_PROCID"])
        env.setdefault("WORLD_SIZE", env.get("SLURM_NTASKS", ""))
        env.setdefault("LOCAL_RANK", env.get("SLURM_LOCALID", ""))
        if "SLURM_NNODES" in env and env.get("SLURM_NTASKS", "").isdigit() and env["SLURM_NNODES"].isdigit():
            env.setdefault("LOCAL_WORLD_SIZE", str(int(env["SLURM_NTASKS"]) // max(1, int(env["SLURM_NNODES"]))))
        env.setdefault("GROUP_RANK", env.get("SLURM_NODEID", ""))
    elif "TORCHELASTIC_RUN_ID" in env:
        launcher = "torchrun"
    else:
        launcher = env.get("ACCELCAL_LAUNCHER", "env")
    rank = _int(env, "RANK", hint)
    world = _int(env, "WORLD_SIZE", hint)
    if world < 1:
        raise DistEnvError(f"WORLD_SIZE={world} must be >= 1")
    if not 0 <= rank < world:
        raise DistEnvError(f"RANK={rank} is out of range for WORLD_SIZE={world} (valid ranks are 0..{world - 1})")
    local_rank = _int(env, "LOCAL_RANK", "it picks this rank's device; " + hint)
    local_world = _int(env, "LOCAL_WORLD_SIZE", hint) if env.get("LOCAL_WORLD_SIZE") else world
    if local_world < 1 or local_world > world:
        raise DistEnvError(f"LOCAL_WORLD_SIZE={local_world} must be between 1 and WORLD_SIZE={world}")
    if not 0 <= local_rank < local_world:
        raise DistEnvError(
            f"LOCAL_RANK={local_rank} is out of range for LOCAL_WORLD_SIZE={local_world} (valid: 0..{local_world - 1})")
    if world % local_world:
        raise DistEnvError(
            f"WORLD_SIZE={world} is not a multiple of LOCAL_WORLD_SIZE={local_world} "
            f"({world} % {local_world} = {world % local_world}); every node must run the same number of ranks")
    nodes = world // local_world
    node_rank = _int(env, "GROUP_RANK", hint) if env.get("GROUP_RANK") else rank // local_world
    if not 0 <= node_rank < nodes:
        raise DistEnvError(
            f"node rank (GROUP_RANK/SLURM_NODEID)={node_rank} is out of range for "
            f"WORLD_SIZE({world}) / LOCAL_WORLD_SIZE({local_world}) = {nodes} nodes")
    if device_count is not None and local_rank >= device_count:
        raise DistEnvError(
            f"LOCAL_RANK={local_rank} needs device {local_rank}, but only {device_count} device(s) are visible "
            f"(valid LOCAL_RANK: 0..{device_count - 1}); lower --nproc-per-node or check CUDA_VISIBLE_DEVICES")
    addr = env.get("MASTER_ADDR", "")
    if not addr:
        if world == 1:
            addr = "127.0.0.1"
        else:
            raise DistEnvError(f"environment variable MASTER_ADDR is not set; {hint}")
    port = _int(env, "MASTER_PORT", hint) if (env.get("MASTER_PORT") or world > 1) else 0
    if world > 1 or env.get("MASTER_PORT"):
        if not 1 <= port <= 65535:
            raise DistEnvError(f"MASTER_PORT={port} is not a TCP port (1..65535)")
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world,
                   node_rank=node_rank, nodes=nodes, master_addr=addr, master_port=port, launcher=launcher,
                   agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true")


def is_loopback(addr: str) -> bool:
    try:
        infos = socket.getaddrinfo(addr, None)
    except OSError:
        return False
    return bool(infos) and all(i[4][0].startswith("127.") or i[4][0] == "::1" for i in infos)


def bind_listen_socket(addr: str, port: int) -> socket.socket:
    """A listening socket for the rendezvous store: loopback-only when ``addr`` is loopback.

    A busy port is a DistEnvError naming MASTER_PORT (rather than a hang or an
    obscure store error later).
    """
    host = "127.0.0.1" if is_loopback(addr) else ""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR: a port left in TIME_WAIT by the previous sweep is reusable; a live listener still refuses.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        s.listen(128)
    except OSError as exc:
        s.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(
                f"port {port} (--port, or MASTER_PORT) is already in use on {host or '0.0.0.0'}: port {port} taken by another "
                f"sweep/process; pick a free port or let accelcal choose one (leave --port and MASTER_PORT unset)") from None
        raise DistEnvError(f"cannot listen on {host or '0.0.0.0'}:{port} for MASTER_PORT: {exc}") from None
    return s


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
