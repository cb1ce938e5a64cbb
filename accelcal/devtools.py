"""Developer checks on the source tree: the module import graph and the layering rules it must keep.

    $ python -m accelcal.devtools imports          # prints the graph; exit 1 on a cycle or a layering break
    $ python -m accelcal.devtools imports --quiet  # problems only

Reads the source with :mod:`ast` (nothing is imported, so it runs without
torch).  Every ``import`` counts, also those inside functions (a lazy import is
still a dependency); those under ``if TYPE_CHECKING:`` do not (they never run).
Rules (docs/ARCHITECTURE.md, "Layers"):

- no import cycle between accelcal modules;
- the measuring packages (kernels, collectives, validate's measuring modules) import nothing from the planner;
- the planner, the profile code, the model layer and the vocabulary import no torch.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = ["ImportGraph", "Problem", "check", "load_graph", "main"]

REPO = Path(__file__).resolve().parent.parent

PACKAGE_DIRS: dict[str, str] = {
    "accelcal": "accelcal", "accelcal.kernels": "kernels", "accelcal.collectives": "collectives",
    "accelcal.calibrate": "calibrate", "accelcal.planner": "planner", "accelcal.validate": "validate",
    "accelcal.models": "models",
}
"""Import name -> folder, as pyproject.toml's [tool.setuptools] package-dir installs them."""

MEASURING = ("accelcal.kernels", "accelcal.collectives", "accelcal.validate")
"""Packages that run torch on a device; they must not depend on the planner."""

MEASURING_ALLOWED_PLANNER = {
    "accelcal.validate.compare": "compares measured layers with the planner's prediction of them (its job)",
}
"""Modules of a measuring package that may import the planner, and why."""

TORCH_FREE = ("accelcal.planner", "accelcal.calibrate.profile", "accelcal.models", "accelcal.vocab")
"""Packages (and their submodules) that must import no torch: they run on laptops without it."""


@dataclass
class ImportGraph:
    """Module -> the accelcal modules and external top-level packages it imports."""

    modules: dict[str, Path] = field(default_factory=dict)
    """Every accelcal module and its file."""
    internal: dict[str, set[str]] = field(default_factory=dict)
    """Module -> accelcal modules it imports."""
    external: dict[str, set[str]] = field(default_factory=dict)
    """Module -> top-level names of non-accelcal packages it imports (torch, yaml, ...)."""


@dataclass(frozen=True)
class Problem:
    """One broken rule."""

    rule: str
    """``cycle``, ``measuring->planner`` or ``torch``."""
    detail: str
    """The modules involved."""


def _module_files(repo: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg, folder in PACKAGE_DIRS.items():
        base = repo / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = list(rel.parts)
            sub = ".".join(p for p in parts[:-1])
            # A folder belongs to another entry of PACKAGE_DIRS only via that entry (none are nested today).
            name = ".".join(x for x in (pkg, sub, parts[-1] if parts[-1] != "__init__" else "") if x)
            out[name] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            t = node.test
            name = t.id if isinstance(t, ast.Name) else t.attr if isinstance(t, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def load_graph(repo: Path = REPO) -> ImportGraph:
    """Parse every accelcal module under ``repo`` into an :class:`ImportGraph`."""
    g = ImportGraph(modules=_module_files(repo))
    for mod, path in g.modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip = _type_checking_lines(tree)
        internal, external = g.internal.setdefault(mod, set()), g.external.setdefault(mod, set())
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in g.modules else prefix for a in node.names]
            for t in targets:
                if t == "accelcal" or t.startswith("accelcal."):
                    while t not in g.modules and "." in t:
                        t = t.rsplit(".", 1)[0]
                    if t != mod:
                        internal.add(t)
                elif t:
                    external.add(t.split(".")[0])
    return g


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _in(mod: str, pkgs: Sequence[str]) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in pkgs)


def check(g: ImportGraph) -> list[Problem]:
    """Every broken layering rule of ``g``."""
    problems = [Problem("cycle", " <-> ".join(c)) for c in _cycles(g.internal)]
    for mod in sorted(g.internal):
        if _in(mod, MEASURING) and mod not in MEASURING_ALLOWED_PLANNER:
            for t in sorted(g.internal[mod]):
                if _in(t, ("accelcal.planner",)):
                    problems.append(Problem("measuring->planner", f"{mod} imports {t}"))
        if _in(mod, TORCH_FREE) and "torch" in g.external.get(mod, ()):
            problems.append(Problem("torch", f"{mod} imports torch"))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m accelcal.devtools", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("imports", help="print the accelcal import graph; exit 1 on a cycle or a layering break")
    imp.add_argument("--quiet", action="store_true", help="print the problems only")
    imp.add_argument("--repo", default=str(REPO), help="source tree to read (default: this checkout)")
    args = parser.parse_args(argv)
    g = load_graph(Path(args.repo))
    if not args.quiet:
        for mod in sorted(g.internal):
            deps = sorted(g.internal[mod])
            ext = sorted(g.external.get(mod, ()) & {"torch", "yaml", "scipy", "numpy", "pandas"})
            print(f"{mod} -> {', '.join(deps) or '-'}" + (f"  [{', '.join(ext)}]" if ext else ""))
    problems = check(g)
    for p in problems:
        print(f"devtools imports: {p.rule}: {p.detail}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(g.modules)} modules, {sum(len(v) for v in g.internal.values())} internal imports, "
              f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
