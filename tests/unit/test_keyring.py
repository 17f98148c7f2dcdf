"""``encryption_key=`` and ``sensitive=True`` without a server: the keyring, the encrypting
codec, keyed-hash key names, and the memory:// backend."""

from __future__ import annotations

import enum
import hashlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

import cachedeco
from cachedeco import ConfigurationError, Registry, SerializationError
from cachedeco.core.codec.crypto import MAGIC, EncryptedCodec, is_encrypted
from cachedeco.core.codec.factory import make_codec
from cachedeco.core.keyring import make_keyring
from cachedeco.flows.spec import spec_of

OLD = "o" * 32
NEW = b"n" * 40
EMAIL = "alice.MARKER@example.com"
KEY = "myapp:users.get:!0123"


def codec(keys: object, func: Callable[..., Any] | None = None) -> EncryptedCodec:
    keyring = make_keyring(keys)
    assert keyring is not None
    made = make_codec("orjson", func=func, name="f", keyring=keyring)
    assert isinstance(made, EncryptedCodec)
    return made


# --- the keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["x" * 31, b"\x00" * 31, 42, [], ["k" * 32, "short"], {"k": 1},
                                 [OLD, OLD], [OLD, NEW, OLD.encode()]])
def test_a_bad_encryption_key_is_a_configuration_error(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="encryption_key"):
        Registry("memory://", encryption_key=bad)  # type: ignore[arg-type]


def test_keys_of_32_bytes_str_bytes_or_a_list_are_accepted() -> None:
    assert make_keyring(None) is None
    for key in ("é" * 16, b"\x00" * 32, [NEW, OLD], (OLD,)):  # "é" is 2 bytes in UTF-8
        keyring = make_keyring(key)
        assert keyring is not None and len(keyring) == (2 if isinstance(key, list) else 1)


def test_the_key_material_is_never_shown() -> None:
    reg = Registry("memory://", encryption_key=[NEW, OLD])
    assert OLD not in repr(reg.keyring) and OLD not in repr(reg) and "nnnn" not in repr(reg)


def test_a_missing_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ConfigurationError, match=r"cachedeco\[crypto\]"):
        Registry("memory://", encryption_key=OLD)
    Registry("memory://")  # without a key, nothing needs it


def test_cryptography_is_imported_only_when_a_key_is_configured() -> None:
    # (redis-py imports the bare ``cryptography`` package to see whether it is installed)
    hkdf = "cryptography.hazmat.primitives.kdf.hkdf"
    script = ("import sys, cachedeco\n"
              "reg = cachedeco.Registry('memory://')\n"
              "@reg.cached\n"
              "def f(x: int) -> int:\n"
              "    return x\n"
              "f(1)\n"
              f"assert {hkdf!r} not in sys.modules, 'imported without a key'\n"
              "cachedeco.Registry('memory://', encryption_key='k' * 32)\n"
              f"assert {hkdf!r} in sys.modules\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


# --- the encrypting codec ----------------------------------------------------------------------


def test_values_are_encrypted_bound_to_their_key_and_authenticated() -> None:
    sealed = codec(OLD)
    data = sealed.dumps({"email": EMAIL}, KEY)
    assert is_encrypted(data) and data.startswith(MAGIC) and b"MARKER" not in data
    assert sealed.dumps({"email": EMAIL}, KEY) != data  # a fresh nonce every time
    assert sealed.loads(data, KEY) == {"email": EMAIL}
    with pytest.raises(SerializationError, match="authentication failed"):
        sealed.loads(data, KEY + "x")  # moved to another key
    flipped = bytearray(data)
    flipped[-20] ^= 1
    with pytest.raises(SerializationError, match="authentication failed"):
        sealed.loads(bytes(flipped), KEY)
    with pytest.raises(SerializationError, match="not an encrypted payload"):
        sealed.loads(b'{"email": "x"}', KEY)  # written before the function was sensitive
    with pytest.raises(SerializationError, match="not in encryption_key"):
        codec("z" * 32).loads(data, KEY)


def counted(sealed: EncryptedCodec) -> list[int]:
    """Count the AES-GCM decryptions ``sealed`` makes (one per key id)."""
    calls = [0]

    def wrap(decrypt: Callable[..., bytes]) -> Callable[..., bytes]:
        def counting(*args: Any) -> bytes:
            calls[0] += 1
            return decrypt(*args)
        return counting

    sealed._openers = {head: wrap(decrypt) for head, decrypt in sealed._openers.items()}
    return calls


def test_the_same_stored_bytes_are_decrypted_once_and_decoded_each_time() -> None:
    sealed = codec(OLD)
    calls = counted(sealed)
    data = sealed.dumps({"email": EMAIL}, KEY)
    first, second = sealed.loads(data, KEY), sealed.loads(bytes(data), KEY)
    assert first == second == {"email": EMAIL} and calls == [1]
    assert first is not second  # a fresh object each time: a caller may mutate its own
    rewritten = sealed.dumps({"email": EMAIL}, KEY)  # the same value, stored again
    assert sealed.loads(rewritten, KEY) == first and calls == [2]
    with pytest.raises(SerializationError, match="authentication failed"):
        sealed.loads(data, KEY + "x")  # known bytes under another key name: still refused
    flipped = bytearray(data)
    flipped[-1] ^= 1
    with pytest.raises(SerializationError, match="authentication failed"):
        sealed.loads(bytes(flipped), KEY)
    assert calls == [4]


def test_the_memo_of_decrypted_payloads_is_bounded() -> None:
    from cachedeco.core.codec.crypto import MEMO_BYTES, MEMO_ENTRIES

    sealed = codec(OLD)
    calls = counted(sealed)
    stored = [sealed.dumps(i, KEY) for i in range(MEMO_ENTRIES + 10)]
    assert [sealed.loads(data, KEY) for data in stored] == list(range(MEMO_ENTRIES + 10))
    assert len(sealed._memo) == MEMO_ENTRIES
    assert [sealed.loads(data, KEY) for data in stored[-MEMO_ENTRIES:]] == list(
        range(10, MEMO_ENTRIES + 10))  # the newest are kept...
    assert calls == [MEMO_ENTRIES + 10]
    assert sealed.loads(stored[0], KEY) == 0 and calls == [MEMO_ENTRIES + 11]  # ...not the oldest
    big = sealed.dumps("x" * MEMO_BYTES, KEY)
    assert sealed.loads(big, KEY) == sealed.loads(big, KEY) and calls == [MEMO_ENTRIES + 13]


def test_a_payload_that_does_not_decode_is_refused_every_time_without_its_text() -> None:
    def colour() -> Colour:
        return Colour.RED

    data = codec(OLD).dumps("MARKER-secret", KEY)
    reader = codec(OLD, colour)
    for _ in range(2):
        with pytest.raises(SerializationError, match="does not decode") as caught:
            reader.loads(data, KEY)
        assert "MARKER" not in str(caught.value)


def test_rotation_reads_every_listed_key_and_writes_with_the_first() -> None:
    old_data = codec(OLD).dumps([1, 2], KEY)
    rotated = codec([NEW, OLD])
    assert rotated.loads(old_data, KEY) == [1, 2]
    assert codec(NEW).loads(rotated.dumps([3], KEY), KEY) == [3]  # written with NEW
    with pytest.raises(SerializationError):
        codec(NEW).loads(old_data, KEY)  # OLD is no longer listed


class Colour(enum.Enum):
    RED = "red"


def test_a_decode_error_after_decryption_does_not_quote_the_value() -> None:
    def colour() -> Colour:
        return Colour.RED

    data = codec(OLD).dumps("MARKER-secret", KEY)  # stored as a str, read back as a Colour
    with pytest.raises(SerializationError) as caught:
        codec(OLD, colour).loads(data, KEY)
    assert "MARKER" not in str(caught.value) and caught.value.__cause__ is None


# --- key names ---------------------------------------------------------------------------------


def test_argument_values_never_appear_in_a_sensitive_key() -> None:
    reg = Registry("memory://", prefix="app", encryption_key=OLD)

    @reg.cached(sensitive=True, version=2)
    def profile(email: str, *, full: bool = False) -> dict[str, str]:
        return {"email": email}

    key = profile.key(EMAIL)
    assert key.startswith(f"app:{__name__}.test_argument_values_never_appear_in_a_sensitive"
                          "_key.<locals>.profile:v2:!")
    assert "MARKER" not in key and "alice" not in key and len(key.rsplit("!", 1)[1]) == 32
    assert profile.key(EMAIL) == profile.key(email=EMAIL, full=False)  # one call, one key
    assert profile.key(EMAIL) != profile.key(EMAIL, full=True) != profile.key("bob")
    same = Registry("memory://", prefix="app", encryption_key=OLD)
    other = Registry("memory://", prefix="app", encryption_key="z" * 32)
    assert cachedeco.cached(sensitive=True, version=2, registry=same)(
        profile.__wrapped__).key(EMAIL) == key
    assert cachedeco.cached(sensitive=True, version=2, registry=other)(
        profile.__wrapped__).key(EMAIL) != key


def test_the_key_name_hash_is_keyed_blake2s_of_the_derived_key() -> None:
    """Key names are stable across versions: keyed BLAKE2s-128 (RFC 7693) under the
    HKDF-derived "key-names" key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"cachedeco/v1/key-names").derive(OLD.encode())
    keyring = make_keyring(OLD)
    assert keyring is not None
    for text in ("", "users.get:s5:alice", "é" * 40, "x" * 300, "\udcff"):
        expected = hashlib.blake2s(text.encode("utf-8", "surrogatepass"), key=derived,
                                   digest_size=16).hexdigest()
        assert keyring.namers()[0](text) == expected
        assert keyring.namers()[0](text) == expected  # the keyed state is copied, not used up


def test_template_values_are_hashed_and_shared_by_writer_and_reader() -> None:
    reg = Registry("memory://", prefix="app", encryption_key=OLD)

    @reg.cached(key="user:{email}:{n}", sensitive=True)
    def reader(email: str, n: int) -> int:
        return n

    @reg.write_through(key="user:{email}:{n}", sensitive=True)
    def writer(email: str, n: int) -> int:
        return n + 1

    @reg.cached(key=lambda email, n: f"user:{email}", sensitive=True)
    def by_callable(email: str, n: int) -> int:
        return n

    key = reader.key(EMAIL, 1)
    assert key.startswith("app:user:!") and ":!" in key[10:] and "MARKER" not in key
    assert reader.key(EMAIL, 2) != key and reader.key(EMAIL, 1) == key
    assert "MARKER" not in by_callable.key(EMAIL, 1)
    assert writer(EMAIL, 1) == 2
    assert reader(EMAIL, 1) == 2  # the writer's entry: one key for both


def test_sensitive_keys_keep_to_cluster_slots_and_key_limits() -> None:
    reg = Registry("memory://", prefix="app", encryption_key=OLD)

    @reg.cached(sensitive=True)
    def long_args(text: str) -> str:
        return text

    key = long_args.key("{x}" * 500)
    assert len(key.encode()) <= 250 and "{" not in key and "}" not in key
    lease = reg.keyspace.lease(key)
    assert lease.key.endswith("{" + key + "}")  # the lease hashes to the entry's slot

    def long_name(x: int) -> int:
        return x

    long_name.__qualname__ = "n" * 240
    keys = {cachedeco.cached(sensitive=True, registry=reg)(long_name).key(x) for x in (1, 2)}
    assert len(keys) == 2 and all(len(k) <= 250 and k.startswith("app:#") for k in keys)


def test_rotation_looks_up_the_older_key_names() -> None:
    old = Registry("memory://", prefix="app", encryption_key=OLD)
    rotated = Registry("memory://", prefix="app", encryption_key=[NEW, OLD])

    def profile(email: str) -> str:
        return email

    old_key = cachedeco.cached(sensitive=True, registry=old)(profile).key(EMAIL)
    spec = spec_of(cachedeco.cached(sensitive=True, registry=rotated)(profile))
    bound = spec.bound()
    assert bound.key((EMAIL,), {}) != old_key
    assert bound.aliases is not None and bound.aliases((EMAIL,), {}) == (old_key,)
    assert spec_of(cachedeco.cached(registry=rotated)(profile)).bound().aliases is None


# --- memory:// ---------------------------------------------------------------------------------


def test_sensitive_on_memory_keeps_objects_and_hashes_keys() -> None:
    reg = Registry("memory://", prefix="app", encryption_key=OLD)
    calls: list[str] = []

    @reg.cached(sensitive=True, tags=["users"])
    def profile(email: str) -> dict[str, str]:
        calls.append(email)
        return {"email": email}

    first = profile(EMAIL)
    assert profile(EMAIL) is first and calls == [EMAIL]  # the same object, as memory:// does
    raw = reg.slot("default").backend().raw(profile.key(EMAIL))
    assert raw is not None and profile.invalidate(EMAIL) and profile(EMAIL) == first
    assert calls == [EMAIL, EMAIL]
