"""What every codec is: one function's return values to bytes and back."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Codec", "decoder", "type_name"]

#: One object per way of decoding declared by codecs (see :func:`decoder`).
_DECODERS: dict[object, object] = {}


class Codec(Protocol):
    """Turns one function's return values into bytes and back.

    ``key`` is the cache key the bytes are stored under (for a write-behind record, the key
    of its entry): a codec may bind its bytes to it, as the encrypting codec does (bytes moved
    to another key do not decode there); the others ignore it.
    """

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Encode a return value; SerializationError names the function and the type."""
        ...

    def loads(self, data: bytes, key: str = "") -> Any:
        """Decode stored bytes; SerializationError on corrupt or forged data (a miss)."""
        ...


def decoder(codec: object) -> object:
    """What stands for the way ``codec`` decodes, compared with ``is`` (a near hit asks it):
    one object for every codec whose ``decodes`` attribute is equal (the same bytes make
    equal values of the same type), else the codec itself (a way of its own)."""
    decodes = getattr(codec, "decodes", None)
    if decodes is None:
        return codec
    try:
        return _DECODERS.setdefault(decodes, decodes)
    except TypeError:  # an annotation that cannot be hashed: taken as a way of its own
        return codec


def type_name(tp: type) -> str:
    """A type's name for messages: bare for builtins, module-qualified otherwise."""
    return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
