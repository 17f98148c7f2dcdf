"""The small converters a compiled return annotation is made of (see :mod:`.typed`)."""

from __future__ import annotations

import base64
import binascii
import collections
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import orjson

__all__ = [
    "REBUILT",
    "Converter",
    "convert_each",
    "dataclass_converter",
    "dispatch",
    "each_name",
    "each_position",
    "from_base64",
    "from_json",
    "identity",
    "json_form",
    "json_key",
    "lookup",
    "map_items",
    "map_list",
    "map_set",
    "map_tuple",
    "map_values",
    "maybe",
    "parse_date",
    "parse_datetime",
    "parse_duration",
    "rebuild",
    "skip_none",
    "to_base64",
    "write_datetime",
    "write_duration",
]

Converter = Callable[[Any], Any]

#: Containers JSON keeps as their base (a dict, a list), rebuilt as their class: the base's
#: origin, and its arguments from theirs (a Counter's values are ints).
REBUILT: dict[Any, tuple[Any, Callable[[tuple[Any, ...]], tuple[Any, ...]]]] = {
    collections.Counter: (dict, lambda args: (args[0] if args else Any, int)),
    collections.OrderedDict: (dict, lambda args: args),
    collections.deque: (list, lambda args: args),
}


def identity(value: Any) -> Any:
    """Placeholder for a class whose fields need no conversion."""
    return value


def convert_each(converters: list[Converter | None], values: Any) -> list[Any]:
    """Apply one converter per position (a fixed tuple, a NamedTuple); lengths must match."""
    return [value if convert is None else convert(value)
            for convert, value in zip(converters, values, strict=True)]


def json_form(value: Any) -> Any:
    """The value as it comes back from JSON (e.g. an Enum member's value, a tuple as a list)."""
    return orjson.loads(orjson.dumps(value))


def json_key(value: Any) -> str:
    """The string orjson writes for value as a dict key under OPT_NON_STR_KEYS."""
    encoded = orjson.loads(orjson.dumps({value: None}, option=orjson.OPT_NON_STR_KEYS))
    return str(next(iter(encoded)))


def rebuild(cls: type, inner: Converter | None) -> Converter:
    """Converter for a container rebuilt as ``cls`` from its base's value (see REBUILT)."""
    if inner is None:
        return cls
    return lambda value: cls(inner(value))


def maybe(wrap: Callable[[Converter], Converter], inner: Converter | None,
          ) -> Converter | None:
    """``wrap(inner)``, or None when there is nothing to wrap (a child that needs nothing)."""
    return None if inner is None else wrap(inner)


def each_position(converters: list[Converter | None]) -> Converter | None:
    """Converter of a fixed sequence of positions (a tuple, a NamedTuple), or None."""
    if all(convert is None for convert in converters):
        return None
    return functools.partial(convert_each, converters)  # (no Python frame of its own)


def write_datetime(value: dt.datetime | dt.date | dt.time) -> str:
    """An annotated date, time or datetime as ISO 8601 text; a datetime in a named zone
    (``ZoneInfo``) carries the zone's name too (``…+02:00[Europe/Paris]``, as RFC 9557
    writes it), since its offset alone does not say how it moves across a DST change."""
    text = value.isoformat()
    zone = getattr(value, "tzinfo", None)
    if isinstance(zone, ZoneInfo) and zone.key and isinstance(value, dt.datetime):
        return f"{text}[{zone.key}]"
    return text


def parse_datetime(text: str) -> dt.datetime:
    """The datetime :func:`write_datetime` wrote, back in its named zone if it had one."""
    if text.endswith("]"):
        text, _, zone = text[:-1].partition("[")
        return dt.datetime.fromisoformat(text).astimezone(ZoneInfo(zone))
    return dt.datetime.fromisoformat(text)


def parse_date(text: str) -> dt.date:
    """A date, or a datetime where a `date`-annotated function returned one (a subclass)."""
    return parse_datetime(text) if len(text) > 10 else dt.date.fromisoformat(text)


def to_base64(value: bytes) -> str:
    """Annotated bytes, written as base64 text (JSON has no bytes)."""
    return base64.b64encode(value).decode("ascii")


def from_base64(text: str) -> bytes:
    """The bytes :func:`to_base64` wrote; anything else is a decode error."""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from exc


def from_json(validate_json: Callable[[bytes], Any]) -> Converter:
    """Converter for a pydantic model inside another type: validated in JSON mode, the exact
    inverse of the ``model_dump(mode="json")`` that stored it (Python mode refuses a strict
    model's datetime given as text, and reads base64 bytes as their text)."""
    dumps = orjson.dumps
    return lambda value: validate_json(dumps(value))


def write_duration(value: dt.timedelta) -> str:
    """An annotated timedelta, as its exact length in seconds (``"-90061.000001"``)."""
    micros = value // dt.timedelta(microseconds=1)
    whole, fraction = divmod(abs(micros), 1_000_000)
    return f"{'-' if micros < 0 else ''}{whole}.{fraction:06d}"


def parse_duration(text: str) -> dt.timedelta:
    """The timedelta :func:`write_duration` wrote; anything else is a decode error."""
    whole, _, fraction = text.removeprefix("-").partition(".")
    if not (whole.isdigit() and fraction.isdigit() and len(fraction) == 6):
        raise ValueError("not a duration in seconds")
    micros = int(whole) * 1_000_000 + int(fraction)
    return dt.timedelta(microseconds=-micros if text.startswith("-") else micros)


def map_list(convert: Converter) -> Converter:
    """Converter for list[X]."""
    return lambda value: list(map(convert, value))


def map_tuple(convert: Converter) -> Converter:
    """Converter for tuple[X, ...]."""
    return lambda value: tuple(map(convert, value))


def map_set(kind: type[set[Any]] | type[frozenset[Any]], convert: Converter) -> Converter:
    """Converter for set[X] and frozenset[X]."""
    return lambda value: kind(map(convert, value))


def map_values(convert: Converter) -> Converter:
    """Converter for dict[str, V]."""
    return lambda value: {key: convert(item) for key, item in value.items()}


def map_items(convert_key: Converter, convert_value: Converter | None) -> Converter:
    """Converter for dict[K, V] with a non-str K."""
    if convert_value is None:
        return lambda value: {convert_key(key): item for key, item in value.items()}
    return lambda value: {convert_key(key): convert_value(item) for key, item in value.items()}


def each_name(table: dict[str, Converter | None]) -> Converter | None:
    """Converter of an object of named fields (a TypedDict; a dataclass's fields on store),
    or None when no field needs one."""
    if all(convert is None for convert in table.values()):
        return None
    get = table.get
    return lambda value: {key: item if (convert := get(key)) is None else convert(item)
                          for key, item in value.items()}


def skip_none(convert: Converter) -> Converter:
    """Converter for Optional[X]."""
    return lambda value: None if value is None else convert(value)


def lookup(table: dict[tuple[type, Any], Any]) -> Converter:
    """Converter mapping JSON literals back to Enum members, other values unchanged."""
    def convert(value: Any) -> Any:
        """Look the value up by JSON type and value (so 1 and True stay apart)."""
        if isinstance(value, list | dict):
            return value
        return table.get((type(value), value), value)
    return convert


def dispatch(table: dict[type, Converter]) -> Converter:
    """Converter for a union: pick the member by the JSON type of the value."""
    get = table.get

    def convert(value: Any) -> Any:
        """Convert with the member owning this JSON type, if any."""
        member = get(type(value))
        return value if member is None else member(value)
    return convert


def dataclass_converter(cls: type, init: list[tuple[str, Converter | None]],
                         late: list[tuple[str, Converter | None]], *,
                         construct: bool = True) -> Converter:
    """Converter building cls from its JSON object; a missing field is an error (a miss).
    ``construct=False``: the object is made without ``__init__`` (nor ``__post_init__``) and
    the init fields are set as they were stored."""
    def convert(value: dict[str, Any]) -> Any:
        """Construct the dataclass, then restore fields the constructor does not take."""
        fields = {name: value[name] if field is None else field(value[name])
                  for name, field in init}
        if construct:
            obj = cls(**fields)
        else:
            obj = object.__new__(cls)
            for name, item in fields.items():
                object.__setattr__(obj, name, item)
        for name, field in late:
            if name in value:
                item = value[name]
                object.__setattr__(obj, name, item if field is None else field(item))
        return obj
    return convert
