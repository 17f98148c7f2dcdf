"""A function's return annotation, resolved when a codec needs it (at first call): what the
orjson codec decodes a cached value back to, so a hit has the type the miss had; and what the
codec asks of annotations (the wrappers and aliases around a type, a class's field types)."""

from __future__ import annotations

import contextlib
import inspect
import sys
import types
from collections import abc
from types import NoneType
from typing import (
    Annotated,
    Any,
    NewType,
    NotRequired,
    Required,
    get_args,
    get_origin,
    get_type_hints,
)

from cachedeco.errors import ConfigurationError

__all__ = [
    "MAPPINGS",
    "SEQUENCES",
    "SETS",
    "alias_value",
    "class_hints",
    "is_pydantic_model",
    "mapping_values",
    "return_annotation",
    "unwrap",
]

#: The generic origins the codec reads as a list, a set and a dict (``Sequence[X]`` is a list).
SEQUENCES = {list, abc.Sequence, abc.MutableSequence, abc.Collection, abc.Iterable}
SETS: dict[Any, type[set[Any]] | type[frozenset[Any]]] = {
    set: set, abc.Set: set, abc.MutableSet: set, frozenset: frozenset}
MAPPINGS = {dict, abc.Mapping, abc.MutableMapping}
_WRAPPERS = {Annotated, Required, NotRequired}


def return_annotation(func: object, name: str = "?") -> Any:
    """The resolved return annotation of func (Any when it has none).

    A string annotation (``from __future__ import annotations``) is evaluated in the
    function's module and in the names its body closes over, so a local class resolves once
    it exists: call this when the codec is needed (at first call), not at decoration. One
    that still cannot be resolved (a ``TYPE_CHECKING``-only import) is a ConfigurationError
    naming it: decoding to a guess would make a hit return another type than the miss did.
    """
    if isinstance(func, classmethod | staticmethod):
        func = func.__func__
    annotations = getattr(func, "__annotations__", None)
    if not isinstance(annotations, dict) or "return" not in annotations:
        return Any
    raw = annotations["return"]
    origin = inspect.unwrap(func) if callable(func) else func
    holder = types.SimpleNamespace(__annotations__={"return": raw})
    try:
        return get_type_hints(holder, getattr(origin, "__globals__", {}), _closure(origin))[
            "return"]
    except Exception as exc:  # NameError for a name that does not exist (yet), and the like
        raise ConfigurationError(
            f"cannot resolve the return annotation {raw!r} of {name} ({type(exc).__name__}: "
            f"{exc}): a cached value could not be decoded back to that type. Import the type "
            "at module level (not only under TYPE_CHECKING), drop the annotation, or choose "
            "serializer='pickle' or a custom serializer", function=name) from exc


def mapping_values(hint: Any) -> Any:
    """The value type ``V`` of a ``dict[K, V]`` / ``Mapping[K, V]`` annotation, else Any."""
    args = get_args(hint)
    return args[1] if get_origin(hint) in MAPPINGS and len(args) == 2 else Any


def unwrap(hint: Any) -> Any:
    """The annotation without what does not change the runtime value: Annotated, Required,
    NotRequired, NewType."""
    while True:
        if get_origin(hint) in _WRAPPERS:
            hint = get_args(hint)[0]
        elif isinstance(hint, NewType):
            hint = hint.__supertype__
        else:
            return hint


def class_hints(cls: type) -> dict[str, Any]:
    """Field annotations of cls; unresolvable ones (forward refs) degrade to untyped."""
    try:
        return get_type_hints(cls)
    except Exception:  # user annotations may not resolve: keep the ones that are real objects
        raw: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            raw.update(inspect.get_annotations(klass))
        return {name: tp for name, tp in raw.items() if not isinstance(tp, str)}


def is_pydantic_model(cls: type) -> bool:
    """A concrete pydantic v2 model, by duck typing, so pydantic is never imported here.

    ``BaseModel`` itself is excluded: as an annotation it says "some model", and validating the
    JSON as a bare BaseModel would silently drop every field.
    """
    pydantic = sys.modules.get("pydantic")
    return (callable(getattr(cls, "model_validate", None))
            and callable(getattr(cls, "model_dump", None))
            and (pydantic is None or cls is not getattr(pydantic, "BaseModel", None)))


def alias_value(hint: Any) -> Any:
    """What a type alias stands for (``type Pet = Cat | Dog``, typing_extensions'
    ``TypeAliasType``; ``Box[Cat]`` of ``type Box[T] = list[T]`` is ``list[Cat]``), else None."""
    alias = get_origin(hint) or hint
    if type(alias).__name__ != "TypeAliasType" or not hasattr(alias, "__value__"):
        return None
    value = alias.__value__
    if alias is not hint and getattr(alias, "__type_params__", None):
        with contextlib.suppress(TypeError):  # a value without those type variables
            value = value[get_args(hint)]
    return NoneType if value is None else value


def _closure(func: object) -> dict[str, Any]:
    """The names a function's body closes over that are bound now (a local class)."""
    code = getattr(func, "__code__", None)
    cells = getattr(func, "__closure__", None) or ()
    names: dict[str, Any] = {}
    for var, cell in zip(getattr(code, "co_freevars", ()), cells, strict=False):
        with contextlib.suppress(ValueError):  # a cell not filled yet
            names[var] = cell.cell_contents
    return names
