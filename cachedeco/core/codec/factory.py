"""The codec of one decorated function, decided once.

``make_codec`` picks ``"orjson"`` (the default, :mod:`.json`), ``"pickle"`` (signed,
:mod:`.signed_pickle`) or a custom object with ``dumps``/``loads`` (:mod:`.custom`), and
wraps it in :mod:`.crypto`'s encryption for a ``sensitive=True`` function. Every
failure to encode raises ``SerializationError`` (also a ``TypeError``) naming the function and
the type; every failure to decode raises ``SerializationError``, which callers treat as a miss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachedeco.core.codec.base import Codec
from cachedeco.core.codec.crypto import EncryptedCodec
from cachedeco.core.codec.custom import CustomCodec
from cachedeco.core.codec.json import json_codec
from cachedeco.core.codec.signed_pickle import SignedPickleCodec, pickle_key
from cachedeco.core.keyring import Keyring
from cachedeco.errors import ConfigurationError

__all__ = ["Codec", "make_codec"]


def make_codec(spec: str | object, *, func: Callable[..., Any] | None = None, name: str = "?",
               secret: str | bytes | None = None, keyring: Keyring | None = None,
               annotation: Callable[[], Any] | None = None) -> Codec:
    """Build the codec for one function: "orjson", "pickle" (needs secret) or a custom object,
    encrypted with ``keyring`` when one is given.

    ``func`` supplies the return annotation the orjson codec decodes to (``annotation()``,
    when given, supplies it instead: only the orjson codec asks); ``name`` (the function's
    qualified name) goes into error messages.
    """
    codec = _plain_codec(spec, func, name, secret, annotation)
    return codec if keyring is None else EncryptedCodec(codec, keyring, name)


def _plain_codec(spec: str | object, func: Callable[..., Any] | None, name: str,
                 secret: str | bytes | None, annotation: Callable[[], Any] | None) -> Codec:
    """The codec that turns values into bytes (before any encryption)."""
    if spec is None or spec == "orjson":
        return json_codec(func, name, annotation)
    if spec == "pickle":
        return SignedPickleCodec(pickle_key(secret, name), name)
    if isinstance(spec, str):
        raise ConfigurationError(
            f"unknown serializer {spec!r}: use 'orjson', 'pickle' or an object with "
            "dumps(obj) -> bytes and loads(bytes) -> obj", function=name)
    if callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None)):
        return CustomCodec(spec, name)
    raise ConfigurationError(
        f"serializer {spec!r} has no callable dumps() and loads(); a custom serializer needs "
        "dumps(obj) -> bytes and loads(bytes) -> obj", function=name)
