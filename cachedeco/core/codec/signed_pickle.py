"""Signed pickle: a payload is one version byte, HMAC-SHA256(secret, pickled) and the pickled
bytes; the signature is checked (in constant time) before anything is unpickled, so a payload
written by anyone without the secret is never unpickled.
"""

from __future__ import annotations

import hmac
import pickle
from typing import Any

from cachedeco.core.codec.base import type_name
from cachedeco.core.keyring import MIN_KEY_BYTES
from cachedeco.errors import ConfigurationError, SerializationError

__all__ = ["SignedPickleCodec", "is_signed_pickle", "pickle_key"]

_PICKLE_VERSION = 1
_MAC_SIZE = 32  # HMAC-SHA256


def pickle_key(secret: object, name: str) -> bytes:
    """The HMAC key for signed pickle: a missing secret, or one shorter than 32 bytes (whoever
    reads the cache could guess it offline from a payload and its MAC, then sign a pickle
    every process would run), is a ConfigurationError."""
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes | bytearray) or not secret:
        raise ConfigurationError(
            "serializer='pickle' needs a non-empty secret= (str or bytes): payloads are signed "
            "because unpickling data from the cache could run arbitrary code", function=name)
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"serializer='pickle' needs a secret of at least {MIN_KEY_BYTES} bytes, not "
            f"{len(secret)} (e.g. secrets.token_urlsafe(32)): a short one can be guessed from "
            "a stored payload, and a forged pickle runs code", function=name)
    return bytes(secret)


def is_signed_pickle(data: bytes) -> bool:
    """Whether ``data`` has a signed pickle's shape (its signature unchecked)."""
    return len(data) > 1 + _MAC_SIZE and data[0] == _PICKLE_VERSION


class SignedPickleCodec:
    """Pickle signed with HMAC-SHA256: version byte, 32-byte MAC, pickled bytes."""

    __slots__ = ("_key", "_name")

    def __init__(self, key: bytes, name: str) -> None:
        self._key = key
        self._name = name

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Pickle and sign."""
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # PicklingError, TypeError, AttributeError (local objects)...
            raise SerializationError(
                f"cannot pickle the {type_name(type(value))} returned by {self._name}: {exc}",
                function=self._name) from exc
        return bytes((_PICKLE_VERSION,)) + hmac.digest(self._key, payload, "sha256") + payload

    def loads(self, data: bytes, key: str = "") -> Any:
        """Verify the signature, and only then unpickle."""
        if not is_signed_pickle(data):
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
