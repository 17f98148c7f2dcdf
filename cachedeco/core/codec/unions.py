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

from collections.abc import Callable, Sequence
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin, is_typeddict

from cachedeco.core.codec.annotations import MAPPINGS, SEQUENCES, SETS, alias_value, unwrap
from cachedeco.core.codec.converters import Converter

__all__ = ["tagged"]

_COLLECTIONS = SEQUENCES | SETS.keys()  # what a list or a set of items is checked as
_CONCRETE = {list, tuple, set, frozenset, dict}  # what an exact check compares the class with
_TEXT = (str, bytes, bytearray)  # sequences, but never what a Sequence[X] annotation means
Test = Callable[[Any], bool]  # whether a value is of one member's type


def tagged(members: Sequence[Any], converters: Sequence[Converter | None],
           encoders: Sequence[Converter | None]) -> tuple[Converter, Converter]:
    """The decoder and the encoder of a union stored tagged, from its members' annotations
    and their compiled converters (None: the JSON value is already the member's value) and
    encoders (None: orjson writes the member's value as it is)."""
    count = len(members)
    order = sorted(range(count), key=lambda index: unwrap(members[index]) in (Any, object))
    tests = [(index, compiler.of(members[index]), encoders[index])
             for compiler in (_Tests(exact=True), _Tests(exact=False)) for index in order]

    def encode(value: Any) -> Any:
        """``[i, json]`` for the first member the value is exactly, else the first it fits
        (``Any`` last)."""
        if value is None:
            return None
        for index, test, write in tests:
            if test(value):
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


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


class _Tests:
    """Compiles annotations into type tests, once per union (a store then runs closures, not
    the annotation). ``exact``: of that very class, not a subclass (``True`` is no ``int``),
    containers and their items alike. ``Any`` (and what cannot be checked: a type variable,
    a Protocol isinstance refuses) takes any value, but never exactly, so a member that names
    the value's class comes first."""

    def __init__(self, exact: bool) -> None:
        self.exact = exact
        self._aliases: dict[int, list[Test]] = {}  # a recursive alias's test, once made

    def of(self, hint: Any) -> Test:
        """The test of one annotation."""
        hint = unwrap(hint)
        if hint is Any:  # (a class from Python 3.11 on, that isinstance refuses)
            return _never if self.exact else _always
        if (aliased := alias_value(hint)) is not None:
            return self._alias(hint, aliased)
        origin, args = get_origin(hint), get_args(hint)
        if origin is Literal:
            return lambda value: any(type(value) is type(member) and value == member
                                     for member in args)
        if origin is Union or origin is UnionType:
            tests = [self.of(member) for member in args]
            return lambda value: any(test(value) for test in tests)
        if origin is None:
            if hint is None or hint is NoneType:
                return lambda value: value is None
            return self._instance(hint) if isinstance(hint, type) else self.of(Any)
        if origin is tuple:
            return self._tuple(args)
        if origin in _COLLECTIONS:
            kind, item = self._container(origin), self.of(args[0]) if args else _always
            return lambda value: (kind(value) and not isinstance(value, _TEXT)
                                  and all(map(item, value)))
        if origin in MAPPINGS:
            kind = self._container(origin)
            key, item = (self.of(arg) for arg in (args if len(args) == 2 else (Any, Any)))
            return lambda value: kind(value) and all(
                key(k) and item(v) for k, v in value.items())
        return self._instance(origin) if isinstance(origin, type) else self.of(Any)

    def _alias(self, alias: Any, value: Any) -> Test:
        """A type alias's test, made once: a recursive alias reaches itself through a cell."""
        cell = self._aliases.get(id(alias))
        if cell is None:
            cell = self._aliases[id(alias)] = []
            cell.append(self.of(value))
        return lambda value: cell[0](value)  # noqa: PLW0108 - cell[0] may not exist yet

    def _container(self, origin: Any) -> Test:
        """A ``list[...]`` (or tuple) value is a list (exactly so when ``exact``); an ``abc`` one
        any instance of that abstract class."""
        if self.exact and origin in _CONCRETE:
            return lambda value: type(value) is origin
        return lambda value: isinstance(value, origin)

    def _tuple(self, args: tuple[Any, ...]) -> Test:
        """``tuple[X, ...]``, ``tuple[X, Y]`` and ``tuple[()]``."""
        kind = self._container(tuple)
        if len(args) == 2 and args[1] is Ellipsis:
            item = self.of(args[0])
            return lambda value: kind(value) and all(map(item, value))
        items = [self.of(arg) for arg in args]
        return lambda value: kind(value) and len(value) == len(items) and all(
            test(item) for test, item in zip(items, value, strict=True))

    def _instance(self, cls: type) -> Test:
        """A class member: its instances (exact: the class itself; an int is a loose float)."""
        if is_typeddict(cls):
            names = frozenset(getattr(cls, "__annotations__", {}))
            required: Any = getattr(cls, "__required_keys__", frozenset())
            return lambda value: isinstance(value, dict) and required <= value.keys() <= names
        if self.exact:
            return lambda value: type(value) is cls
        if cls is float:
            return lambda value: isinstance(value, int | float)
        try:
            isinstance(None, cls)
        except TypeError:  # a class isinstance refuses (a Protocol not runtime_checkable)
            return _always
        return lambda value: isinstance(value, cls)
