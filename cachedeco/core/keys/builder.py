r"""Cache keys: pure, decided once when the decorator is applied, cheap on every call.

A default key is ``prefix:module.qualname[:vVERSION]:ARGS``, ``ARGS`` being the typed
canonical encoding of the arguments bound to the signature (see :mod:`cachedeco.core.keys.encoding`;
defaults applied; a first parameter named ``self``/``cls`` and the ``ignore`` names left
out). A key longer than MAX_KEY_BYTES (UTF-8) keeps ``prefix:namespace:`` and replaces
``ARGS`` by ``#`` and the blake2b hex digest of ``ARGS`` (if even that is too long,
everything after ``prefix:`` is hashed). Template and callable keys are
``prefix:TEXT[:vVERSION]``, their substituted text percent-escaped, and hashed the same way
when too long. No key of a user starts with ``prefix:~``: those are cachedeco's own.

For a ``sensitive=True`` function the argument part is a keyed hash instead (a
:data:`~cachedeco.core.keyring.Namer`, keyed BLAKE2s under a key derived from the
registry's encryption key), written ``!`` and 32 hex digits:
``prefix:module.qualname[:vVERSION]:!HASH``
(the hash covers the namespace and ``ARGS``); each substituted value of a template becomes
``!HASH`` of the text before it and the value's text (``user:!HASH``), so a writer and a
reader sharing a template share the entry; a callable's whole result is one such value.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from hashlib import blake2b
from typing import Any

from cachedeco.core.keyring import Namer
from cachedeco.core.keys.encoding import PRIMITIVES, encode_args, encode_values
from cachedeco.core.keys.templates import (
    POSITIONAL,
    Binder,
    Template,
    escape_text,
    items,
    keyed_value,
    unwrap,
)
from cachedeco.core.keyspace import RESERVED, check_prefix
from cachedeco.errors import ConfigurationError

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
_BOUND_SELF = frozenset({"self", "cls"})
_KNOWN_KEYS = 4096  # keys remembered per function for int and str arguments
_KNOWN_STR = 64  # longer str arguments are encoded each time
KeyFn = Callable[[tuple[Any, ...], dict[str, Any]], str]


def hashed(text: str) -> str:
    """The blake2b hex digest (32 chars) that stands in for text too long for a key."""
    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


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


def _keyed(root: str, head: str, context: str, namer: Namer) -> Callable[[str], str]:
    """``head`` + ``!`` + the keyed hash of ``context + text``, fitted like any key (which
    only a very long ``head`` needs)."""
    if len(head.encode()) + 1 + _HASH_CHARS <= MAX_KEY_BYTES:
        return lambda text: f"{head}!{namer(context + text)}"
    fit = _fitter(root, head)
    return lambda text: fit("!" + namer(context + text))


def _remember(known: dict[int | str, str], value: int | str, key: str) -> str:
    """Note the key of an int or a short str argument (encoding it is most of a key's cost);
    the memo is emptied when full, so it holds the recent ones."""
    if value.__class__ is int or len(value) <= _KNOWN_STR:  # type: ignore[arg-type]
        if len(known) >= _KNOWN_KEYS:
            known.clear()
        known[value] = key
    return key


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


class KeyBuilder:
    """One function's key rules, decided at decoration; ``for_prefix`` gives the per-call path."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        version: str | int | None = None,
        ignore: Iterable[str] = (),
        key: str | Callable[..., str] | None = None,
    ) -> None:
        self._func = unwrap(func)
        self._binder = Binder(self._func)
        params = self._binder.parameters
        module = getattr(self._func, "__module__", None)
        qualname = getattr(self._func, "__qualname__", type(self._func).__qualname__)
        self._name = _check_name(f"{module}.{qualname}")
        if key is None and isinstance(self._func, functools.partial):
            raise ConfigurationError(
                "a functools.partial has no name of its own (every partial's keys would start "
                "with 'functools.partial') and its bound arguments are in no key: cache the "
                "function itself, or give key=")
        if key is None and qualname.endswith("<lambda>"):
            raise ConfigurationError(
                f"{self._name} is a lambda: every lambda of a scope is named '<lambda>', so "
                "their entries would be one another's; define it with def, or give key=")
        self._suffix = "" if version is None else f":v{_check_version(version)}"
        ignored = frozenset((ignore,) if isinstance(ignore, str) else items(ignore, "ignore"))
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
        plain_positional = all(k in POSITIONAL for k in kinds.values())
        self._fast_arity = len(params) if plain_positional else -1
        self._fast_positions = tuple(kept)
        self._template: Template | None = None
        self._key_func: Callable[..., str] | None = None
        #: Every argument is in the key: what else a call derives from its arguments alone
        #: (its tag keys) is the same for every call with this key.
        self.whole = key is None and len(kept) == len(params)
        if isinstance(key, str):
            self._template = Template(key, params, what="key")
        elif callable(key):
            self._key_func = key
        elif key is not None:
            raise ConfigurationError(f"key= must be None, a str template or a callable: {key!r}")

    @property
    def name(self) -> str:
        """``module.qualname``."""
        return self._name

    @property
    def by_name(self) -> str | None:
        """The :attr:`namespace` when the keys are the default ones (built from the name);
        None when ``key=`` builds them."""
        return self.namespace if self._template is None and self._key_func is None else None

    @property
    def namespace(self) -> str:
        """``name[:vVERSION]``: what every default key of this function has after ``prefix:``."""
        return self._name + self._suffix

    @property
    def family(self) -> str:
        """What names this function's entries as a group (its implicit tag): the namespace, or
        for a key template its shape, so the functions whose templates render the same keys
        (a writer and a reader, ``@cached`` and ``@cached_many``) share their entries."""
        if self._template is not None:
            return "key=" + self._template.shape + self._suffix
        return self.namespace

    @property
    def pure(self) -> bool:
        """Whether a key depends on the call's arguments only (not so with a ``key=``
        callable, which may read anything)."""
        return self._key_func is None

    def binder(self) -> Binder:
        """The function's Binder, shared with its tag templates."""
        return self._binder

    def for_prefix(self, prefix: str, namer: Namer | None = None) -> KeyFn:
        """The per-call ``(args, kwargs) -> full key`` function for one registry prefix; with
        ``namer``, its argument part is that keyed hash (a ``sensitive=True`` function)."""
        root = check_prefix(prefix) + ":"
        if self._template is not None:
            return self._template_keys(root, namer)
        if self._key_func is not None:
            return self._callable_keys(root, namer)
        return self._default_keys(root, namer)

    def aliases(self, prefix: str, namers: Iterable[Namer]
                ) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, ...]] | None:
        """The per-call function giving the keys a call had under older keyed hashes (a key
        rotation), or None when there are none."""
        older = tuple(self.for_prefix(prefix, namer) for namer in namers)
        if not older:
            return None
        return lambda args, kwargs: tuple(key(args, kwargs) for key in older)

    def _encode_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The slow path: bind, then encode the kept arguments (``*args`` as a list)."""
        named = self._binder.arguments(args, kwargs)
        values = ((n, list(named[n]) if var else named[n]) for n, var in self._encoded)
        return encode_values(values, self._name)

    def _default_keys(self, root: str, namer: Namer | None) -> KeyFn:
        """Default keys, with a fast path for exact-arity positional calls of primitives."""
        head = f"{root}{self.namespace}:"
        fit = _fitter(root, head) if namer is None else _keyed(
            root, head, self.namespace + ":", namer)
        arity, positions, slow = self._fast_arity, self._fast_positions, self._encode_call
        primitives = PRIMITIVES
        if len(positions) == 1:  # the commonest shape, f(x): no loop, no join
            (index,) = positions
            # The keys of recent ints and short strs. A sensitive function's too: the process
            # holds its encryption key, so its memory is no place to hide an argument from.
            known: dict[int | str, str] = {}

            def single_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
                if not kwargs and len(args) == arity:
                    value = args[index]
                    kind = type(value)
                    if kind is int or kind is str:  # exact: 1, True, 1.0 apart
                        try:
                            return known[value]
                        except KeyError:
                            return _remember(known, value, fit(primitives[kind](value)))
                    encoder = primitives.get(kind)
                    if encoder is not None:
                        return fit(encoder(value))
                return fit(slow(args, kwargs))

            return single_key

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

    def _template_keys(self, root: str, namer: Namer | None) -> KeyFn:
        """Keys from a str template: ``prefix:RENDERED[:vVERSION]``."""
        assert self._template is not None
        fit, render, arguments = _fitter(root, root), self._template.render, self._binder.arguments
        suffix = self._suffix
        if namer is not None:
            render = functools.partial(self._template.render_keyed, namer=namer)

        def template_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            return fit(_unreserved(render(arguments(args, kwargs))) + suffix)

        return template_key

    def _callable_keys(self, root: str, namer: Namer | None) -> KeyFn:
        """Keys from a user callable: ``prefix:RESULT[:vVERSION]``, the result checked."""
        assert self._key_func is not None
        fit, make, suffix, name = _fitter(root, root), self._key_func, self._suffix, self._name
        text: Callable[[str], str] = escape_text
        if namer is not None:  # the whole result is one value, hashed as a template's "{x}"
            text = functools.partial(keyed_value, "", namer=namer)

        def callable_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            body = make(*args, **kwargs)
            if not isinstance(body, str):
                raise ConfigurationError(
                    f"the key= callable returned {type(body).__qualname__}, not str", function=name
                )
            return fit(_unreserved(text(body)) + suffix)

        return callable_key
