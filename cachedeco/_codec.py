"""Codecs: a function's return value to bytes and back, decided once per decorated function.

``make_codec`` picks one of three codecs:

- ``"orjson"`` (the default): JSON through orjson. Decimals are written as strings, sets and
  tuple subclasses as lists, pydantic models through ``model_dump(mode="json")``. Decoding
  restores the types the return annotation names (see ``_typed``); for an unannotated or
  JSON-typed return a hit is ``orjson.loads`` and nothing else. NaN and infinity, which orjson
  would silently store as ``null``, and ints beyond 64 bits are refused, not corrupted.
- ``"pickle"``: signed pickle. A payload is one version byte, HMAC-SHA256(secret, pickled) and the
  pickled bytes; the signature is checked (in constant time) before anything is unpickled, so a
  payload written by anyone without the secret is never unpickled.
- a custom object with ``dumps(obj) -> bytes`` and ``loads(bytes) -> obj``, wrapped so that its
  failures are ``SerializationError`` like the others'.

Every failure to encode raises ``SerializationError`` (also a ``TypeError``) naming the function
and the type; every failure to decode raises ``SerializationError``, which callers treat as a miss.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import math
import pickle
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import orjson

from cachedeco._typed import Converter, build_plan, return_annotation
from cachedeco.errors import ConfigurationError, SerializationError

__all__ = ["Codec", "make_codec"]

_HINT = ("return JSON types or annotate the return type with a supported one, or choose "
         "serializer='pickle' (with secret=) or a custom serializer")
_OPTION = orjson.OPT_NON_STR_KEYS
_PICKLE_VERSION = 1
_MAC_SIZE = 32  # HMAC-SHA256
_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads


class Codec(Protocol):
    """Turns one function's return values into bytes and back."""

    def dumps(self, value: Any) -> bytes:
        """Encode a return value; SerializationError names the function and the type."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode stored bytes; SerializationError on corrupt or forged data (a miss)."""
        ...


def make_codec(spec: str | object, *, func: Callable[..., Any] | None = None, name: str = "?",
               secret: str | bytes | None = None) -> Codec:
    """Build the codec for one function: "orjson", "pickle" (needs secret) or a custom object.

    ``func`` supplies the return annotation the orjson codec decodes to; ``name`` (the
    function's qualified name) goes into error messages.
    """
    if spec is None or spec == "orjson":
        return _json_codec(func, name)
    if spec == "pickle":
        return _SignedPickleCodec(_pickle_key(secret, name), name)
    if isinstance(spec, str):
        raise ConfigurationError(
            f"unknown serializer {spec!r}: use 'orjson', 'pickle' or an object with "
            "dumps(obj) -> bytes and loads(bytes) -> obj", function=name)
    if callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None)):
        return _CustomCodec(spec, name)
    raise ConfigurationError(
        f"serializer {spec!r} has no callable dumps() and loads(); a custom serializer needs "
        "dumps(obj) -> bytes and loads(bytes) -> obj", function=name)


def _json_codec(func: Callable[..., Any] | None, name: str) -> Codec:
    """The orjson codec for func's return annotation, with the cheapest decode that is exact."""
    plan = build_plan(return_annotation(func))
    option = _OPTION | plan.option
    if plan.model is not None:
        return _ModelJsonCodec(name, option, plan.model.model_validate_json)
    if plan.convert is None:
        return _JsonCodec(name, option)
    return _TypedJsonCodec(name, option, plan.convert)


def _type_name(tp: type) -> str:
    """A type's name for messages: bare for builtins, module-qualified otherwise."""
    return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"


def _default(obj: Any) -> Any:
    """Encode what orjson hands back: Decimal, set, tuple subclass, pydantic, passthrough types."""
    if isinstance(obj, Decimal):
        return str(obj)  # exact, unlike a float
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if callable(getattr(type(obj), "model_dump", None)):
        return obj.model_dump(mode="json", by_alias=True)  # by alias: model_validate reads aliases
    if isinstance(obj, dt.date | dt.time):  # OPT_PASSTHROUGH_DATETIME: keep offset seconds
        return obj.isoformat()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # OPT_PASSTHROUGH_DATACLASS
        return {field.name: getattr(obj, field.name) for field in dataclasses.fields(obj)}
    raise TypeError(f"Type is not JSON serializable: {_type_name(type(obj))}")


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


class _JsonCodec:
    """orjson codec whose stored JSON is already the value: loads is orjson.loads."""

    __slots__ = ("_name", "_option")

    def __init__(self, name: str, option: int) -> None:
        self._name = name
        self._option = option

    def dumps(self, value: Any) -> bytes:
        """Encode with orjson; refuse what JSON cannot hold rather than store something else."""
        try:
            data = _orjson_dumps(value, default=_default, option=self._option)
        except TypeError as exc:  # orjson.JSONEncodeError, including 64-bit int overflow
            raise self._unserializable(value, str(exc)) from exc
        if b"null" in data and _has_non_finite(value):
            raise self._unserializable(value, "NaN and infinity have no JSON form")
        return data

    def loads(self, data: bytes) -> Any:
        """Decode: orjson.loads, nothing more."""
        try:
            return _orjson_loads(data)
        except Exception as exc:
            raise self._undecodable(exc) from exc

    def _unserializable(self, value: Any, reason: str) -> SerializationError:
        """The error for a return value that cannot be encoded."""
        return SerializationError(
            f"cannot serialize the {_type_name(type(value))} returned by {self._name}: "
            f"{reason}; {_HINT}", function=self._name)

    def _undecodable(self, exc: Exception) -> SerializationError:
        """The error for stored bytes that cannot be decoded."""
        return SerializationError(
            f"cannot decode the cached value of {self._name}: {type(exc).__name__}: {exc}",
            function=self._name)


class _TypedJsonCodec(_JsonCodec):
    """orjson codec that rebuilds the annotated type from the JSON value."""

    __slots__ = ("_convert",)

    def __init__(self, name: str, option: int, convert: Converter) -> None:
        super().__init__(name, option)
        self._convert = convert

    def loads(self, data: bytes) -> Any:
        """Decode, then convert (None stays None even if the annotation forgot Optional)."""
        try:
            value = _orjson_loads(data)
            return value if value is None else self._convert(value)
        except Exception as exc:
            raise self._undecodable(exc) from exc


class _ModelJsonCodec(_JsonCodec):
    """orjson codec for a pydantic model return: pydantic parses and validates the bytes."""

    __slots__ = ("_validate",)

    def __init__(self, name: str, option: int, validate: Callable[[bytes], Any]) -> None:
        super().__init__(name, option)
        self._validate = validate

    def loads(self, data: bytes) -> Any:
        """Decode with model_validate_json, the exact inverse of model_dump(mode="json")."""
        if data == b"null":
            return None
        try:
            return self._validate(data)
        except Exception as exc:
            raise self._undecodable(exc) from exc


def _pickle_key(secret: object, name: str) -> bytes:
    """The HMAC key for signed pickle; a missing or empty secret is a ConfigurationError."""
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes | bytearray) or not secret:
        raise ConfigurationError(
            "serializer='pickle' needs a non-empty secret= (str or bytes): payloads are signed "
            "because unpickling data from the cache could run arbitrary code", function=name)
    return bytes(secret)


class _SignedPickleCodec:
    """Pickle signed with HMAC-SHA256: version byte, 32-byte MAC, pickled bytes."""

    __slots__ = ("_key", "_name")

    def __init__(self, key: bytes, name: str) -> None:
        self._key = key
        self._name = name

    def dumps(self, value: Any) -> bytes:
        """Pickle and sign."""
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # PicklingError, TypeError, AttributeError (local objects)...
            raise SerializationError(
                f"cannot pickle the {_type_name(type(value))} returned by {self._name}: {exc}",
                function=self._name) from exc
        return bytes((_PICKLE_VERSION,)) + hmac.digest(self._key, payload, "sha256") + payload

    def loads(self, data: bytes) -> Any:
        """Verify the signature, and only then unpickle."""
        if len(data) <= 1 + _MAC_SIZE or data[0] != _PICKLE_VERSION:
            raise self._refused("not a signed pickle payload (unsigned, truncated or unknown)")
        payload = data[1 + _MAC_SIZE:]
        expected = hmac.digest(self._key, payload, "sha256")
        if not hmac.compare_digest(data[1:1 + _MAC_SIZE], expected):
            raise self._refused("bad signature (forged, or written with another secret)")
        try:
            return pickle.loads(payload)
        except Exception as exc:  # a class that moved or changed since it was stored
            raise self._refused(f"{type(exc).__name__}: {exc}") from exc

    def _refused(self, reason: str) -> SerializationError:
        """The error for a payload that is not unpickled or fails to unpickle."""
        return SerializationError(
            f"cannot decode the cached value of {self._name}: {reason}", function=self._name)


class _CustomCodec:
    """A user serializer whose failures become SerializationError and str output UTF-8."""

    __slots__ = ("_dumps", "_loads", "_name")

    def __init__(self, serializer: Any, name: str) -> None:
        self._dumps: Callable[[Any], object] = serializer.dumps
        self._loads: Callable[[bytes], Any] = serializer.loads
        self._name = name

    def dumps(self, value: Any) -> bytes:
        """Encode with the user's dumps; insist on bytes (str is encoded as UTF-8)."""
        try:
            data = self._dumps(value)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"the serializer cannot serialize the {_type_name(type(value))} returned by "
                f"{self._name}: {type(exc).__name__}: {exc}", function=self._name) from exc
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, bytearray | memoryview):
            return bytes(data)
        raise SerializationError(
            f"the serializer's dumps() returned a {_type_name(type(data))} for {self._name}, "
            "not bytes or str", function=self._name)

    def loads(self, data: bytes) -> Any:
        """Decode with the user's loads."""
        try:
            return self._loads(data)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"cannot decode the cached value of {self._name}: {type(exc).__name__}: {exc}",
                function=self._name) from exc
