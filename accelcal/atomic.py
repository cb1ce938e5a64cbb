"""Atomic file writes: a crash never leaves a half-written file or destroys the old one.

    from accelcal.atomic import atomic_write_text
    atomic_write_text("profiles/node.yaml", yaml_text)

The new content goes to a temporary file in the destination folder (same file
system, so the rename is atomic), is flushed and fsynced, then `os.replace`d
over the target.  A reader sees either the old file or the new one, never a mix.
The temporary name carries the writer's pid (``.<name>.<pid>.<random>.tmp``): a
writer killed by SIGKILL cannot remove its own, so the next write of the same
target removes those whose process is gone.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_with"]


def atomic_write_with(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to produce the file, then move it over ``path``.

    ``write`` receives a path in the destination folder; use it for writers that
    insist on a file name (pandas' Parquet writer, matplotlib).
    """
    target = _regular_target(Path(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # a file stands where a folder of the path goes
            blocker = next((a for a in target.parents if a.exists() and not a.is_dir()), None)
            if blocker is not None:
                raise NotADirectoryError(errno.ENOTDIR, f"cannot write here: {blocker} is a file, not a folder",
                                         str(target)) from None
        # name the file the user asked for, not the temporary one beside it (read-only folder, no permission, full)
        raise type(exc)(exc.errno, f"cannot write here ({exc.strerror})", str(target)) from None
    os.close(fd)
    try:
        # mkstemp makes the file 0600; keep the old file's mode, else what open() would give.
        os.chmod(tmp, _mode_for(target))
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and getattr(exc, "filename", None) == tmp:
            # a full disk or a failing write names the file asked for, not the temporary one beside it
            raise type(exc)(exc.errno, exc.strerror, str(target)) from None
        raise
    _fsync_dir(target.parent)
    return target


def _regular_target(target: Path) -> Path:
    """The file a write replaces: a link's own target (the link stays a link), refused where that is a folder, a
    device or a pipe (a rename would put a file in its place, e.g. over /dev/stdout)."""
    real = Path(os.path.realpath(target)) if target.is_symlink() else target
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        return real
    except OSError:
        return real  # no permission to look: the write itself says so, naming the file
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file: give a file name", str(target))
    if not stat.S_ISREG(mode):
        what = f" (a link to {real})" if real != target else ""
        raise ValueError(f"{target}{what} is not a regular file (a device, pipe or socket): a write replaces the "
                         f"file whole, so give the path of a file")
    return real


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)

    return atomic_write_with(path, _write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _remove_orphans(target: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` files beside ``target`` left by writers that no longer run."""
    prefix = f".{target.name}."
    for tmp in target.parent.glob(f"{_glob_escape(prefix)}*.tmp"):
        pid_text = tmp.name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            tmp.unlink()
        except OSError:
            pass  # another writer got there first, or the folder is read-only: the write itself will say


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
