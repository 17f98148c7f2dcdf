"""The orjson codecs (the default serializer).

Decimals are written as strings, sets, deques and tuple subclasses as lists, pydantic models
through ``model_dump(mode="json")``. Decoding restores the types the return annotation names (see
:mod:`.typed`); for an unannotated or JSON-typed return a hit is ``orjson.loads`` and nothing
else. NaN and infinity, which orjson would silently store as ``null``, and ints beyond 64 bits
are refused, not corrupted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from cachedeco.core.codec.annotations import return_annotation, unwrap
from cachedeco.core.codec.base import Codec, type_name
from cachedeco.core.codec.converters import write_datetime
from cachedeco.core.codec.typed import Converter, build_plan
from cachedeco.core.logs import say
from cachedeco.errors import SerializationError

__all__ = ["json_codec", "read_bytes"]

_HINT = ("return JSON types or annotate the return type with a supported one, or choose "
         "serializer='pickle' (with secret=) or a custom serializer")
_OPTION = orjson.OPT_NON_STR_KEYS
_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads
_BYTES = (bytes, bytes | None)  # (equal to Optional[bytes] and None | bytes)


def json_codec(func: Callable[..., Any] | None, name: str,
               annotation: Callable[[], Any] | None = None) -> Codec:
    """The orjson codec for func's return annotation (or for what ``annotation()`` gives),
    with the cheapest decode that is exact."""
    hint = annotation() if annotation is not None else return_annotation(func, name)
    if unwrap(hint) in _BYTES:
        return _BytesCodec(name)
    plan = build_plan(hint)
    option = _OPTION | plan.option
    if plan.model is not None:
        return _ModelJsonCodec(name, option, plan.model.model_validate_json, ("model", hint))
    if plan.convert is None:
        return _JsonCodec(name, option)
    return _TypedJsonCodec(name, option, plan.convert, plan.encode, ("typed", hint))


def _default(obj: Any) -> Any:
    """Encode what orjson hands back: Decimal, set, deque, tuple subclass, pydantic,
    passthrough types."""
    if isinstance(obj, Decimal):
        return str(obj)  # exact, unlike a float
    if isinstance(obj, set | frozenset | tuple | deque):
        return list(obj)
    if callable(getattr(type(obj), "model_dump", None)):
        return obj.model_dump(mode="json", by_alias=True)  # by alias: model_validate reads aliases
    if isinstance(obj, dt.date | dt.time):  # OPT_PASSTHROUGH_DATETIME: offset seconds, zone
        return write_datetime(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # OPT_PASSTHROUGH_DATACLASS
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    raise TypeError(f"Type is not JSON serializable: {type_name(type(obj))}")


def _has_non_finite(value: Any) -> bool:
    """Whether value holds a NaN or an infinity, which orjson would silently write as null."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_has_non_finite, value.values()))
    if isinstance(value, list | tuple | set | frozenset):
        return any(map(_has_non_finite, value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_has_non_finite(getattr(value, field.name))
                   for field in dataclasses.fields(value))
    if callable(getattr(type(value), "model_dump", None)):
        return _has_non_finite(getattr(value, "__dict__", {}))
    return False


def _first_difference(returned: Any, decoded: Any, budget: list[int]) -> tuple[str, str] | None:
    """The types of the first value (in order, items and keys too) that a hit would return
    as another type than the function did: a dataclass as a dict, a datetime as a str, a
    tuple as a list. Looks at ``budget[0]`` values at most."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    if type(returned) is not type(decoded):
        return type_name(type(returned)), type_name(type(decoded))
    if isinstance(returned, dict):
        for (key, item), (key2, item2) in zip(returned.items(), decoded.items(), strict=False):
            found = (_first_difference(key, key2, budget)
                     or _first_difference(item, item2, budget))
            if found is not None:
                return found
    elif isinstance(returned, list):
        for item, item2 in zip(returned, decoded, strict=False):
            if (found := _first_difference(item, item2, budget)) is not None:
                return found
    return None


class _JsonCodec:
    """orjson codec whose stored JSON is already the value: loads is orjson.loads."""

    __slots__ = ("_checked", "_name", "_option", "decodes")

    def __init__(self, name: str, option: int, decodes: object = ("orjson",)) -> None:
        self._name = name
        self._option = option
        self._checked = False  # whether a stored value was compared with its hit (once)
        #: How it decodes (see ``base.decoder``): orjson.loads alone, or then the plan of
        #: the annotation it names.
        self.decodes = decodes

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Encode with orjson; refuse what JSON cannot hold rather than store something else."""
        return self._write(value, value)

    def _write(self, value: Any, returned: Any) -> bytes:
        """orjson's bytes for ``value``, the form of what the function ``returned``."""
        try:
            data = _orjson_dumps(value, default=_default, option=self._option)
        except TypeError as exc:  # orjson.JSONEncodeError, including 64-bit int overflow
            raise self._unserializable(returned, str(exc)) from exc
        if b"null" in data and _has_non_finite(value):
            raise self._unserializable(returned, "NaN and infinity have no JSON form")
        if not self._checked and returned is not None:  # (a None tells nothing)
            self._checked = True
            self._compare(returned, data)
        return data

    def _compare(self, returned: Any, data: bytes) -> None:
        """Once per function: warn when a hit would return another type than the function
        returned (an unannotated function's dataclass comes back as a dict, a datetime in an
        ``Any`` as a str), which only hits would show. Types only: values stay out of logs."""
        try:
            found = _first_difference(returned, self.loads(data), [1000])
        except SerializationError:
            return
        if found is not None:
            say(None, logging.WARNING,
                "%s returned a value of type %s, which a cache hit returns as type "
                "%s (JSON keeps no other type); annotate its return type with the types it "
                "returns, or choose serializer='pickle'", self._name, *found)

    def loads(self, data: bytes, key: str = "") -> Any:
        """Decode: orjson.loads, nothing more."""
        try:
            return _orjson_loads(data)
        except Exception as exc:
            raise self._undecodable(exc) from exc

    def _unserializable(self, value: Any, reason: str) -> SerializationError:
        """The error for a return value that cannot be encoded."""
        return SerializationError(
            f"cannot serialize the {type_name(type(value))} returned by {self._name}: "
            f"{reason}; {_HINT}", function=self._name)

    def _undecodable(self, exc: Exception) -> SerializationError:
        """The error for stored bytes that cannot be decoded."""
        return SerializationError(
            f"cannot decode the cached value of {self._name}: {type(exc).__name__}: {exc}",
            function=self._name)


class _TypedJsonCodec(_JsonCodec):
    """orjson codec that rebuilds the annotated type from the JSON value (and first turns
    what JSON cannot tell apart into what it can: bytes, a union's member)."""

    __slots__ = ("_convert", "_encode")

    def __init__(self, name: str, option: int, convert: Converter,
                 encode: Converter | None = None, decodes: object = None) -> None:
        super().__init__(name, option, decodes)
        self._convert = convert
        self._encode = encode

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Encode (the plan's encoder first, where the annotation needs one)."""
        if self._encode is None or value is None:
            return self._write(value, value)
        try:
            encoded = self._encode(value)
        except (TypeError, ValueError, AttributeError) as exc:  # not what the annotation says
            raise self._unserializable(value, f"{type(exc).__name__}: {exc}") from exc
        return self._write(encoded, value)

    def loads(self, data: bytes, key: str = "") -> Any:
        """Decode, then convert (None stays None even if the annotation forgot Optional)."""
        try:
            value = _orjson_loads(data)
            return value if value is None else self._convert(value)
        except Exception as exc:
            raise self._undecodable(exc) from exc


class _ModelJsonCodec(_JsonCodec):
    """orjson codec for a pydantic model return: pydantic parses and validates the bytes."""

    __slots__ = ("_validate",)

    def __init__(self, name: str, option: int, validate: Callable[[bytes], Any],
                 decodes: object = None) -> None:
        super().__init__(name, option, decodes)
        self._validate = validate

    def loads(self, data: bytes, key: str = "") -> Any:
        """Decode with model_validate_json, the exact inverse of model_dump(mode="json")."""
        if data == b"null":
            return None
        try:
            return self._validate(data)
        except Exception as exc:
            raise self._undecodable(exc) from exc


class _BytesCodec:
    """A return annotated ``bytes`` (or ``bytes | None``): the bytes stored as they are
    after one byte saying which it is (``b``: bytes, ``n``: None); no JSON, no base64."""

    __slots__ = ("_name",)
    decodes = ("bytes",)

    def __init__(self, name: str) -> None:
        self._name = name

    def dumps(self, value: Any, key: str = "") -> bytes:
        """``b`` and the bytes, or ``n``; anything else is not what the annotation says."""
        if value is None:
            return b"n"
        if isinstance(value, bytes | bytearray | memoryview):
            return b"b" + bytes(value)
        raise SerializationError(
            f"cannot serialize the {type_name(type(value))} returned by {self._name}: its "
            "return annotation says bytes", function=self._name)

    def loads(self, data: bytes, key: str = "") -> Any:
        """The stored bytes (or None); other data is a decode error (a miss)."""
        try:
            return read_bytes(data)
        except ValueError:
            raise SerializationError(f"cannot decode the cached value of {self._name}: not a "
                                     "stored bytes value", function=self._name) from None


def read_bytes(data: bytes) -> bytes | None:
    """The value :class:`_BytesCodec` stored as ``data``; ValueError for other data."""
    if data[:1] == b"b":
        return bytes(data[1:])
    if data == b"n":
        return None
    raise ValueError("not a stored bytes value")
