r"""Cache keys: pure, decided once when the decorator is applied, cheap on every call.

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

Any other type raises SerializationError: pass ``key=`` or ``ignore=`` instead. A key longer
than MAX_KEY_BYTES (UTF-8) keeps ``prefix:namespace:`` and replaces ``ARGS`` by ``#`` and the
blake2b hex digest of ``ARGS`` (if even that is too long, everything after ``prefix:`` is
hashed). Template and callable keys are ``prefix:TEXT[:vVERSION]``, their substituted text
percent-escaped (``%`` ``{`` ``}`` and non-printables), and hashed the same way when too long.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import inspect
import re
import string
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from hashlib import blake2b
from typing import Any

from cachedeco.errors import ConfigurationError, SerializationError

__all__ = [
    "MAX_KEY_BYTES",
    "Binder",
    "KeyBuilder",
    "Template",
    "encode_args",
    "escape_text",
    "hashed",
]

MAX_KEY_BYTES = 250
_HASH_CHARS = 32  # blake2b, digest_size=16, in hex
_ASCII_SAFE_LEN = MAX_KEY_BYTES // 4  # a str this short fits whatever its characters
_BIG_INT = 1 << 2000  # ~602 digits: below the smallest int-to-str limit Python allows (640)
_BOUND_SELF = frozenset({"self", "cls"})

# --- the typed canonical encoding --------------------------------------------------------------


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


_PRIMITIVES: dict[type, Callable[[Any], str]] = {
    bool: _enc_bool,
    int: _enc_int,
    str: _enc_str,
    float: _enc_float,
    type(None): _enc_none,
}
_ENCODERS: dict[type, Callable[[Any], str]] = {
    **_PRIMITIVES,
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


def _encode_values(values: Iterable[tuple[str, Any]], function: str | None = None) -> str:
    """Encode named values and join them with ``:``; unsupported types name their parameter."""
    parts = []
    for name, value in values:
        try:
            parts.append(_encode(value))
        except _UnsupportedError as exc:
            raise SerializationError(
                f"cannot build a cache key from argument {name!r}: values of type "
                f"{_type_name(exc.kind)} are not supported; pass key= to build the key "
                f"yourself or ignore=[{name!r}] to leave the argument out",
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
    return _encode_values(values)


def hashed(text: str) -> str:
    """The blake2b hex digest (32 chars) that stands in for text too long for a key."""
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


_TEXT_SPECIAL = re.compile(r"[%{}]")


def escape_text(text: str) -> str:
    """Percent-escape ``%``, braces and non-printables of template or callable key text."""
    if text.isprintable() and _TEXT_SPECIAL.search(text) is None:
        return text
    return "".join(
        c
        if c.isprintable() and c not in "%{}"
        else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in text
    )


RESERVED = "~"  # keys of cachedeco's own (tags, leases, queues) start with "prefix:~"


def _unreserved(body: str) -> str:
    """A user key body never starts with RESERVED, so it cannot collide with internal keys."""
    return "%7E" + body[1:] if body.startswith(RESERVED) else body


def _fitter(root: str, head: str) -> Callable[[str], str]:
    """Make ``head + body`` fit MAX_KEY_BYTES by hashing the body (or all after ``root``)."""
    if len(head.encode()) + 1 + _HASH_CHARS <= MAX_KEY_BYTES:

        def fit(body: str) -> str:
            key = head + body
            if len(key) <= _ASCII_SAFE_LEN or len(key.encode()) <= MAX_KEY_BYTES:
                return key
            return f"{head}#{hashed(body)}"

        return fit
    rest = head[len(root) :]

    def fit_long_head(body: str) -> str:
        key = head + body
        if len(key.encode()) <= MAX_KEY_BYTES:
            return key
        return f"{root}#{hashed(rest + body)}"

    return fit_long_head


# --- binding and templates ---------------------------------------------------------------------

_EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _unwrap(func: Any) -> Any:
    """The plain function behind a ``staticmethod``/``classmethod`` object."""
    return func.__func__ if isinstance(func, staticmethod | classmethod) else func


def _signature(func: Any) -> inspect.Signature:
    """``inspect.signature``, with a ConfigurationError when the callable has none."""
    try:
        return inspect.signature(_unwrap(func))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the signature of {func!r}: {exc}") from exc


class Binder:
    """Binds call arguments to the signature once per call: name -> value with defaults applied."""

    __slots__ = ("_all_positional", "_plain", "_specs", "parameters", "signature")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.signature = _signature(func)
        params = tuple(self.signature.parameters.values())
        self.parameters: tuple[str, ...] = tuple(p.name for p in params)
        self._plain = all(p.kind not in _VARIADIC for p in params)
        self._all_positional = all(p.kind in _POSITIONAL for p in params)
        self._specs = tuple(
            (p.name, p.kind is inspect.Parameter.POSITIONAL_ONLY, p.default) for p in params
        )

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The bound arguments in signature order; a mismatch raises the function's TypeError."""
        if not kwargs and self._all_positional and len(args) == len(self._specs):
            return dict(zip(self.parameters, args, strict=True))
        if not self._plain or len(args) > len(self._specs):
            return self._bind_slow(args, kwargs)
        bound: dict[str, Any] = {}
        used = 0
        for index, (name, positional_only, default) in enumerate(self._specs):
            if index < len(args):
                bound[name] = args[index]
            elif not positional_only and name in kwargs:
                bound[name] = kwargs[name]
                used += 1
            elif default is not _EMPTY:
                bound[name] = default
            else:
                return self._bind_slow(args, kwargs)
        return bound if used == len(kwargs) else self._bind_slow(args, kwargs)

    def _bind_slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``Signature.bind`` for variadic signatures, and for the exact TypeError of a bad call."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


_FIELD = re.compile(r"([^.\[]*)((?:\.[^.\[]+|\[[^\]]+\])*)")
_FORMATTER = string.Formatter()


def _check_field(field: str, params: frozenset[str], template: str, what: str) -> None:
    """A replacement field must be rooted at a parameter name (``{user.id}``, ``{d[k]}``)."""
    match = _FIELD.fullmatch(field)
    if match is None:
        raise ConfigurationError(f"{what} template {template!r}: malformed field {{{field}}}")
    root = match.group(1)
    if not root or root.isdigit():
        raise ConfigurationError(
            f"{what} template {template!r}: positional field {{{field}}}; name a parameter"
        )
    if root not in params:
        raise ConfigurationError(
            f"{what} template {template!r} uses {root!r}, which is not a parameter "
            f"(parameters: {', '.join(sorted(params)) or 'none'})"
        )


class Template:
    """A str.format-style template over the function's parameters, validated at decoration."""

    __slots__ = ("_parts", "text")

    @property
    def fields(self) -> bool:
        """Whether the template has any placeholder (else it renders to its own text)."""
        return any(fmt is not None for _, fmt in self._parts)

    def __init__(
        self,
        template: str,
        func_or_params: Callable[..., Any] | Iterable[str],
        *,
        what: str = "key",
    ) -> None:
        if not isinstance(template, str):
            raise ConfigurationError(f"a {what} template must be a str, not {template!r}")
        if isinstance(func_or_params, str):
            raise ConfigurationError("pass the function or an iterable of parameter names")
        params = frozenset(
            Binder(func_or_params).parameters if callable(func_or_params) else func_or_params
        )
        self.text = template
        try:
            self._parts = tuple(self._compile(template, params, what))
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"malformed {what} template {template!r}: {exc}") from exc

    @staticmethod
    def _compile(
        template: str, params: frozenset[str], what: str
    ) -> Iterable[tuple[str, str | None]]:
        """(escaped literal, one-field format string or None) pairs; checks every field name."""
        for literal, field, spec, conversion in _FORMATTER.parse(template):
            text = literal.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
            if field is None:
                yield text, None
                continue
            _check_field(field, params, template, what)
            if conversion not in (None, "r", "s", "a"):
                raise ValueError(f"unknown conversion !{conversion}")
            for _, nested, _, _ in _FORMATTER.parse(spec or ""):
                if nested is not None:
                    _check_field(nested, params, template, what)
            suffix = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            yield text, f"{{{field}{suffix}}}"

    def render(self, bound: dict[str, Any]) -> str:
        """The template formatted with the bound arguments, substituted text percent-escaped.

        A plain ``{name}`` field holding an int or a str is substituted without ``format``.
        """
        out = []
        for literal, fmt in self._parts:
            out.append(literal)
            if fmt is not None:
                value = bound.get(fmt[1:-1], _EMPTY)
                kind = value.__class__
                if kind is int:
                    out.append(str(value))
                elif kind is str:
                    out.append(escape_text(value))
                else:
                    out.append(escape_text(fmt.format_map(bound)))
        return "".join(out)


# --- the key builder ---------------------------------------------------------------------------


def _check_name(name: object) -> str:
    """A function's key name: non-empty, printable, no whitespace, braces, leading ``#``/``~``."""
    if (
        not isinstance(name, str)
        or not name.isprintable()
        or not name
        or name.startswith(("#", RESERVED))
        or any(c.isspace() or c in "{}" for c in name)
    ):
        raise ConfigurationError(
            f"invalid cache name {name!r}: no whitespace or braces, no leading '#' or '~'")
    return name


def _check_version(version: object) -> str:
    """A version as text: an int, or a str without ':', whitespace or braces."""
    if isinstance(version, int) and not isinstance(version, bool):
        return str(version)
    if (
        isinstance(version, str)
        and version.isprintable()
        and version
        and not any(c.isspace() or c in ":{}" for c in version)
    ):
        return version
    raise ConfigurationError(f"version must be an int or a str without ':' or spaces: {version!r}")


def _check_prefix(prefix: object) -> str:
    """A prefix that leaves room for a hashed key and is valid UTF-8."""
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError(f"prefix must be a non-empty str, not {prefix!r}")
    try:
        size = len(prefix.encode())
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"prefix {prefix!r} is not valid text") from exc
    if size + 2 + _HASH_CHARS > MAX_KEY_BYTES:
        raise ConfigurationError(f"prefix {prefix!r} is too long for {MAX_KEY_BYTES}-byte keys")
    return prefix


class KeyBuilder:
    """One function's key rules, decided at decoration; ``for_prefix`` gives the per-call path."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        version: str | int | None = None,
        ignore: Iterable[str] = (),
        key: str | Callable[..., str] | None = None,
    ) -> None:
        self._func = _unwrap(func)
        self._binder = Binder(self._func)
        params = self._binder.parameters
        if name is None:
            module = getattr(self._func, "__module__", None)
            qualname = getattr(self._func, "__qualname__", type(self._func).__qualname__)
            name = f"{module}.{qualname}"
        self._name = _check_name(name)
        self._suffix = "" if version is None else f":v{_check_version(version)}"
        ignored = frozenset((ignore,) if isinstance(ignore, str) else ignore)
        unknown = ignored.difference(params)
        if unknown:
            raise ConfigurationError(
                f"ignore= names {sorted(unknown)} that are not parameters of {self._name}"
            )
        skip_first = bool(params) and params[0] in _BOUND_SELF
        kinds = {p.name: p.kind for p in self._binder.signature.parameters.values()}
        kept = [i for i, n in enumerate(params) if n not in ignored and not (i == 0 and skip_first)]
        self._encoded = tuple(
            (params[i], kinds[params[i]] is inspect.Parameter.VAR_POSITIONAL) for i in kept
        )
        plain_positional = all(k in _POSITIONAL for k in kinds.values())
        self._fast_arity = len(params) if plain_positional else -1
        self._fast_positions = tuple(kept)
        self._template: Template | None = None
        self._key_func: Callable[..., str] | None = None
        if isinstance(key, str):
            self._template = Template(key, params, what="key")
        elif callable(key):
            self._key_func = key
        elif key is not None:
            raise ConfigurationError(f"key= must be None, a str template or a callable: {key!r}")

    @property
    def name(self) -> str:
        """``module.qualname`` or the given name."""
        return self._name

    @property
    def namespace(self) -> str:
        """``name[:vVERSION]``: what every default key of this function has after ``prefix:``."""
        return self._name + self._suffix

    @property
    def family(self) -> str:
        """What names this function's entries as a group (its implicit tag): the namespace, or
        for a key template the template itself, so a writer and a reader sharing a template
        share their entries."""
        if self._template is not None:
            return "key=" + self._template.text + self._suffix
        return self.namespace

    def binder(self) -> Binder:
        """The function's Binder, shared with its tag templates."""
        return self._binder

    def for_prefix(self, prefix: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
        """The per-call ``(args, kwargs) -> full key`` function for one registry prefix."""
        root = _check_prefix(prefix) + ":"
        if self._template is not None:
            return self._template_keys(root)
        if self._key_func is not None:
            return self._callable_keys(root)
        return self._default_keys(root)

    def _encode_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The slow path: bind, then encode the kept arguments (``*args`` as a list)."""
        bound = self._binder.bind(args, kwargs)
        values = ((n, list(bound[n]) if var else bound[n]) for n, var in self._encoded)
        return _encode_values(values, self._name)

    def _default_keys(self, root: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
        """Default keys, with a fast path for exact-arity positional calls of primitives."""
        fit = _fitter(root, f"{root}{self.namespace}:")
        arity, positions, slow = self._fast_arity, self._fast_positions, self._encode_call
        primitives = _PRIMITIVES

        def default_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            if not kwargs and len(args) == arity:
                parts = []
                for index in positions:
                    value = args[index]
                    encoder = primitives.get(type(value))
                    if encoder is None:
                        break
                    parts.append(encoder(value))
                else:
                    return fit(":".join(parts))
            return fit(slow(args, kwargs))

        return default_key

    def _template_keys(self, root: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
        """Keys from a str template: ``prefix:RENDERED[:vVERSION]``."""
        assert self._template is not None
        fit, render, bind = _fitter(root, root), self._template.render, self._binder.bind
        suffix = self._suffix

        def template_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            return fit(_unreserved(render(bind(args, kwargs))) + suffix)

        return template_key

    def _callable_keys(self, root: str) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
        """Keys from a user callable: ``prefix:RESULT[:vVERSION]``, the result checked."""
        assert self._key_func is not None
        fit, make, suffix, name = _fitter(root, root), self._key_func, self._suffix, self._name

        def callable_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            body = make(*args, **kwargs)
            if not isinstance(body, str):
                raise ConfigurationError(
                    f"the key= callable returned {type(body).__qualname__}, not str", function=name
                )
            return fit(_unreserved(escape_text(body)) + suffix)

        return callable_key
