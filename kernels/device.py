"""Which device to measure, and the few device calls the timing core needs.

    from accelcal.kernels.device import resolve_device
    dev = resolve_device("cuda:0")      # or "cpu", or None for the default accelerator
    dev.synchronize()

Everything device-specific (events, graphs, memory queries) goes through this
module so the rest of the project stays backend-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

import platform

import torch


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str] | None:
    """``path`` as {lower-case key: its first value} (the first processor's, where every block repeats a key);
    None where the file cannot be read."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        return None
    return fields


def cpu_model() -> str:
    """The host CPU's model name (/proc/cpuinfo), else what ``platform`` says."""
    return (_cpuinfo() or {}).get("model name") or platform.processor() or platform.machine()


_VECTOR_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8",  # x86
                 "asimd", "sve", "sve2", "bf16", "i8mm")  # Arm (/proc/cpuinfo "Features")
"""CPU features that change what a CPU's GEMMs and copies can do (recorded, not used to pick kernels)."""


def cpu_signature(cpuinfo: str = "/proc/cpuinfo") -> str:
    """What tells two CPUs of the same model name apart: family / model / stepping and the vector units
    (``cpuinfo``), e.g. ``family 25 model 1 stepping 1; avx avx2 fma``; "" where the file is absent."""
    fields = _cpuinfo(cpuinfo)
    if fields is None:
        return ""
    ids = " ".join(f"{k.split()[-1]} {fields[k]}" for k in ("cpu family", "model", "stepping") if fields.get(k))
    have = set((fields.get("flags") or fields.get("features") or "").split())
    units = " ".join(f for f in _VECTOR_FLAGS if f in have)
    return "; ".join(x for x in (ids, units) if x)


__all__ = ["Device", "available_devices", "cpu_model", "cpu_signature", "resolve_device"]


@dataclass(frozen=True)
class Device:
    """A resolved torch device plus what the timing core may use on it."""

    spec: str
    """Canonical name, e.g. ``"cpu"`` or ``"cuda:0"``."""
    type: str
    """torch device type: ``cpu``, ``cuda``, ``xpu``, ``mps``, ..."""
    index: int | None
    """Device ordinal, None for the CPU."""

    @property
    def torch(self) -> torch.device:
        return torch.device(self.spec)

    @property
    def is_cpu(self) -> bool:
        return self.type == "cpu"

    @property
    def has_events(self) -> bool:
        """Device-side timing events exist (all accelerators; not the CPU)."""
        return not self.is_cpu

    @property
    def has_graphs(self) -> bool:
        """Kernel launches can be captured and replayed (CUDA graphs; HIP maps to cuda)."""
        return self.type == "cuda"

    def synchronize(self) -> None:
        if self.is_cpu:
            return
        torch.accelerator.synchronize(self.index)

    def event(self) -> "torch.Event":
        return torch.Event(device=self.torch, enable_timing=True)

    def name(self) -> str:
        """Human-readable device name (GPU model or CPU model)."""
        if self.type == "cuda":
            return torch.cuda.get_device_name(self.index)
        if self.type == "xpu" and hasattr(torch, "xpu"):
            return torch.xpu.get_device_name(self.index)
        if self.is_cpu:
            return cpu_model()
        return self.spec

    def memory_bytes(self) -> tuple[int, int]:
        """(free, total) device memory in bytes; for the CPU, available and total RAM."""
        if self.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.index)
            return int(free), int(total)
        if self.is_cpu:
            return _cpu_memory_bytes()
        if self.type == "xpu" and hasattr(torch, "xpu"):
            total = torch.xpu.get_device_properties(self.index).total_memory
            return int(total - torch.xpu.memory_allocated(self.index)), int(total)
        raise NotImplementedError(f"memory query not implemented for device type {self.type!r}")

    def count(self) -> int:
        """Devices of this type on the node (1 for the CPU)."""
        if self.is_cpu:
            return 1
        return int(torch.accelerator.device_count())


def _cpu_memory_bytes() -> tuple[int, int]:
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    total = info.get("MemTotal")
    free = info.get("MemAvailable", info.get("MemFree"))
    if total is None or free is None:
        import os

        pages = os.sysconf("SC_PHYS_PAGES")
        page = os.sysconf("SC_PAGE_SIZE")
        total = free = pages * page
    return int(free), int(total)


def available_devices() -> list[str]:
    """Device names this torch can run on, CPU first."""
    names = ["cpu"]
    if torch.accelerator.is_available():
        acc = torch.accelerator.current_accelerator()
        for i in range(torch.accelerator.device_count()):
            names.append(f"{acc.type}:{i}")
    return names


def resolve_device(spec: str | None = None) -> Device:
    """Turn ``spec`` into a :class:`Device`; ``None`` or ``"auto"`` picks the accelerator if any.

    An unknown or absent device raises ValueError listing the ones that exist.
    """
    available = available_devices()
    if spec in (None, "", "auto"):
        spec = available[1] if len(available) > 1 else "cpu"
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {spec!r} ({exc}); available: {', '.join(available)}") from None
    if dev.type != "cpu" and dev.index is None:
        dev = torch.device(dev.type, 0)
    if dev.type == "cpu" and dev.index not in (None, 0):
        # torch ignores a CPU index: the whole CPU is one device here
        raise ValueError(f"device {spec!r}: the CPU is one device ('cpu'); available: {', '.join(available)}")
    canonical = "cpu" if dev.type == "cpu" else f"{dev.type}:{dev.index}"
    if canonical not in available:
        raise ValueError(f"device {spec!r} is not available on this machine; available: {', '.join(available)}")
    return Device(spec=canonical, type=dev.type, index=None if dev.type == "cpu" else dev.index)
