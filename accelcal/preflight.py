"""Check every destination before measuring: writable, the right kind, enough free space.

    from accelcal.preflight import check_dir, check_file
    check_file("profiles/node.yaml", what="--out", need_bytes=1 << 20)   # DestinationError (ValueError) if not
    check_dir("results/", what="--out", need_bytes=64 << 20)

A benchmark that runs for minutes and then cannot write its result wastes the
run; these checks take milliseconds.  Each failure is one line naming the
path, the argument and what is wrong (a directory where a file is meant, a
read-only folder, N MiB free where M are needed).  Nothing is created: the
writability probe is a temporary file in the nearest existing folder,
removed at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["DestinationError", "check_dir", "check_file", "check_import_out", "os_error_line"]


class DestinationError(ValueError):
    """A destination that cannot take the output; the message names the path and the argument."""


def os_error_line(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for an OSError: the path and the system's reason (no traceback)."""
    where = path if path is not None else (exc.filename or "?")
    return f"{os.fspath(where)}: {exc.strerror or exc.__class__.__name__}"


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    return p


def _probe(folder: Path, what: str, target: Path, need_bytes: int) -> None:
    if not folder.is_dir():
        raise DestinationError(f"{what} {target}: {folder} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".accelcal-probe-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise DestinationError(f"{what} {target}: cannot write in {folder}: {exc.strerror or exc}") from None
    if need_bytes > 0:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        if free < need_bytes:
            raise DestinationError(f"{what} {target}: only {free / 2**20:.1f} MiB free on the file system of {folder}, "
                                   f"{need_bytes / 2**20:.1f} MiB needed for the outputs")


def check_dir(path: str | os.PathLike, what: str = "output folder", need_bytes: int = 0) -> Path:
    """``path`` is (or can become) a writable folder with ``need_bytes`` free; returns it as a Path."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise DestinationError(f"{what} {p} exists and is not a folder")
    _probe(_existing_ancestor(p), what, p, need_bytes)
    return p


def check_file(path: str | os.PathLike, what: str = "output file", need_bytes: int = 0) -> Path:
    """``path`` can be (over)written as a file: not a folder, its folder writable, ``need_bytes`` free."""
    p = Path(path)
    if p.is_dir():
        raise DestinationError(f"{what} {p} is a folder; expected a file name (e.g. {p / 'node.yaml'})")
    if p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent, os.W_OK):
        raise DestinationError(f"{what} {p}: the file and its folder are read-only")
    anc = _existing_ancestor(p.parent)
    if anc != p.parent.absolute() and not anc.is_dir():
        raise DestinationError(f"{what} {p}: {anc} is not a folder")
    _probe(anc, what, p, need_bytes)
    return p


def check_import_out(out: str | os.PathLike, inputs: list[str], force: bool, what: str = "--out") -> None:
    """An import's destination: refused where it exists (unless ``force``), where it is one of the ``inputs`` (even
    with ``force``: the import would replace what it reads) and where it is a device profile (even with ``force``:
    compute and memory measured, with a raw folder beside it, which an import's output would orphan)."""
    target = Path(out)
    if not os.path.lexists(target):
        return
    if not force:
        raise DestinationError(f"{what} {os.fspath(out)}: exists; pass --force to replace it")
    real = target.resolve()
    for src in inputs:
        if Path(src).resolve() == real:
            raise DestinationError(f"{what} {os.fspath(out)}: is the input {src}; the import would replace what it "
                                   f"reads: give another {what}")
    from .safe_io import load_yaml

    try:
        doc = load_yaml(target, what=what)
    except (ValueError, OSError):
        return  # not a readable YAML: --force replaces it
    if isinstance(doc, dict) and isinstance(doc.get("identity"), dict) and (doc.get("compute") or doc.get("memory")):
        raise DestinationError(f"{what} {os.fspath(out)}: is a device profile ({doc['identity'].get('name')}: compute "
                               f"and memory measured, its raw data beside it); an import writes a file of its own: "
                               f"give another {what} (remove the profile first if it is to go)")
