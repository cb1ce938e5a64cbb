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

__all__ = ["DATASHEET_DIR", "device_model_tokens", "find_datasheet", "same_device_model"]

DATASHEET_DIR = Path(__file__).resolve().parents[1] / "profiles" / "datasheet"
"""Shipped datasheet priors (a source checkout or editable install)."""

_MODEL = re.compile(r"\b([A-Z]{1,3}\d{2,4}[A-Z]?|\d{4})\b")
"""A device's model in its name: H100, A100, MI300X, or a bare 4-digit number (GeForce RTX 4090); memory sizes
(80GB), memory types (HBM3) and form factors (SXM5) do not match."""


def device_model_tokens(name: str) -> set[str]:
    """The model tokens of a device name: "NVIDIA H100 80GB HBM3" and "NVIDIA H100 SXM5 80GB" -> {"H100"}."""
    return set(_MODEL.findall(name.upper().replace("-", " ")))


def same_device_model(a: str, b: str) -> bool:
    """Whether two device names name one model: they share a model token, or (when either has none, a CPU say)
    the names are equal."""
    ta, tb = device_model_tokens(a), device_model_tokens(b)
    if ta and tb:
        return bool(ta & tb)
    return a.strip().lower() == b.strip().lower()


def find_datasheet(p: Profile, folder: Path = DATASHEET_DIR) -> Profile | None:
    """The datasheet profile in ``folder`` whose device shares a model token with ``p``'s; None if none does."""
    if p.is_datasheet or not folder.is_dir():
        return None
    want = device_model_tokens(str(p.identity.device_name))
    if not want:
        return None
    for path in sorted(folder.glob("*.yaml")):
        ds = Profile.load(path)
        if want & device_model_tokens(str(ds.identity.device_name)):
            return ds
    return None
