"""Which optional extra provides a third-party module, and the one-line message when it is missing.

    from accelcal.extras import missing_extra_message
    try:
        import torch
    except ModuleNotFoundError as exc:
        print(missing_extra_message(exc, "bench kernels"))   # "... pip install 'accelcal[measure]'"

The base install (pyyaml, numpy) plans, shows, compares and exports profiles;
measuring, fitting and validating need the ``measure`` extra (see pyproject.toml).
"""

from __future__ import annotations

__all__ = ["EXTRA_OF_MODULE", "extra_for", "missing_extra_message"]

EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "measure",
    "pandas": "measure",
    "scipy": "measure",
    "tqdm": "measure",
    "pytest_benchmark": "bench",
    "matplotlib": "plot",
    "pyarrow": "parquet",
}
"""Top-level module name -> the ``accelcal[...]`` extra that installs it (mirrors pyproject.toml)."""


def extra_for(exc: ModuleNotFoundError) -> str | None:
    """The extra that would provide the module ``exc`` could not import, or None when it is not optional."""
    root = (exc.name or "").split(".")[0]
    return EXTRA_OF_MODULE.get(root)


def missing_extra_message(exc: ModuleNotFoundError, command: str | None = None) -> str:
    """``accelcal bench: needs torch, from the 'measure' extra: pip install 'accelcal[measure]'``."""
    extra = extra_for(exc)
    root = (exc.name or "?").split(".")[0]
    where = f"accelcal {command}" if command else "accelcal"
    if extra is None:
        return f"{where}: error: missing module {root!r} ({exc})"
    return f"{where}: needs {root}, which the '{extra}' extra installs: pip install 'accelcal[{extra}]'"
