r"""The typed canonical encoding of call arguments: the ``ARGS`` part of a default key.

A default key is ``prefix:module.qualname[:vVERSION]:ARGS``. ``ARGS`` is the typed canonical
encoding of the arguments bound to the signature (defaults applied; a first parameter named
``self``/``cls`` and the ``ignore`` names left out), one encoded value per parameter joined by
``:``. The encoding is injective, the same in every process (no ``hash()``, no ``repr()`` of
arbitrary objects), printable, and never contains ``{`` or ``}`` (Redis Cluster hash tags):

=====================  ==============================================================
``42``  ``-7``         int (``0x…`` beyond 2000 bits, so no process's digit limit bites)
``1.0`` ``-0.0``       float, ``repr`` form: ``nan``, ``inf``, ``-inf``, ``1e+16``
``'abc'``              str; ``\\``, ``\'``, ``{`` ``}`` and non-printables as ``\xNN``/``\uNNNN``
``b'ab\x00'``          bytes, printable ASCII kept, the rest ``\xNN``
``True`` ``None``      bool, None
``[1,'a']`` ``(1,2)``  list, tuple (``*args`` encode as a list)
``set(…)``             set / ``frozenset(…)``: items sorted by their encoding
``dict('k'=1)``        dict (``**kwargs`` too): ``key=value`` items sorted by their encoding
``date(…)``            ``datetime(…)``, ``date(…)``, ``time(…)``: ISO 8601;
                       ``uuid(…)``, ``decimal(…)``: their ``str``
``mod.Color(1)``       Enum: module-qualified class and encoded value
``mod.Point(x=1)``     dataclass, or anything with ``model_dump()`` (pydantic): class + fields
=====================  ==============================================================

Any other type raises SerializationError: pass ``key=`` or ``ignore=`` instead. How the
encoding becomes a key (prefix, namespace, hashing of long keys) is :mod:`cachedeco._keys`.
"""


from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from cachedeco.errors import SerializationError

__all__ = ["PRIMITIVES", "encode_args", "encode_values"]

_BIG_INT = 1 << 2000  # ~602 digits: below the smallest int-to-str limit Python allows (640)


class _UnsupportedError(Exception):
    """Internal: a value of this type cannot be encoded; the caller names the parameter."""

    def __init__(self, kind: type) -> None:
        super().__init__(kind)
        self.kind = kind


_SAFE_STR = re.compile(r"[ -&(-\[\]-z|~]*")  # printable ASCII but ' \ { }
_SAFE_BYTES = re.compile(rb"[ -&(-\[\]-z|~]*")
_CHAR_ESCAPES = {"\\": "\\\\", "'": "\\'", "{": "\\x7b", "}": "\\x7d"}
_BYTE_ESCAPES = tuple(
    _CHAR_ESCAPES.get(chr(b), chr(b)) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in range(256)
)


def _escape_char(char: str) -> str:
    """One character of a str literal: kept when printable and harmless, else escaped."""
    if char in _CHAR_ESCAPES:
        return _CHAR_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _enc_str(value: str) -> str:
    """``'text'`` with quotes, backslashes, braces and non-printables escaped."""
    if _SAFE_STR.fullmatch(value):
        return f"'{value}'"
    return "'" + "".join(map(_escape_char, value)) + "'"


def _enc_bytes(value: bytes) -> str:
    """``b'text'``: printable ASCII kept, every other byte as ``\\xNN``."""
    if _SAFE_BYTES.fullmatch(value):
        return f"b'{value.decode('ascii')}'"
    return "b'" + "".join(_BYTE_ESCAPES[b] for b in value) + "'"


def _enc_int(value: int) -> str:
    """Decimal digits; hex for huge ints, whose decimal form a process may refuse to make."""
    return int.__repr__(value) if -_BIG_INT < value < _BIG_INT else hex(value)


def _enc_exact_int(value: int) -> str:
    """:func:`_enc_int` for an exact ``int`` (no subclass ``__str__`` to avoid): ``str`` is
    the faster spelling of the same digits."""
    return str(value) if -_BIG_INT < value < _BIG_INT else hex(value)


def _enc_float(value: float) -> str:
    """The shortest round-tripping ``repr``: distinct from ints, ``nan`` for every NaN."""
    return float.__repr__(value)


def _enc_bool(value: bool) -> str:
    """``True`` / ``False``, never ``1`` / ``0``."""
    return "True" if value else "False"


def _enc_none(_: None) -> str:
    """``None``."""
    return "None"


def _enc_items(values: Iterable[Any]) -> str:
    """Comma-joined encodings, in the given order."""
    return ",".join(map(_encode, values))


def _enc_sorted(values: Iterable[Any]) -> str:
    """Comma-joined encodings sorted, so that hash-seed-dependent iteration order never leaks."""
    return ",".join(sorted(map(_encode, values)))


def _enc_mapping(value: Mapping[Any, Any]) -> str:
    """``key=value`` items sorted by their encoding."""
    return ",".join(sorted(f"{_encode(k)}={_encode(v)}" for k, v in value.items()))


_TYPE_NAMES: dict[type, str] = {}


def _type_name(kind: type) -> str:
    """``module.QualName`` of a class (cached): a dot, so never one of the built-in tags."""
    name = _TYPE_NAMES.get(kind)
    if name is None:
        raw = f"{kind.__module__}.{kind.__qualname__}"
        name = _TYPE_NAMES[kind] = raw.replace("{", "%7B").replace("}", "%7D")
    return name


def _field_label(name: object) -> str:
    """A field name as is when it is an identifier, else as an encoded value."""
    return name if isinstance(name, str) and name.isidentifier() else _encode(name)


def _enc_object(value: Any) -> str:
    """Enums, dataclasses and ``model_dump()`` objects by class; anything else is refused."""
    if isinstance(value, enum.Enum):
        return f"{_type_name(type(value))}({_encode(value.value)})"
    for base, encoder in _ENCODERS.items():
        if isinstance(value, base):  # a subclass of a supported type encodes as its base
            return encoder(value)
    if isinstance(value, type):
        raise _UnsupportedError(type(value))
    if dataclasses.is_dataclass(value):
        pairs: Iterable[tuple[str, Any]] = (
            (f.name, getattr(value, f.name)) for f in dataclasses.fields(value)
        )
    elif callable(getattr(value, "model_dump", None)):
        dumped = value.model_dump()
        if not isinstance(dumped, Mapping):
            raise _UnsupportedError(type(value))
        pairs = dumped.items()
    else:
        raise _UnsupportedError(type(value))
    fields = ",".join(f"{_field_label(k)}={_encode(v)}" for k, v in pairs)
    return f"{_type_name(type(value))}({fields})"


#: Encoders by exact type for the key fast path (a subclass goes through :data:`_ENCODERS`).
PRIMITIVES: dict[type, Callable[[Any], str]] = {
    bool: _enc_bool,
    int: _enc_exact_int,
    str: _enc_str,
    float: _enc_float,
    type(None): _enc_none,
}
_ENCODERS: dict[type, Callable[[Any], str]] = {
    **PRIMITIVES,
    int: _enc_int,  # also for int subclasses (by isinstance): never their own __str__
    bytes: _enc_bytes,
    list: lambda v: f"[{_enc_items(v)}]",
    tuple: lambda v: f"({_enc_items(v)})",
    dict: lambda v: f"dict({_enc_mapping(v)})",
    set: lambda v: f"set({_enc_sorted(v)})",
    frozenset: lambda v: f"frozenset({_enc_sorted(v)})",
    dt.datetime: lambda v: f"datetime({v.isoformat()})",  # before date: a datetime is a date
    dt.date: lambda v: f"date({v.isoformat()})",
    dt.time: lambda v: f"time({v.isoformat()})",
    uuid.UUID: lambda v: f"uuid({v})",
    Decimal: lambda v: f"decimal({v})",
}


def _encode(value: Any) -> str:
    """The canonical encoding of one value: exact types by table lookup, the rest by class."""
    encoder = _ENCODERS.get(type(value))
    return encoder(value) if encoder is not None else _enc_object(value)


def encode_values(values: Iterable[tuple[str, Any]], function: str | None = None) -> str:
    """Encode named values and join them with ``:``; unsupported types name their parameter."""
    parts = []
    for name, value in values:
        try:
            parts.append(_encode(value))
        except _UnsupportedError as exc:
            # a function given to a cached function: most likely a decorator's argument,
            # @cached(pick_ttl) for @cached(ttl=pick_ttl), which cached pick_ttl itself
            hint = ("; if this call is a decorator's (@cached(fn) where fn was meant as "
                    "ttl=fn), give the callable by keyword" if inspect.isfunction(value)
                    else "")
            raise SerializationError(
                f"cannot build a cache key from argument {name!r}: values of type "
                f"{_type_name(exc.kind)} are not supported; pass key= to build the key "
                f"yourself or ignore=[{name!r}] to leave the argument out{hint}",
                function=function,
            ) from None
        except RecursionError:
            raise SerializationError(
                f"cannot build a cache key from argument {name!r}: it is nested too deeply "
                "or contains itself; pass key= or ignore=",
                function=function,
            ) from None
    return ":".join(parts)


def encode_args(values: Iterable[tuple[str, Any]]) -> str:
    """The typed, injective, printable encoding of ``(name, value)`` pairs, ``:``-joined."""
    return encode_values(values)
