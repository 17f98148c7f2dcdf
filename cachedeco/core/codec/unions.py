"""Unions whose members one JSON form cannot tell apart, stored with the member they were.

A union is decoded by the JSON type its value arrives as (see :mod:`.typed`): in
``int | Decimal`` a number and a string say which member a value is. When two members arrive
as one JSON type and rebuild it differently (``Cat | Dog``, two dataclasses that both arrive
as objects; ``str | datetime``, both strings), the JSON form alone cannot say. Such a union is
stored *tagged*: a value as ``[i, json]``, ``i`` the index of the member it was returned as
(decided on store by checking the value against each member's annotation, exact types before
subclasses, so ``True`` in ``int | bool`` is the bool), or ``-1`` when it fits none (stored and
returned as its JSON form, as an untyped value would be). ``None`` stays ``null``. A hit pays
one index; only the store checks types.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Sequence
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, is_typeddict

from cachedeco.core.codec.annotations import alias_value, unwrap
from cachedeco.core.codec.converters import Converter

__all__ = ["conforms", "tagged"]

_COLLECTIONS = {list, set, frozenset, abc.Sequence, abc.MutableSequence, abc.Collection,
                abc.Iterable, abc.Set, abc.MutableSet}
_MAPPINGS = {dict, abc.Mapping, abc.MutableMapping}
_CONCRETE = {list, set, frozenset, dict}  # what an exact check compares the class with
_TEXT = (str, bytes, bytearray)  # sequences, but never what a Sequence[X] annotation means


def tagged(members: Sequence[Any], converters: Sequence[Converter | None],
           encoders: Sequence[Converter | None]) -> tuple[Converter, Converter]:
    """The decoder and the encoder of a union stored tagged, from its members' annotations
    and their compiled converters (None: the JSON value is already the member's value) and
    encoders (None: orjson writes the member's value as it is)."""
    count = len(members)
    order = sorted(range(count), key=lambda index: unwrap(members[index]) in (Any, object))

    def encode(value: Any) -> Any:
        """``[i, json]`` for the first member the value is exactly, else the first it fits
        (``Any`` last)."""
        if value is None:
            return None
        for exact in (True, False):
            for index in order:
                if conforms(members[index], value, exact):
                    write = encoders[index]
                    return [index, value if write is None else write(value)]
        return [-1, value]

    def decode(value: Any) -> Any:
        """The member's converter applied to the JSON form the tag names."""
        if value is None:
            return None
        index, payload = value
        if type(index) is not int or not -1 <= index < count:
            raise ValueError("not a tagged union value")  # (never the value: logs)
        convert = None if index < 0 else converters[index]
        return payload if convert is None else convert(payload)

    return decode, encode


def conforms(hint: Any, value: Any, exact: bool) -> bool:
    """Whether ``value`` is of the annotated type; ``exact``: of that very class (not a
    subclass: ``True`` is no ``int``), containers and their items alike. ``Any`` (and what
    cannot be checked, a type variable) takes any value, but never exactly: a member that
    names the value's class comes first."""
    hint = unwrap(hint)
    if hint is Any:  # (a class from Python 3.11 on, that isinstance refuses)
        return not exact
    if (aliased := alias_value(hint)) is not None:
        return conforms(aliased, value, exact)
    origin = get_origin(hint)
    args = get_args(hint)
    if origin is Literal:
        return any(type(value) is type(member) and value == member for member in args)
    if origin is Union or origin is UnionType:
        return any(conforms(member, value, exact) for member in args)
    if origin is None:
        if hint is None or hint is NoneType:
            return value is None
        return _instance(hint, value, exact) if isinstance(hint, type) else not exact
    if origin is tuple:
        return _tuple(args, value, exact)
    if origin in _COLLECTIONS:
        return (_container(origin, value, exact) and not isinstance(value, _TEXT)
                and (not args or all(conforms(args[0], item, exact) for item in value)))
    if origin in _MAPPINGS:
        key, item = args if len(args) == 2 else (Any, Any)
        return _container(origin, value, exact) and all(
            conforms(key, k, exact) and conforms(item, v, exact) for k, v in value.items())
    return _instance(origin, value, exact) if isinstance(origin, type) else not exact


def _container(origin: Any, value: Any, exact: bool) -> bool:
    """A ``list[...]`` value is a list (exactly so when ``exact``); an ``abc`` one any
    instance of that abstract class."""
    return type(value) is origin if exact and origin in _CONCRETE else isinstance(value, origin)


def _tuple(args: tuple[Any, ...], value: Any, exact: bool) -> bool:
    """``tuple[X, ...]``, ``tuple[X, Y]`` and ``tuple[()]``."""
    if not (type(value) is tuple if exact else isinstance(value, tuple)):
        return False
    if len(args) == 2 and args[1] is Ellipsis:
        return all(conforms(args[0], item, exact) for item in value)
    return len(args) == len(value) and all(
        conforms(arg, item, exact) for arg, item in zip(args, value, strict=True))


def _instance(cls: type, value: Any, exact: bool) -> bool:
    """A class member: its instances (exact: the class itself; an int is a loose float)."""
    if is_typeddict(cls):
        names: Any = getattr(cls, "__annotations__", {})
        required: Any = getattr(cls, "__required_keys__", frozenset())
        return isinstance(value, dict) and required <= value.keys() <= set(names)
    if exact:
        return type(value) is cls
    if cls is float:
        return isinstance(value, int | float)
    try:
        return isinstance(value, cls)
    except TypeError:  # a class isinstance refuses (a Protocol not runtime_checkable): Any
        return True

