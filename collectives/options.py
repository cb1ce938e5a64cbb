"""What one collective sweep measures: the options every rank must agree on (no torch).

    from accelcal.collectives.options import SweepOptions
    opts = SweepOptions(device_type="cpu", preset="quick", ops=("all_reduce",), out_dir="results")
    argv = opts.to_argv()      # what the launcher passes to each rank's worker
    same = SweepOptions.from_argv(argv)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .presets import DTYPES, OPS, get_preset, sweep_sizes, validate_names

__all__ = ["SweepOptions", "add_worker_arguments"]


@dataclass(frozen=True)
class SweepOptions:
    """A collective sweep, identical on every rank."""

    device_type: str = "cpu"
    """torch device type of the buffers: cpu, cuda, xpu, ... (each rank uses <type>:<LOCAL_RANK>)."""
    backend: str | None = None
    """torch.distributed backend or a per-device map (``cpu:gloo,cuda:nccl``); None = torch's default for the device."""
    preset: str = "quick"
    """Sweep preset (presets.PRESETS): timing budget and default sizes."""
    sizes_bytes: tuple[int, ...] | None = None
    """Requested message sizes S; None = the preset's sizes for the device type."""
    ops: tuple[str, ...] = OPS
    """Collectives to run."""
    dtypes: tuple[str, ...] = DTYPES
    """dtypes to run; unsupported ones become skipped rows."""
    out_dir: str = "results"
    """Folder rank 0 writes the result files to."""
    stem: str = "collectives"
    """File name stem: <stem>.csv, .parquet, .json, .env.json."""
    pg_timeout_s: float = 60.0
    """Process-group timeout: a collective waiting longer than this on a peer fails."""
    deadline_s: float | None = None
    """Hard deadline for the whole sweep on each rank; None = the preset's default."""

    def __post_init__(self) -> None:
        get_preset(self.preset)
        object.__setattr__(self, "ops", validate_names("ops", self.ops, OPS))
        object.__setattr__(self, "dtypes", validate_names("dtypes", self.dtypes, DTYPES))
        if self.sizes_bytes is not None:
            bad = [s for s in self.sizes_bytes if int(s) <= 0]
            if bad or not self.sizes_bytes:
                raise ValueError(f"sizes must be positive byte counts, got {list(self.sizes_bytes)}")
            object.__setattr__(self, "sizes_bytes", tuple(int(s) for s in self.sizes_bytes))
        if not self.stem or self.stem in (".", "..") or "/" in self.stem or "\\" in self.stem or "\0" in self.stem:
            raise ValueError(f"stem {self.stem[:40]!r}: expected a plain file name stem (no folders, no '..'); "
                             f"results go inside --out")
        if not self.pg_timeout_s > 0:
            raise ValueError(f"--pg-timeout (pg_timeout_s) must be > 0 seconds, got {self.pg_timeout_s}")
        if self.deadline_s is not None and not self.deadline_s > 0:
            raise ValueError(f"--timeout (deadline_s, the whole sweep's deadline) must be > 0 seconds, got "
                             f"{self.deadline_s}")

    def sizes(self) -> tuple[int, ...]:
        return self.sizes_bytes if self.sizes_bytes is not None else sweep_sizes(self.preset, self.device_type)

    def deadline(self) -> float:
        return self.deadline_s if self.deadline_s is not None else get_preset(self.preset).default_deadline_s

    def to_argv(self) -> list[str]:
        argv = ["--device-type", self.device_type, "--preset", self.preset, "--ops", ",".join(self.ops),
                "--dtypes", ",".join(self.dtypes), "--out", self.out_dir, "--stem", self.stem,
                "--pg-timeout", repr(self.pg_timeout_s), "--deadline", repr(self.deadline())]
        if self.backend:
            argv += ["--backend", self.backend]
        if self.sizes_bytes is not None:
            argv += ["--sizes", ",".join(map(str, self.sizes_bytes))]
        return argv

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "SweepOptions":
        return cls(device_type=args.device_type, backend=args.backend, preset=args.preset,
                   sizes_bytes=tuple(_ints(args.sizes, "--sizes")) if args.sizes else None,
                   ops=tuple(_split(args.ops)) or OPS, dtypes=tuple(_split(args.dtypes)) or DTYPES,
                   out_dir=args.out, stem=args.stem, pg_timeout_s=args.pg_timeout, deadline_s=args.deadline)

    @classmethod
    def from_argv(cls, argv: list[str]) -> "SweepOptions":
        p = argparse.ArgumentParser()
        add_worker_arguments(p)
        return cls.from_args(p.parse_args(argv))


def _split(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def _ints(s: str, flag: str) -> list[int]:
    out = []
    for x in _split(s):
        try:
            out.append(int(x))
        except ValueError:
            raise ValueError(f"{flag}: {x!r} is not a whole number of bytes") from None
    return out


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """The sweep flags, shared by the worker module and the launcher."""
    d = SweepOptions.__dataclass_fields__
    p.add_argument("--device-type", default="cpu", help="buffer device type: cpu, cuda, xpu, ... (default: cpu)")
    p.add_argument("--backend", default=None, help="torch.distributed backend, e.g. gloo, nccl or cpu:gloo,cuda:nccl (default: torch's default for the device)")
    p.add_argument("--preset", default="quick", help="sweep preset: smoke, quick, default, full (default: quick)")
    p.add_argument("--sizes", default=None, help="comma-separated message sizes S in bytes (default: the preset's)")
    p.add_argument("--ops", default="", help=f"comma-separated collectives (default: all of {','.join(OPS)})")
    p.add_argument("--dtypes", default="", help=f"comma-separated dtypes (default: all of {','.join(DTYPES)})")
    p.add_argument("--out", default=d["out_dir"].default, help="folder for the result files (rank 0 writes)")
    p.add_argument("--stem", default=d["stem"].default, help="result file stem (default: collectives)")
    p.add_argument("--pg-timeout", type=float, default=d["pg_timeout_s"].default, help="process-group timeout in seconds (default: 60)")
    p.add_argument("--deadline", type=float, default=None, help="hard deadline for the sweep in seconds on every rank")
