"""The Python snippets of the README and docs/ use the package as it is: each one parses, every
``cachedeco.NAME`` it names exists, its calls of the package's functions and of a registry's
methods bind to their signatures, and what it calls on a decorated function is there. The
snippets are fragments (``db``, ``User`` come from the reader's service), so they are read,
not run; the examples/ directory holds the programs that run (tests/deploy/test_examples.py).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cachedeco

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.S | re.M)
DECORATORS = ("cached", "write_through", "write_behind", "cached_many")
REGISTRIES = ("reg", "registry")  # the names the docs give a Registry


def _snippets() -> Iterator[tuple[str, str]]:
    for page in PAGES:
        text = page.read_text()
        for block in BLOCK.finditer(text):
            line = text[:block.start()].count("\n") + 2
            yield f"{page.relative_to(ROOT)}:{line}", textwrap.dedent(block.group(2))


SNIPPETS = dict(_snippets())


def _decorated(reg: cachedeco.Registry) -> dict[str, object]:
    """One real function of each decorator, to look their methods up on."""
    def plain(i: int = 0) -> int:
        return i

    def many(ids: list[int]) -> dict[int, int]:
        return {i: i for i in ids}

    reader = reg.cached()(plain)
    return {"cached": reader, "write_through": reg.write_through(reader)(plain),
            "write_behind": reg.write_behind(reader, flush=lambda records: None)(plain),
            "cached_many": reg.cached_many(key="n:{id}")(many)}


def _binds(target: object, call: ast.Call) -> str | None:
    """Why ``call``'s arguments do not fit ``target``'s signature (None: they do)."""
    if not callable(target):
        return None
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin without one
        return None
    starred = any(isinstance(a, ast.Starred) for a in call.args) or any(
        k.arg is None for k in call.keywords)
    if starred:
        return None
    try:
        signature.bind(*[None] * len(call.args), **{k.arg: None for k in call.keywords if k.arg})
    except TypeError as exc:
        return str(exc)
    return None


def _problems(source: str, reg: cachedeco.Registry, made: dict[str, object]) -> list[str]:
    tree = compile(source, "<snippet>", "exec",
                   ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    kinds: dict[str, str] = {}  # decorated function -> its decorator
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for deco in node.decorator_list:
                named = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(named, ast.Attribute) and named.attr in DECORATORS:
                    kinds[node.name] = named.attr
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            found += _attribute(node, reg, made, kinds)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = _owner(node.func.value, reg)
            if target is not None and (why := _binds(getattr(target, node.func.attr, None),
                                                     node)):
                found.append(f"{ast.unparse(node.func)}(…): {why}")
    return found


def _owner(node: ast.expr, reg: cachedeco.Registry) -> Any:
    """The object a snippet's ``cachedeco`` / ``reg`` / ``cachedeco.registry`` stands for."""
    if isinstance(node, ast.Name):
        return cachedeco if node.id == "cachedeco" else reg if node.id in REGISTRIES else None
    if (isinstance(node, ast.Attribute) and node.attr == "registry"
            and isinstance(node.value, ast.Name) and node.value.id == "cachedeco"):
        return reg
    return None


def _attribute(node: ast.Attribute, reg: cachedeco.Registry, made: dict[str, object],
               kinds: dict[str, str]) -> list[str]:
    base = node.value
    if isinstance(base, ast.Name) and base.id in kinds:
        kind = kinds[base.id]
        return [] if hasattr(made[kind], node.attr) else [
            f"{base.id}.{node.attr}: a @{kind} function has no {node.attr!r}"]
    owner = _owner(base, reg)
    if owner is not None and not hasattr(owner, node.attr):
        return [f"{ast.unparse(node)}: no such name"]
    return []


def test_the_pages_hold_the_snippets_read_here() -> None:
    assert len(SNIPPETS) >= 40, sorted(SNIPPETS)  # the pattern still finds them


@pytest.mark.parametrize("where", sorted(SNIPPETS))
def test_a_snippet_uses_the_package_as_it_is(where: str) -> None:
    with cachedeco.Registry("memory://", stats_interval=0) as reg:
        assert _problems(SNIPPETS[where], reg, _decorated(reg)) == []


def test_a_snippet_that_names_what_is_not_there_is_caught() -> None:
    wrong = '''
@cachedeco.cached(ttl=60, tag=["x"])
def get_user(user_id: int) -> dict: ...

get_user.invalidate_tag("x")
cachedeco.invalidate_tag("x")
reg.clear(everything=True)
'''
    with cachedeco.Registry("memory://", stats_interval=0) as reg:
        found = _problems(wrong, reg, _decorated(reg))
    assert sorted(f.split(":")[0] for f in found) == [
        "cachedeco.cached(…)", "cachedeco.invalidate_tag", "get_user.invalidate_tag",
        "reg.clear(…)"], found
