"""The package's layers: ``core <- backends <- runtime <- flows <- api <- (the public modules)``.

Each module imports only its own layer and those below it, and no two modules import each
other, directly or around a cycle. Every import counts: ``TYPE_CHECKING`` blocks and imports
inside functions too, and importing ``a.b.c`` counts as importing ``a.b`` and ``a`` (their
``__init__`` runs first), but for the root package ``cachedeco`` itself. The web frameworks
(FastAPI, Starlette, Django) are imported by ``cachedeco.contrib`` only, and ``import
cachedeco`` imports none of them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cachedeco"
#: Bottom to top; a module's layer is its first package under ``cachedeco``.
LAYERS = ("errors", "core", "backends", "runtime", "flows", "api")
TOP = len(LAYERS)  # cachedeco/__init__.py, cli, __main__, metrics, contrib …


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else TOP


def _imports(module: str, path: Path, known: set[str]) -> Iterator[str]:
    """The cachedeco modules ``module`` imports, with their packages (but the root)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        for target in targets:
            parts = target.split(".")
            for end in range(2, len(parts) + 1):
                name = ".".join(parts[:end])
                if name in known and name != module:
                    yield name


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {m: set(_imports(m, p, known)) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    graph = _graph()
    upward = sorted(f"{m} ({LAYERS[_layer(m)] if _layer(m) < TOP else 'top'}) imports {t}"
                    for m, targets in graph.items() for t in targets if _layer(t) > _layer(m))
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_check_sees_imports_of_every_kind() -> None:
    graph = _graph()
    assert "cachedeco.core.entry" in graph["cachedeco.flows.bound"]  # a plain import
    assert "cachedeco.flows" in graph["cachedeco.api.cached"]  # and its packages
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


FRAMEWORKS = ("fastapi", "starlette", "django")


def _third_party(path: Path) -> set[str]:
    """The top-level names of the absolute imports in a file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_contrib_imports_a_web_framework() -> None:
    outside = sorted(f"{module} imports {name}" for module, path in _modules().items()
                     if not module.startswith("cachedeco.contrib.")
                     for name in _third_party(path) & set(FRAMEWORKS))
    assert outside == []
    assert "django" in _third_party(PACKAGE / "contrib" / "django" / "apps.py")  # it sees them


def test_import_cachedeco_imports_no_framework_and_no_contrib() -> None:
    code = ("import sys, cachedeco, cachedeco.cli, cachedeco.metrics; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{FRAMEWORKS!r} or m.startswith('cachedeco.contrib')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"
