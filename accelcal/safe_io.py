"""Bounded, safe reads of every file accelcal opens (profiles, results, env.json, presets, logs, HF configs).

    from accelcal.safe_io import read_text, load_yaml, load_json, read_csv
    data = load_yaml("profiles/my-node.yaml", what="profile")        # dict/list, strict
    env = load_json("results/env.json", what="environment", expect=dict)
    log = read_text("nccl-tests/all_reduce.log", what="nccl-tests log", max_bytes=16 * 2**20)

Each reader resolves symlinks and refuses anything that is not a regular file
(device files such as /dev/zero, FIFOs, sockets, directories), refuses files
above a size cap (read at most cap+1 bytes, so a file that grows while read is
caught too), and raises :class:`UnsafeInput` (a ``ValueError``) with one line
naming the file and the limit.  The YAML loader is PyYAML's safe loader with
three extra limits: alias expansions (an alias bomb fails after
``max_aliases`` references, in milliseconds), nesting depth, and duplicate
mapping keys (refused with key and line: last-wins would silently drop data).
Error messages never quote the file's contents beyond a short prefix.
:func:`inside` checks that a path named by a file stays inside that file's folder.
"""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

__all__ = ["UnsafeInput", "DEFAULT_MAX_BYTES", "MAX_DEPTH", "MAX_ALIASES", "MAX_EXPANDED_NODES", "check_regular_file", "read_bytes",
           "read_text", "load_yaml", "parse_yaml", "load_json", "parse_json", "read_csv", "inside", "short", "dumps_finite"]

DEFAULT_MAX_BYTES = 64 * 2**20
"""Size cap for a file read whole: the largest real profile or results file is a few MiB."""

MAX_DEPTH = 64
"""Deepest nesting of mappings/lists accepted (a profile nests 5 deep)."""

MAX_ALIASES = 1000
"""Most YAML alias (``*name``) references in one document; no accelcal file uses any."""

MAX_EXPANDED_NODES = 2_000_000
"""Most values a YAML document may stand for once its aliases are expanded (a large profile has ~10^4)."""


class UnsafeInput(ValueError):
    """A file that cannot be read safely: not a regular file, too large, too deep, an alias bomb, duplicate keys."""


def short(value: Any, limit: int = 40) -> str:
    """A repr of ``value`` cut to ``limit`` characters (error messages never dump a value or a file)."""
    try:
        text = repr(value) if not isinstance(value, (dict, list, tuple)) else f"<{type(value).__name__} of {len(value)}>"
    except Exception:  # noqa: BLE001 - a pathological object must not break the error path
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Resolve symlinks and return the real path when it is a regular file; else UnsafeInput / FileNotFoundError."""
    if not os.fspath(path).strip():
        # Path("") is the current folder: an empty argument would read as "is a directory"
        raise FileNotFoundError(f"{what}: the path is empty ({os.fspath(path)!r}); expected a file")
    p = Path(path)
    try:
        real = p.resolve(strict=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {os.fspath(path)} does not exist") from None
    except (OSError, RuntimeError) as exc:  # symlink loop, permission
        raise UnsafeInput(f"{what} {os.fspath(path)}: cannot resolve the path ({exc.__class__.__name__})") from None
    try:
        st = os.stat(real)
    except OSError as exc:
        raise UnsafeInput(f"{what} {os.fspath(path)}: cannot stat it: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device file" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        via = f" (a symlink to {real})" if os.fspath(real) != os.path.abspath(os.fspath(path)) else ""
        raise UnsafeInput(f"{what} {os.fspath(path)}{via} is {kind}; expected a regular file")
    return real


def read_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The whole file, at most ``max_bytes`` (UnsafeInput above that, naming the size and the cap)."""
    real = check_regular_file(path, what)
    # O_NONBLOCK: if the file was swapped for a FIFO after the check, open does not hang.
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UnsafeInput(f"{what} {os.fspath(path)}: cannot open it: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise UnsafeInput(f"{what} {os.fspath(path)} changed into a non-regular file while being opened")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeInput(f"{what} {os.fspath(path)} is larger than the {max_bytes} byte ({max_bytes / 2**20:.0f} MiB) "
                          f"limit for this kind of file; is it the right file?")
    return data


def read_text(path: str | os.PathLike, what: str = "file", max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """:func:`read_bytes` decoded as UTF-8 (a decode error names the byte offset, not the text)."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeInput(f"{what} {os.fspath(path)} is not UTF-8 text (bad byte at offset {exc.start})") from None


# ----------------------------------------------------------------------------- YAML


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts alias references, bounds nesting depth and refuses duplicate keys."""

    def __init__(self, stream: Any, origin: str, max_aliases: int, max_depth: int):
        super().__init__(stream)
        self._origin = origin
        self._aliases = 0
        self._max_aliases = max_aliases
        self._max_depth = max_depth
        self._depth = 0
        self._weight: dict[int, int] = {}
        self._keep: list[Any] = []
        self._max_nodes = MAX_EXPANDED_NODES

    def fail(self, mark: Any, problem: str) -> UnsafeInput:
        where = f" line {mark.line + 1}" if mark is not None else ""
        return UnsafeInput(f"{self._origin}:{where}: {problem}")

    # Every node's expanded size (itself plus what its aliases stand for) is tracked as it is composed, so an
    # alias bomb (9 aliases of 9 aliases of ...) is refused as soon as its expansion passes the limit, before
    # anything walks the shared structure.
    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self._max_aliases:
                raise self.fail(self.peek_event().start_mark,
                                f"more than {self._max_aliases} YAML alias references; accelcal files use none")
        mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > self._max_depth:
            raise self.fail(mark, f"nested deeper than {self._max_depth} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        key = id(node)
        if key not in self._weight:
            if isinstance(node, yaml.SequenceNode):
                w = 1 + sum(self._weight.get(id(c), 1) for c in node.value)
            elif isinstance(node, yaml.MappingNode):
                w = 1 + sum(self._weight.get(id(k), 1) + self._weight.get(id(v), 1) for k, v in node.value)
            else:
                w = 1
            self._weight[key] = w
            self._keep.append(node)  # ids stay unique while the nodes live
            if w > self._max_nodes:
                raise self.fail(mark, f"expands to more than {self._max_nodes} values through YAML aliases "
                                      f"(an alias bomb?); accelcal files use no aliases")
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:  # type: ignore[override]
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = key_node.value
                    if key in seen:
                        raise self.fail(key_node.start_mark,
                                        f"duplicate key {short(key)} (first at line {seen[key] + 1}); "
                                        f"the last one would silently replace the first")
                    seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, origin: str = "<yaml>", max_aliases: int = MAX_ALIASES, max_depth: int = MAX_DEPTH) -> Any:
    """``yaml.safe_load`` with the alias, depth and duplicate-key limits; YAML errors name the line, not the text."""
    loader = _BoundedLoader(io.StringIO(text), origin, max_aliases, max_depth)
    try:
        return loader.get_single_data()
    except UnsafeInput:
        raise
    except RecursionError:
        raise UnsafeInput(f"{origin}: nested too deeply to parse") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise UnsafeInput(f"{origin}:{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise UnsafeInput(f"{origin}: not valid YAML: {str(exc).splitlines()[0][:120]}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | os.PathLike, what: str = "YAML file", max_bytes: int = DEFAULT_MAX_BYTES,
              expect: type | None = None) -> Any:
    """Read ``path`` safely and parse it as bounded YAML; ``expect`` checks the top-level type."""
    data = parse_yaml(read_text(path, what, max_bytes), origin=f"{what} {os.fspath(path)}")
    return _expect(data, expect, what, path)


# ----------------------------------------------------------------------------- JSON


def _depth_ok(obj: Any, max_depth: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > max_depth:
            return False
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return True


def _no_dupes(origin: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                raise UnsafeInput(f"{origin}: duplicate key {short(k)}; the last one would silently replace the first")
            out[k] = v
        return out

    return hook


def _bad_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, origin: str = "<json>", max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` refusing duplicate keys, NaN/Infinity and nesting deeper than ``max_depth``."""
    # Cheap pre-check so a 100,000-deep document never reaches the recursive decoder.
    depth = best = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            best = max(best, depth)
            if best > max_depth:
                raise UnsafeInput(f"{origin}: nested deeper than {max_depth} levels")
        elif ch in "]}":
            depth -= 1
    try:
        data = json.loads(text, object_pairs_hook=_no_dupes(origin), parse_constant=_bad_constant)
    except UnsafeInput:
        raise
    except RecursionError:
        raise UnsafeInput(f"{origin}: nested too deeply to parse") from None
    except json.JSONDecodeError as exc:
        raise UnsafeInput(f"{origin}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}") from None
    except ValueError as exc:
        raise UnsafeInput(f"{origin}: not valid JSON: {exc}") from None
    if not _depth_ok(data, max_depth):  # brackets inside strings can fool the pre-check only towards refusing less
        raise UnsafeInput(f"{origin}: nested deeper than {max_depth} levels")
    return data


def load_json(path: str | os.PathLike, what: str = "JSON file", max_bytes: int = DEFAULT_MAX_BYTES,
              expect: type | None = None) -> Any:
    """Read ``path`` safely and parse it as strict JSON; ``expect`` checks the top-level type."""
    data = parse_json(read_text(path, what, max_bytes), origin=f"{what} {os.fspath(path)}")
    return _expect(data, expect, what, path)


def _expect(data: Any, expect: type | None, what: str, path: str | os.PathLike) -> Any:
    if expect is not None and not isinstance(data, expect):
        raise UnsafeInput(f"{what} {os.fspath(path)}: expected a {'mapping' if expect is dict else expect.__name__} "
                          f"at the top level, got {type(data).__name__}")
    return data


def _check_rows_whole(data: bytes, path: str | os.PathLike) -> None:
    """Every row of a CSV as accelcal writes it ends its line and has the header's number of fields.  pandas would
    pad a cut last row (a copy or a disk that stopped mid-file) with empty fields, and a fit would go on without it."""
    import csv

    if data and not data.endswith(b"\n"):
        raise ValueError(f"{os.fspath(path)}: the last row is cut short (no line end): a truncated file? accelcal ends "
                         f"every row it writes; re-copy the file or re-run the measurement")
    rows = csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))
    header = next(rows, None)
    if not header:
        return  # pandas says the file is empty
    for k, row in enumerate(rows, start=1):
        if row and len(row) != len(header):
            raise ValueError(f"{os.fspath(path)}: data row {k} has {len(row)} fields where the header has "
                             f"{len(header)}: a cut or hand-edited row; re-copy the file or re-run the measurement")


def read_csv(path: str | os.PathLike, what: str = "results CSV", max_bytes: int = 256 * 2**20,
             whole_rows: bool = False, **kwargs: Any):
    """``pandas.read_csv`` of a checked, size-capped regular file; ``whole_rows``: refuse a cut or short row (a file
    accelcal wrote, whose every row is whole) instead of letting pandas pad it."""
    import pandas as pd

    data = read_bytes(path, what, max_bytes)
    if whole_rows:
        _check_rows_whole(data, path)
    try:
        return pd.read_csv(io.BytesIO(data), **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UnsafeInput(f"{what} {os.fspath(path)}: not a readable CSV: {str(exc).splitlines()[0][:120]}") from None


def inside(base: str | os.PathLike, rel: str | os.PathLike, what: str = "path") -> Path:
    """``base/rel`` resolved, refused (UnsafeInput) when it leaves ``base`` (``..``, absolute paths, symlinks out)."""
    root = Path(base).resolve()
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise UnsafeInput(f"{what} {short(os.fspath(rel), 80)} points outside {root}; only files inside it are read")
    return target


def _first_non_finite(obj: Any, path: str = "") -> str | None:
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{path or '(top)'} = {obj}"
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for k, v in items:
        hit = _first_non_finite(v, f"{path}.{k}" if isinstance(k, str) else f"{path}[{k}]")
        if hit:
            return hit
    return None


def dumps_finite(obj: Any, what: str = "output", **kwargs: Any) -> str:
    """``json.dumps`` that refuses inf/NaN (invalid JSON) with a ValueError naming the first such field."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError:
        raise ValueError(f"{what} holds a non-finite number at {_first_non_finite(obj)}; refusing to write "
                         f"invalid JSON (check the profile's values)") from None
