"""Capture the environment a measurement was taken in (provenance for results and profiles).

    from accelcal.kernels.environment import capture_environment
    env = capture_environment("cpu")
    print(env["device_name"], env["torch_version"])

Only settings that change results are kept: versions, device, clocks, thread
counts and ``NCCL_*``/``OMP_*``-style variables, never the whole environment
(it can hold secrets).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys

import torch

from accelcal.build import build_versions

from .device import Device, cpu_model, cpu_signature, resolve_device
from .timing import METHOD_VERSION

__all__ = ["capture_environment", "cpu_model"]

_ENV_PREFIXES = ("NCCL_", "OMP_", "MKL_", "OPENBLAS_", "GLOO_", "TORCH_NCCL_", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF")
_SECRET_HINTS = ("TOKEN", "KEY", "SECRET", "PASS", "PWD", "AUTH", "CRED", "CERT", "PRIVATE")
"""Substrings (any case) of variable names never recorded: PASS covers *_PASSWD/*PASSWORD*, AUTH *_AUTH*, ..."""


COMMAND_ENV = "ACCELCAL_COMMAND"
"""Set by a launcher for the processes it starts: the user's command, which their provenance records instead of
the internal worker's own command line."""


def command_line() -> str:
    """The command that produced a measurement: a launcher's (``COMMAND_ENV``), else this process's argv."""
    if os.environ.get(COMMAND_ENV):
        return os.environ[COMMAND_ENV]
    prog = os.path.basename(sys.argv[0]) if sys.argv else ""
    if prog == "__main__.py":  # python -m accelcal ...: the console script it stands for
        pkg = os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0])))
        prog = "accelcal" if pkg == "accelcal" else f"python -m {pkg}"
    return " ".join([prog, *sys.argv[1:]])


def _nvidia_smi() -> dict[str, str]:
    query = "driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,clocks_throttle_reasons.active"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return {}
    if not out:
        return {}
    keys = ["driver_version", "sm_clock", "sm_clock_max", "mem_clock", "power_limit", "throttle_reasons"]
    return {k: v.strip() for k, v in zip(keys, out[0].split(","))}


def _relevant_env() -> dict[str, str]:
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(_ENV_PREFIXES) and not any(h in k.upper() for h in _SECRET_HINTS)
    }


def capture_environment(device: Device | str | None = None) -> dict[str, object]:
    """A flat dict of provenance fields (JSON- and YAML-safe values only)."""
    dev = device if isinstance(device, Device) else resolve_device(device)
    free_b, total_b = dev.memory_bytes()
    env: dict[str, object] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "method_version": METHOD_VERSION,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "hip_version": getattr(torch.version, "hip", None) or "",
        "nccl_version": "",
        "device": dev.spec,
        "device_type": dev.type,
        "device_name": dev.name(),
        "device_count": dev.count(),
        "device_memory_total_bytes": total_b,
        "device_memory_free_bytes": free_b,
        "cpu_model": cpu_model(),
        "cpu_signature": cpu_signature(),
        "cpu_count": os.cpu_count() or 0,
        "torch_num_threads": torch.get_num_threads(),
        "command": command_line(),
        "env_vars": _relevant_env(),
        **{f"{k}_version" if k == "accelcal" else k: v for k, v in build_versions().items()},
    }
    if dev.type == "cuda":
        try:
            v = torch.cuda.nccl.version()
            env["nccl_version"] = ".".join(map(str, v)) if isinstance(v, tuple) else str(v)
        except Exception:  # NCCL may be absent in a ROCm or CPU-only build
            pass
        props = torch.cuda.get_device_properties(dev.index)
        env["device_sm_count"] = int(props.multi_processor_count)
        env["device_capability"] = f"{props.major}.{props.minor}"
        env.update({f"gpu_{k}": v for k, v in _nvidia_smi().items()})
    return env
