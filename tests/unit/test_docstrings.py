"""Every public parameter is documented in its docstring, and the repository documents itself.

The public objects are those the API reference (docs/reference.md) renders with
mkdocstrings: each function, each class's constructor and each listed method must name every
parameter of its signature in its Google-style ``Args:`` section (an asyncio twin that says
it is "the asyncio form of" a documented method takes that method's arguments; a
constructor the reference does not show is exempt: users do not call it). The site's
build (``mkdocs build --strict``) catches the converse: a documented parameter the signature
lacks. And no file points at notes kept outside the repository.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import griffe
import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
# A docstring that hands its parameters to another documented object.
DELEGATES = ("The asyncio form of", "Takes exactly the arguments of")


def rendered() -> Iterator[tuple[str, list[str] | None, bool]]:
    """``(path, members, init)`` for each ``::: path`` block of the reference; members None:
    all public ones, [] for ``members: false``; init: whether the constructor is shown."""
    blocks = re.split(r"^::: ", REFERENCE.read_text(), flags=re.M)[1:]
    for block in blocks:
        path, _, options = block.partition("\n")
        init = "merge_init_into_class: false" not in options
        listed = re.search(r"members: \[([^\]]*)\]|members:\n((?:\s+- \w+\n)+)|members: false",
                           options)
        if listed is None:
            yield path.strip(), None, init
        elif listed.group(0) == "members: false":
            yield path.strip(), [], init
        else:
            names = listed.group(1) or listed.group(2)
            yield path.strip(), re.findall(r"\w+", names), init


def documented(obj: griffe.Object | griffe.Alias) -> set[str]:
    sections = obj.docstring.parse("google") if obj.docstring else []
    # A dataclass's fields are its constructor's parameters: its Attributes section counts.
    return {p.name.lstrip("*") for s in sections if s.kind.value in ("parameters", "attributes")
            for p in s.value}


def undocumented(func: griffe.Object | griffe.Alias, docs: griffe.Object | griffe.Alias
                 ) -> list[str]:
    if docs.docstring and any(words in docs.docstring.value for words in DELEGATES):
        return []
    names = [p.name for p in func.parameters if p.name not in ("self", "cls")
             and not str(p.annotation).endswith((".args", ".kwargs"))]  # a ParamSpec's
    return sorted(set(names) - documented(docs))


def public_callables() -> Iterator[tuple[str, list[str]]]:
    package = griffe.load("cachedeco", search_paths=[str(ROOT)], resolve_aliases=True)
    for path, members, shown in rendered():
        obj = package[path.removeprefix("cachedeco.")]
        if obj.is_function:
            yield path, undocumented(obj, obj)
            continue
        if not obj.is_class:  # a module: its classes
            for cls in obj.classes.values():
                if not cls.name.startswith("_") and "__init__" in cls.members:
                    yield f"{path}.{cls.name}", undocumented(cls.members["__init__"], cls)
            continue
        init = obj.all_members.get("__init__")
        if shown and init is not None and init.is_function:
            yield path, undocumented(init, obj)
        for name in members if members is not None else []:
            member = obj.all_members[name]
            if member.is_function:  # not a property
                yield f"{path}.{name}", undocumented(member, member)


@pytest.mark.parametrize(("path", "missing"), list(public_callables()))
def test_every_public_parameter_is_documented(path: str, missing: list[str]) -> None:
    assert missing == [], f"{path}: parameters without a line in Args: {missing}"


def test_the_reference_renders_every_public_name() -> None:
    import cachedeco

    paths = {path for path, _, _ in rendered()}
    exported = {f"cachedeco.{name}" for name in cachedeco.__all__}
    shown_elsewhere = {"cachedeco.registry", "cachedeco.MISS", "cachedeco.BackendError",
                       "cachedeco.CacheError", "cachedeco.ConfigurationError",
                       "cachedeco.LockTimeout", "cachedeco.SerializationError"}
    assert exported - shown_elsewhere <= paths
    assert "cachedeco.errors" in paths


def test_nothing_points_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    outside = re.compile("|".join([r"API" r"\.md", r"DESIGN" r"\.md", r"\.\./" r"shared",
                                   r"\b[Ii]ssue" r" #?\d+"]))
    hits = [f"{name}:{n}" for name in tracked if (ROOT / name).is_file()
            for n, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1)
            if outside.search(line)]
    assert hits == []


def test_every_module_the_documentation_names_exists() -> None:
    # (a page named cachedeco.backends.queues_memory long after the module had moved)
    import importlib

    packages = "|".join(("api", "backends", "core", "flows", "runtime", "exporters", "contrib"))
    named = re.compile(rf"\bcachedeco\.((?:{packages})(?:\.\w+)+)")
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    missing = []
    for page in pages:
        for path in set(named.findall(page.read_text())):
            parts = path.split(".")
            # a module, or a name in one (cachedeco.contrib.fastapi.invalidations)
            for cut in (len(parts), len(parts) - 1):
                try:
                    module = importlib.import_module("cachedeco." + ".".join(parts[:cut]))
                except ImportError:
                    continue
                if cut == len(parts) or hasattr(module, parts[-1]):
                    break
            else:
                missing.append(f"{page.relative_to(ROOT)}: cachedeco.{path}")
    assert missing == []
