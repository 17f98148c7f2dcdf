"""Encryption at rest for ``sensitive=True`` functions: a codec wrapping a codec.

The inner codec's bytes are encrypted and authenticated with AES-256-GCM under the
registry's current key (:mod:`cachedeco.core.keyring`), the cache key they are stored under
being the associated data: bytes moved to another key, altered, or written with a key that is
not listed fail authentication, which is a decode failure like any other (a miss, counted and
overwritten), never a wrong value. A payload is::

    b"cdE1" | key id (4 bytes) | nonce (12 random bytes) | ciphertext | tag (16 bytes)

Nonces are random: NIST SP 800-38D's bound of 2**32 encryptions per key is a reason to
rotate keys (``encryption_key=[new, old]``) long before that many writes.

A hot entry is read many times between writes: each payload is authenticated and decrypted
once per codec, and the plaintext kept (up to MEMO_ENTRIES payloads of at most MEMO_BYTES)
by the payload's exact bytes and key name, so a later hit of the same stored bytes skips
AES-GCM (the costliest part of a sensitive hit: about 8 µs of CPU with the caches a round
trip leaves cold). Any other bytes, altered ones included, are decrypted and authenticated.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Final

from cachedeco.core.codec.base import Codec
from cachedeco.core.keyring import KEY_ID_BYTES, Keyring
from cachedeco.errors import SerializationError

__all__ = ["MAGIC", "EncryptedCodec", "is_encrypted"]

MAGIC: Final = b"cdE1"
_NONCE: Final = 12
_HEAD: Final = len(MAGIC) + KEY_ID_BYTES
_BODY: Final = _HEAD + _NONCE  # where the ciphertext starts
MEMO_ENTRIES: Final = 512  # decrypted payloads kept per codec...
MEMO_BYTES: Final = 4096  # ...each at most this long: 4 MiB at most


def is_encrypted(data: object) -> bool:
    """Whether stored bytes look like this codec's (for the operator's ``inspect``)."""
    return isinstance(data, bytes) and data[:len(MAGIC)] == MAGIC


class EncryptedCodec:
    """``inner``'s bytes, encrypted with the keyring's current key, bound to their cache key."""

    __slots__ = ("_decode", "_head", "_inner", "_memo", "_name", "_openers", "_seal",
                 "_urandom")

    def __init__(self, inner: Codec, keyring: Keyring, name: str) -> None:
        self._inner = inner
        self._decode = inner.loads
        self._name = name
        self._head = MAGIC + keyring.current_id
        self._seal = keyring.current.encrypt
        # By payload head (magic and key id): one lookup picks the key and checks the magic.
        self._openers = {MAGIC + key_id: cipher.decrypt
                         for key_id, cipher in keyring.ciphers().items()}
        self._urandom = os.urandom
        self._memo: dict[bytes, tuple[str, bytes]] = {}  # payload -> (key name, plaintext)

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Encode with the inner codec, then encrypt under the current key."""
        nonce = self._urandom(_NONCE)
        sealed: bytes = self._seal(nonce, self._inner.dumps(value, key), key.encode())
        return self._head + nonce + sealed

    def loads(self, data: bytes, key: str = "") -> Any:
        """Authenticate and decrypt with the listed key the payload names, then decode.

        The messages name the function and the reason, never the plaintext.
        """
        seen = self._memo.get(data)
        if seen is not None and seen[0] == key:  # these very bytes, authenticated before
            plain, fresh = seen[1], False
        else:
            plain, fresh = self._open(data, key), True
        try:
            value = self._decode(plain, key)
        except SerializationError as exc:  # its message may quote the (secret) plaintext
            raise self._refused(f"the decrypted value does not decode ({type(exc).__name__})"
                                ) from None
        if fresh and len(data) <= MEMO_BYTES:
            self._remember(data, key, plain)
        return value

    def _open(self, data: bytes, key: str) -> bytes:
        """The plaintext of ``data``, authenticated as stored under ``key``."""
        decrypt = self._openers.get(data[:_HEAD])
        if decrypt is None:
            raise self._refused("encrypted with a key that is not in encryption_key"
                                if is_encrypted(data) else "not an encrypted payload")
        try:
            plain: bytes = decrypt(data[_HEAD:_BODY], data[_BODY:], key.encode())
        except Exception as exc:  # cryptography's InvalidTag (or a truncated payload)
            raise self._refused("authentication failed (altered, or stored under another "
                                "key)") from exc
        return plain

    def _remember(self, data: bytes, key: str, plain: bytes) -> None:
        """Keep a decoded payload's plaintext, dropping the oldest when the memo is full."""
        memo = self._memo
        if len(memo) >= MEMO_ENTRIES:
            # another thread may have changed the memo meanwhile
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del memo[next(iter(memo))]
        memo[data] = (key, plain)

    def _refused(self, reason: str) -> SerializationError:
        """The error for a payload that is not decrypted, or does not decode once it is."""
        return SerializationError(f"cannot decode the cached value of {self._name}: {reason}",
                                  function=self._name)
