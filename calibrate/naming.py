"""One profile naming scheme: the file stem is identity.name, raw data lives in ``<stem>-raw/`` beside it.

    from accelcal.calibrate.naming import profile_target
    t = profile_target(out=None, name=None, env={"host": "node7", "device": "cuda:0"})
    t.path, t.name, t.raw_dir        # profiles/node7-cuda0.yaml, 'node7-cuda0', profiles/node7-cuda0-raw

``accelcal calibrate`` and ``run_bench.sh`` both name profiles through this
module, so a profile found on disk says which node and device it describes and
where its measurements are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["PROFILES_DIR", "ProfileTarget", "default_profile_name", "profile_target", "raw_dir_for", "slug"]

PROFILES_DIR = Path("profiles")
"""Where profiles go unless --out says otherwise."""


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes (a file stem every filesystem and YAML key accepts)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "device"


def default_profile_name(env: Mapping[str, Any]) -> str:
    """``<host>-<device>`` from a recorded environment, e.g. ``node7-cuda0`` (``cuda:0`` loses its colon)."""
    host = str(env.get("host") or "node").split(".")[0]
    device = str(env.get("device") or env.get("device_type") or "device").replace(":", "")
    return slug(f"{host}-{device}")


def raw_dir_for(profile_path: str | Path) -> Path:
    """``profiles/x.yaml`` -> ``profiles/x-raw``."""
    p = Path(profile_path)
    return p.parent / f"{p.stem}-raw"


@dataclass(frozen=True)
class ProfileTarget:
    """Where a calibration writes: the profile, its identity.name and its raw-data folder."""

    path: Path
    """The profile YAML."""
    name: str
    """identity.name, equal to ``path.stem``."""
    raw_dir: Path
    """Raw measurements (``<stem>-raw/`` beside the profile unless --raw-dir says otherwise)."""


def profile_target(out: str | Path | None, name: str | None, env: Mapping[str, Any],
                   raw_dir: str | Path | None = None) -> ProfileTarget:
    """Resolve --out / --name / --raw-dir into one consistent target; a --name that is not the stem of --out is
    an error (two names for one profile is what this scheme removes)."""
    if out is not None:
        path = Path(out)
        if path.suffix not in (".yaml", ".yml"):
            raise ValueError(f"--out {out}: expected a profile path ending in .yaml")
        if name is not None and name != path.stem:
            raise ValueError(f"--name {name!r} differs from the stem of --out {out} ({path.stem!r}): a profile's "
                             f"identity.name is its file stem; pass one of them")
    else:
        stem = name if name is not None else default_profile_name(env)
        if slug(stem) != stem:
            raise ValueError(f"--name {stem!r}: use lower-case letters, digits and dashes, e.g. {slug(stem)!r}")
        path = PROFILES_DIR / f"{stem}.yaml"
    return ProfileTarget(path, path.stem, Path(raw_dir) if raw_dir is not None else raw_dir_for(path))
