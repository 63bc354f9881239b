"""The project's import graph, read from the source (every import, module level or inside a function)."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "pipeline", "bench", "tests")


def module_files() -> dict[str, Path]:
    """{dotted module name: file} for every project module."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `name` refers to (a name inside a module resolves to the module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@lru_cache(maxsize=None)
def imports(module: str) -> frozenset[str]:
    """The project modules `module` imports directly (packages on the way included: importing
    a.b.c runs a/__init__.py and a/b/__init__.py)."""
    modules = module_files()
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target and target != module:
                parts = target.split(".")
                found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)
    found.discard(module)
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, len(module.split(".")))}
    return frozenset(found - ancestors)  # a module's own packages are already being imported when it runs


def closure(module: str) -> set[str]:
    """`module` and everything it imports, transitively."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += imports(m)
    return seen
