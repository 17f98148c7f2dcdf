"""What every codec is: one function's return values to bytes and back."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Codec", "type_name"]


class Codec(Protocol):
    """Turns one function's return values into bytes and back."""

    def dumps(self, value: Any) -> bytes:
        """Encode a return value; SerializationError names the function and the type."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode stored bytes; SerializationError on corrupt or forged data (a miss)."""
        ...


def type_name(tp: type) -> str:
    """A type's name for messages: bare for builtins, module-qualified otherwise."""
    return tp.__qualname__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__qualname__}"
