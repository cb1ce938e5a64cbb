"""Which accelcal wrote a file: its version and, run from a git checkout, the commit (provenance).

    from accelcal.build import build_versions
    build_versions()   # {"accelcal": "0.1.0", "accelcal_commit": "24e50b5c...", }
                       # ("-dirty": uncommitted edits to the code; profiles and results do not count)

A profile's numbers depend on the code that measured and fitted them (method_version says when the method
changed on purpose); the commit says exactly which code it was.  An installed package (no .git beside it)
records its version only.  No torch.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from accelcal import __version__

__all__ = ["build_versions"]

_ROOT = Path(__file__).resolve().parents[1]
"""The checkout accelcal runs from (the package folder's parent)."""


@functools.lru_cache(maxsize=1)
def build_versions() -> dict[str, str]:
    """{"accelcal": version} plus "accelcal_commit" when this code is a git checkout (git on PATH)."""
    out = {"accelcal": __version__}
    if not (_ROOT / ".git").exists():  # an installed copy, or a folder inside some other repository
        return out
    try:
        head = subprocess.run(["git", "-C", str(_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        # "-dirty": the code differs from the commit; profiles and benchmark results are what the code writes, so
        # a script that rebuilds several of them (profiles/*/make.sh) still names the commit of its code
        dirty = subprocess.run(["git", "-C", str(_ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)profiles", ":(exclude)benchmarks/results"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return out
    if head:
        out["accelcal_commit"] = head + ("-dirty" if dirty else "")
    return out
