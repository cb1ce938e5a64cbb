"""The shipped datasheet prior for a measured device, to draw beside its measurements.

    from accelcal.calibrate.priors import find_datasheet
    ds = find_datasheet(Profile.load("profiles/nvidia-h200.yaml"))   # profiles/datasheet/h200-sxm.yaml, or None

Matching is by the accelerator's model token (``H200``, ``H100``, ``A100``,
``MI300X``) in both device names; a CPU or an unknown device has no prior.
"""

from __future__ import annotations

import re
from pathlib import Path

from .profile import Profile

__all__ = ["DATASHEET_DIR", "find_datasheet"]

DATASHEET_DIR = Path(__file__).resolve().parents[1] / "profiles" / "datasheet"
"""Shipped datasheet priors (a source checkout or editable install)."""

_MODEL = re.compile(r"\b([A-Z]{1,3}\d{2,4}[A-Z]?)\b")


def _model_tokens(name: str) -> set[str]:
    return set(_MODEL.findall(name.upper().replace("-", " ")))


def find_datasheet(p: Profile, folder: Path = DATASHEET_DIR) -> Profile | None:
    """The datasheet profile in ``folder`` whose device shares a model token with ``p``'s; None if none does."""
    if p.is_datasheet or not folder.is_dir():
        return None
    want = _model_tokens(str(p.identity.device_name))
    if not want:
        return None
    for path in sorted(folder.glob("*.yaml")):
        ds = Profile.load(path)
        if want & _model_tokens(str(ds.identity.device_name)):
            return ds
    return None
