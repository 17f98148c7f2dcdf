"""The registry's encryption keys (``encryption_key=``), turned once into what sensitive
functions use: per-purpose keys derived with HKDF-SHA256, so the raw key is used for nothing
directly.

For each listed key (the first is the current one; the others are older ones, still read
during a rotation) three values are derived: an AES-256-GCM key for values
(:mod:`cachedeco.core.codec.crypto`), a keyed-BLAKE2s key for the argument part of key names
(:meth:`Keyring.namers`), and a 4-byte id written beside each ciphertext so a reader picks
the right key without trying them all. The ``cryptography`` package (the ``crypto`` extra)
is imported here, and only when a key is configured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cachedeco.errors import ConfigurationError

__all__ = ["MIN_KEY_BYTES", "Keyring", "Namer", "make_keyring"]

MIN_KEY_BYTES: Final = 32
KEY_ID_BYTES: Final = 4
NAME_HASH_BYTES: Final = 16  # 128 bits: 32 hex characters in a key name
_INFO: Final = b"cachedeco/v1/"  # HKDF info: one label per purpose after it

#: A keyed hash of key-name text: 32 lowercase hex characters.
Namer = Callable[[str], str]


def _crypto() -> tuple[Any, Any, Any]:
    """cryptography's AESGCM, HKDF and hashes, or a ConfigurationError naming the extra."""
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError as exc:
        raise ConfigurationError(
            "encryption_key= needs the cryptography package: pip install 'cachedeco[crypto]'"
        ) from exc
    return AESGCM, HKDF, hashes


def _material(key: object, position: int) -> bytes:
    """One listed key as bytes: str (UTF-8) or bytes, at least MIN_KEY_BYTES long."""
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogatepass")
    if not isinstance(key, bytes | bytearray):
        raise ConfigurationError(
            f"encryption_key[{position}] must be str or bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"encryption_key[{position}] is {len(key)} bytes long; it must have at least "
            f"{MIN_KEY_BYTES} (e.g. secrets.token_urlsafe(32))")
    return bytes(key)


def _namer(key: bytes) -> Namer:
    """Keyed BLAKE2s (RFC 7693, a PRF by design) under ``key``, NAME_HASH_BYTES long, as hex.

    The keyed state is made once; each call copies it and hashes the text. In a hit path,
    whose caches the round trip has cooled, this costs about a third of HMAC-SHA256's CPU
    (one state copied instead of two, one compression instead of two; BLAKE2s rather than
    BLAKE2b: its 64-byte block suits key names, a few dozen bytes).
    """
    copy = hashlib.blake2s(key=key, digest_size=NAME_HASH_BYTES).copy

    def name_hash(text: str) -> str:
        hashed = copy()
        hashed.update(text.encode("utf-8", "surrogatepass"))
        return hashed.hexdigest()

    return name_hash


@dataclass(frozen=True, slots=True, repr=False)
class _Key:
    """What one listed key gives: its id, its AES-GCM cipher and its key-name hash."""

    id: bytes
    cipher: Any  # cryptography's AESGCM
    namer: Namer


class Keyring:
    """The keys of a registry: ``current`` encrypts and names; every listed key decrypts."""

    __slots__ = ("_by_id", "_keys")

    def __init__(self, keys: Sequence[_Key]) -> None:
        self._keys = tuple(keys)
        self._by_id = {key.id: key.cipher for key in reversed(self._keys)}  # first one wins

    @property
    def current_id(self) -> bytes:
        """The id of the key that encrypts."""
        return self._keys[0].id

    @property
    def current(self) -> Any:
        """The AES-GCM cipher that encrypts."""
        return self._keys[0].cipher

    def ciphers(self) -> dict[bytes, Any]:
        """The AES-GCM cipher of every listed key, by key id."""
        return dict(self._by_id)

    def namers(self) -> tuple[Namer, ...]:
        """The key-name hashes, current first, then those of the older keys."""
        return tuple(key.namer for key in self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # never the key material
        return f"<Keyring of {len(self._keys)} key(s)>"


def make_keyring(encryption_key: object) -> Keyring | None:
    """The keyring for ``encryption_key`` (a key, or ``[current, older, …]``), None for None;
    ConfigurationError for a short or mistyped key, an empty list, a key listed twice, or no
    ``cryptography``."""
    if encryption_key is None:
        return None
    if isinstance(encryption_key, str | bytes | bytearray):
        listed: list[object] = [encryption_key]
    elif isinstance(encryption_key, list | tuple):
        listed = list(encryption_key)
    else:
        raise ConfigurationError(
            "encryption_key must be a str or bytes key, or a list [current, older, …], not "
            f"{type(encryption_key).__name__}")
    if not listed:
        raise ConfigurationError("encryption_key is an empty list: give at least one key")
    materials = [_material(key, i) for i, key in enumerate(listed)]
    for i, material in enumerate(materials):
        if material in materials[:i]:  # each would cost a round trip more per miss
            raise ConfigurationError(
                f"encryption_key[{i}] repeats encryption_key[{materials.index(material)}]: "
                "list each key once")
    aesgcm, hkdf, hashes = _crypto()

    def derive(material: bytes, purpose: bytes, size: int) -> bytes:
        """One per-purpose key (HKDF-SHA256, RFC 5869)."""
        return bytes(hkdf(algorithm=hashes.SHA256(), length=size, salt=None,
                          info=_INFO + purpose).derive(material))

    return Keyring([_Key(id=derive(m, b"key-id", KEY_ID_BYTES),
                         cipher=aesgcm(derive(m, b"aes-256-gcm", 32)),
                         namer=_namer(derive(m, b"key-names", 32)))
                    for m in materials])
