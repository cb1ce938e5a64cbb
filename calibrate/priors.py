"""The shipped datasheet prior for a measured device, to draw beside its measurements.

    from accelcal.calibrate.priors import find_datasheet
    ds = find_datasheet(Profile.load("profiles/nvidia-h200.yaml"))   # profiles/datasheet/h200-sxm.yaml, or None

Matching is by the accelerator's model token (``H200``, ``H100``, ``A100``,
``MI300X``) in both device names and by its form factor (an ``H100 PCIe`` is not an
``H100 SXM``: another power limit and memory); a CPU or an unknown device has no prior.
"""

from __future__ import annotations

import re
from pathlib import Path

from .profile import Profile

__all__ = ["DATASHEET_DIR", "device_form_factor", "device_model_tokens", "find_datasheet", "same_device_model"]

DATASHEET_DIR = Path(__file__).resolve().parents[1] / "profiles" / "datasheet"
"""Shipped datasheet priors (a source checkout or editable install)."""

_MODEL = re.compile(r"\b([A-Z]{1,3}\d{2,4}[A-Z]?|\d{4})\b")
"""A device's model in its name: H100, A100, MI300X, or a bare 4-digit number (GeForce RTX 4090); memory sizes
(80GB), memory types (HBM3) and form factors (SXM5) do not match."""


def device_model_tokens(name: str) -> set[str]:
    """The model tokens of a device name: "NVIDIA H100 80GB HBM3" and "NVIDIA H100 SXM5 80GB" -> {"H100"}."""
    return set(_MODEL.findall(name.upper().replace("-", " ")))


_FORM_FACTORS = (("PCIE", "PCIe"), ("NVL", "NVL"))
"""Form-factor words in device names (as torch reports them: "NVIDIA H100 PCIe", "NVIDIA H100 NVL",
"NVIDIA A100-PCIE-40GB"); a name with none is the SXM/OAM board ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")."""


def device_form_factor(name: str) -> str:
    """"PCIe", "NVL" or "SXM" (the default board, named or not) for a device name."""
    words = set(re.split(r"[^A-Z0-9]+", name.upper()))
    return next((label for word, label in _FORM_FACTORS if word in words), "SXM")


def same_device_model(a: str, b: str) -> bool:
    """Whether two device names name one model on one board: they share a model token and a form factor (an H100
    PCIe runs at less than half an H100 SXM's power with slower memory, so timings of one are not the other's), or
    (when either has no model token, a CPU say) the names are equal."""
    ta, tb = device_model_tokens(a), device_model_tokens(b)
    if ta and tb:
        return bool(ta & tb) and device_form_factor(a) == device_form_factor(b)
    return a.strip().lower() == b.strip().lower()


def find_datasheet(p: Profile, folder: Path = DATASHEET_DIR) -> Profile | None:
    """The datasheet profile in ``folder`` whose device is ``p``'s model and form factor; None if none is."""
    if p.is_datasheet or not folder.is_dir():
        return None
    name = str(p.identity.device_name)
    if not device_model_tokens(name):
        return None
    for path in sorted(folder.glob("*.yaml")):
        ds = Profile.load(path)
        if same_device_model(name, str(ds.identity.device_name)):
            return ds
    return None

