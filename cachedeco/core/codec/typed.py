"""Typed decoding: rebuild the value a function's return annotation names from its JSON form.

The annotation is compiled once, when the codec is made, into a tree of small converters. A
converter of ``None`` means "the JSON value already is the right value" and is skipped, so
JSON-typed returns (``dict``, ``list[int]``, ``Any``...) cost nothing on a cache hit. Every
node also records the JSON types its values arrive as: a union picks its member by one lookup.

Typed: dataclasses (by field types), pydantic models, NamedTuple, TypedDict, ``datetime``,
``date``, ``time``, ``timedelta``, ``UUID``, ``Decimal``, ``bytes``, ``Enum``, ``Fraction``,
``ipaddress`` and ``pathlib`` values, ``str``/``int``/``float`` subclasses, ``tuple``, ``list``,
``set``, ``frozenset``, ``dict`` (keys too), ``Counter``, ``OrderedDict``, ``deque``, the
``collections.abc`` containers, ``Optional``, unions (tagged with their member where the JSON
type cannot tell them apart: :mod:`.unions`), ``Literal``, ``NewType``, ``Annotated``, type
aliases. Left as the JSON value: ``Any``, type variables, unknown classes.

Limits: the annotation names what is rebuilt (a returned subclass of the annotated class comes
back as that class). Data that does not fit the annotation raises, and the caller treats it
as a miss. ``None`` passes through only where ``Optional`` (or the top level) allows it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import ipaddress
import pathlib
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from types import NoneType, UnionType
from typing import Any, Literal, NamedTuple, Union, cast, get_args, get_origin, is_typeddict
from uuid import UUID

import orjson

from cachedeco.core.codec.annotations import (
    MAPPINGS,
    SEQUENCES,
    SETS,
    alias_value,
    class_hints,
    is_pydantic_model,
    unwrap,
)
from cachedeco.core.codec.converters import (
    REBUILT,
    Converter,
    dataclass_converter,
    dispatch,
    each_name,
    each_position,
    from_base64,
    from_json,
    identity,
    json_form,
    json_key,
    lookup,
    map_items,
    map_list,
    map_set,
    map_tuple,
    map_values,
    maybe,
    parse_date,
    parse_datetime,
    parse_duration,
    rebuild,
    skip_none,
    to_base64,
    write_duration,
)
from cachedeco.core.codec.unions import tagged

__all__ = ["Converter", "Plan", "build_plan"]


_JSON_TYPES: frozenset[type] = frozenset({str, int, float, bool, NoneType, list, dict})
_LIST: frozenset[type] = frozenset({list})
_DICT: frozenset[type] = frozenset({dict})
_STR: frozenset[type] = frozenset({str})


class _Node(NamedTuple):
    """One compiled annotation: its converter (None = identity), the JSON types it comes as,
    and what its values are turned into before orjson writes them (None: nothing)."""

    convert: Converter | None
    shapes: frozenset[type]
    encode: Converter | None = None


_ANY = _Node(None, _JSON_TYPES)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """Everything the JSON codec needs to know about one return annotation, decided once."""

    convert: Converter | None  # applied to the parsed JSON; None: orjson.loads alone is exact
    model: Any  # a top-level pydantic model class: decode the bytes with model_validate_json
    option: int  # extra orjson options the types need for an exact round trip
    encode: Converter | None = None  # applied before orjson.dumps (bytes, tagged unions)


def build_plan(hint: Any) -> Plan:
    """Compile a return annotation into a Plan: converter tree, pydantic fast path, options."""
    builder = _Builder()
    node = builder.build(hint)
    top = unwrap(hint)
    model = top if isinstance(top, type) and is_pydantic_model(top) else None
    return Plan(node.convert, model, builder.option, node.encode)


_Pair = tuple[Converter | None, Converter | None]  # a class's converter and encoder


#: What JSON has no form for, written as text: bytes (base64), timedelta (seconds), and the
#: classes whose str() their constructor reads back.
_ENCODED: dict[type, _Node] = {
    bytes: _Node(from_base64, _STR, to_base64),
    dt.timedelta: _Node(parse_duration, _STR, write_duration),
    **{cls: _Node(cls, _STR, str) for cls in (
        Fraction, ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network,
        ipaddress.IPv6Network, ipaddress.IPv4Interface, ipaddress.IPv6Interface,
        pathlib.PurePath, pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.Path)}}
_LEAVES: tuple[tuple[type, Converter, int], ...] = (
    # Dates and times bypass orjson, which rounds UTC offsets to the minute (and rejects an
    # aware time): Python's isoformat keeps seconds, so historical zones round-trip exactly,
    # and a datetime in a named zone keeps its name (a date-annotated function may return one).
    (dt.datetime, parse_datetime, orjson.OPT_PASSTHROUGH_DATETIME),
    (dt.date, parse_date, orjson.OPT_PASSTHROUGH_DATETIME),
    (dt.time, dt.time.fromisoformat, orjson.OPT_PASSTHROUGH_DATETIME),
    (UUID, UUID, 0),
    (Decimal, Decimal, 0),
)


class _Builder:
    """Compiles annotations into converters; one per plan, it memoizes classes for recursion."""

    def __init__(self) -> None:
        self.option = 0
        self._memo: dict[type, _Node] = {}
        self._aliases: set[Any] = set()  # the type aliases being compiled

    def build(self, tp: Any) -> _Node:
        """Compile any annotation."""
        tp = unwrap(tp)
        if (value := alias_value(tp)) is not None:
            return self._alias(tp, value)
        origin = get_origin(tp)
        if origin is Literal:
            return self._literal(get_args(tp))
        if origin is Union or origin is UnionType:
            return self._union(get_args(tp))
        if origin is not None:
            return self._generic(origin, get_args(tp))
        if tp is None or tp is NoneType:
            return _Node(None, frozenset({NoneType}))
        return self._class(tp) if isinstance(tp, type) else _ANY

    def _class(self, cls: type) -> _Node:
        """Compile a plain class."""
        if cls in (str, int, bool):
            return _Node(None, frozenset({cls}))
        if cls is float:  # an int is a valid float, and comes back as an int
            return _Node(None, frozenset({float, int}))
        if cls in _ENCODED:
            return _ENCODED[cls]
        if issubclass(cls, enum.Enum):
            return self._enum(cls)
        for leaf, parse, option in _LEAVES:
            if issubclass(cls, leaf):
                self.option |= option
                return _Node(parse, _STR)
        if is_typeddict(cls):
            return self._recursive(cls, _DICT, self._typeddict)
        if is_pydantic_model(cls):
            root = getattr(cls, "__pydantic_root_model__", False)
            return _Node(from_json(cast(Any, cls).model_validate_json),
                         _JSON_TYPES if root else _DICT)
        if dataclasses.is_dataclass(cls):
            return self._recursive(cls, _DICT, self._dataclass)
        if issubclass(cls, tuple) and hasattr(cls, "_fields"):
            return self._recursive(cls, _LIST, self._namedtuple)
        if cls in (list, dict):
            return _Node(None, frozenset({cls}))
        if cls in (tuple, set, frozenset):
            return _Node(cls, _LIST)
        if cls in REBUILT:
            return self._generic(cls, ())
        for base in (str, int, float):  # a str/int/float subclass such as `class Name(str)`
            if issubclass(cls, base):
                return _Node(cls, self._class(base).shapes)
        return _ANY

    def _alias(self, alias: Any, value: Any) -> _Node:
        """Compile a type alias (``type Pet = Cat | Dog``) as its value; where a recursive
        alias names itself again, Any."""
        if alias in self._aliases:
            return _ANY
        self._aliases.add(alias)
        try:
            return self.build(value)
        finally:
            self._aliases.discard(alias)

    def _generic(self, origin: Any, args: tuple[Any, ...]) -> _Node:
        """Compile a parameterized generic such as list[X] or dict[K, V]."""
        if origin in SEQUENCES:
            item = self.build(args[0] if args else Any)
            return _Node(maybe(map_list, item.convert), _LIST, maybe(map_list, item.encode))
        if origin is tuple:
            return self._tuple(args)
        if origin in SETS:
            kind = SETS[origin]
            item = self.build(args[0] if args else Any)
            return _Node(kind if item.convert is None else map_set(kind, item.convert), _LIST,
                         maybe(map_list, item.encode))
        if origin in MAPPINGS:
            key, value = args if len(args) == 2 else (Any, Any)
            return self._dict(key, value)
        if origin in REBUILT:  # Counter, OrderedDict, deque: as their base, then their class
            base, base_args = REBUILT[origin]
            node = self._generic(base, base_args(args))
            return _Node(rebuild(origin, node.convert), node.shapes, node.encode)
        if isinstance(origin, type):  # a generic dataclass, NamedTuple or TypedDict: Box[int]
            return self._class(origin)
        return _ANY

    def _recursive(self, cls: type, shapes: frozenset[type], make: Callable[[type], _Pair],
                   ) -> _Node:
        """Compile a class with fields once; a self-reference goes through late-bound cells.
        A class whose fields need encoding (bytes, a tagged union) is compiled again, its
        self-references (and the classes compiled on the way) then encoding too."""
        if cls in self._memo:
            return self._memo[cls]
        cells: list[Converter] = []

        def forward(value: Any) -> Any:
            """Reach the converter of cls, which is being built (a self-referencing class)."""
            return cells[0](value)

        def forward_encode(value: Any) -> Any:
            """Reach the encoder of cls, as :func:`forward` its converter."""
            return cells[1](value)

        known = set(self._memo)
        self._memo[cls] = _Node(forward, shapes)
        convert, encode = make(cls)
        if encode is not None:
            for made in set(self._memo) - known:
                del self._memo[made]
            self._memo[cls] = _Node(forward, shapes, forward_encode)
            convert, encode = make(cls)
        cells += [convert or identity, encode or identity]
        node = self._memo[cls] = _Node(convert, shapes, encode)
        return node

    def _dataclass(self, cls: type) -> _Pair:
        """Rebuild a dataclass: init fields through the constructor, the others set after.
        A class with ``InitVar`` arguments is rebuilt without its constructor: the stored
        fields are what ``__post_init__`` made of them, and the arguments were not stored."""
        hints = class_hints(cls)
        init: list[tuple[str, Converter | None]] = []
        late: list[tuple[str, Converter | None]] = []
        encoders: dict[str, Converter | None] = {}
        for field in dataclasses.fields(cls):
            node = self.build(hints.get(field.name, Any))
            (init if field.init else late).append((field.name, node.convert))
            encoders[field.name] = node.encode
            if field.name.startswith("_") or not field.init:
                # orjson leaves out such fields: serialize this dataclass field by field instead
                self.option |= orjson.OPT_PASSTHROUGH_DATACLASS
        initvars = any(isinstance(hint, dataclasses.InitVar) for hint in hints.values())
        convert = dataclass_converter(cls, init, late, construct=not initvars)
        write = each_name(encoders)
        if write is None:
            return convert, None
        return convert, lambda value: write({name: getattr(value, name) for name in encoders})

    def _namedtuple(self, cls: type) -> _Pair:
        """Rebuild a NamedTuple from its JSON list, converting each field."""
        hints = class_hints(cls)
        nodes = [self.build(hints.get(name, Any)) for name in cast(Any, cls)._fields]
        convert = each_position([node.convert for node in nodes])
        encode = each_position([node.encode for node in nodes])
        if convert is None:
            return (lambda value: cls(*value)), encode
        return (lambda value: cls(*convert(value))), encode

    def _typeddict(self, cls: type) -> _Pair:
        """Convert the keys of a TypedDict whose annotations are not JSON types."""
        nodes = {name: self.build(tp) for name, tp in class_hints(cls).items()}
        return (each_name({name: node.convert for name, node in nodes.items()}),
                each_name({name: node.encode for name, node in nodes.items()}))

    def _tuple(self, args: tuple[Any, ...]) -> _Node:
        """Compile tuple, tuple[X, ...] and tuple[X, Y]."""
        if len(args) == 2 and args[1] is Ellipsis:
            item = self.build(args[0])
            return _Node(tuple if item.convert is None else map_tuple(item.convert), _LIST,
                         maybe(map_list, item.encode))
        nodes = [self.build(arg) for arg in args]
        convert = each_position([node.convert for node in nodes])
        encode = each_position([node.encode for node in nodes])
        if convert is None:
            return _Node(tuple, _LIST, encode)
        return _Node(lambda value: tuple(convert(value)), _LIST, encode)

    def _dict(self, key: Any, value: Any) -> _Node:
        """Compile dict[K, V]: JSON keys are strings, so K is parsed back too."""
        convert_key = self._key(key)
        item = self.build(value)
        encode = maybe(map_values, item.encode)
        if convert_key is None and item.convert is None:
            return _Node(None, _DICT, encode)
        if convert_key is None:
            return _Node(maybe(map_values, item.convert), _DICT, encode)
        return _Node(map_items(convert_key, item.convert), _DICT, encode)

    def _key(self, tp: Any) -> Converter | None:
        """Converter from the key string orjson writes back to a K; None when K is str."""
        tp = unwrap(tp)
        members: list[Any] = []
        if get_origin(tp) is Literal:
            members = list(get_args(tp))
        elif tp is bool or (isinstance(tp, type) and issubclass(tp, enum.Enum)):
            members = [True, False] if tp is bool else list(tp)
        elif isinstance(tp, type) and issubclass(tp, int | float):
            return tp  # int("1"), float("1.5"), UserId("7")
        if members:
            try:
                table = {json_key(member): member for member in members}
            except TypeError:  # a member orjson cannot write as a key: leave the keys as strings
                return None
            if all(type(member) is str and key == member for key, member in table.items()):
                return None
            return table.__getitem__
        node = self.build(tp)  # (a key is written by orjson alone: no encoded key types)
        return node.convert if node.shapes == _STR and node.encode is None else None

    def _enum(self, cls: type[enum.Enum]) -> _Node:
        """Compile an Enum: cls(value), or a lookup when its values do not survive JSON."""
        try:
            forms = {member: json_form(member) for member in cls}
        except TypeError:  # values orjson cannot write: dumps will raise a SerializationError
            return _ANY
        shapes = frozenset(type(form) for form in forms.values()) or _JSON_TYPES
        if all(type(form) is type(member.value) and form == member.value
               for member, form in forms.items()):
            return _Node(cls, shapes)
        table = {orjson.dumps(form): member for member, form in forms.items()}
        return _Node(lambda value: table[orjson.dumps(value)], shapes)

    def _literal(self, values: tuple[Any, ...]) -> _Node:
        """Compile Literal[...]: JSON literals are themselves, Enum members are looked up."""
        table: dict[tuple[type, Any], Any] = {}
        shapes: set[type] = set()
        for value in values:
            try:
                form = json_form(value)
            except TypeError:
                return _ANY
            shapes.add(type(form))
            if isinstance(value, enum.Enum) and not isinstance(form, list | dict):
                table[type(form), form] = value
        if not table:
            return _Node(None, frozenset(shapes))
        return _Node(lookup(table), frozenset(shapes))

    def _union(self, args: tuple[Any, ...]) -> _Node:
        """Compile a union: dispatch on the JSON type when each one belongs to one member,
        else stored tagged with its member (see :mod:`.unions`)."""
        nodes = [self.build(arg) for arg in args]
        members = [node for arg, node in zip(args, nodes, strict=True) if arg is not NoneType]
        if len(members) == 1:  # Optional[X]
            only = members[0]
            return _Node(maybe(skip_none, only.convert), only.shapes | {NoneType},
                         maybe(skip_none, only.encode))
        owners: dict[type, set[Converter | None]] = {}
        for node in nodes:
            for shape in node.shapes:
                owners.setdefault(shape, set()).add(node.convert)
        if any(node.encode for node in nodes) or any(
                len(converters) > 1 for converters in owners.values()):
            decode, encode = tagged(args, [node.convert for node in nodes],
                                    [node.encode for node in nodes])
            return _Node(decode, _LIST | ({NoneType} & owners.keys()), encode)
        table = {shape: only for shape, (only,) in owners.items() if only is not None}
        return _Node(dispatch(table) if table else None, frozenset(owners))
