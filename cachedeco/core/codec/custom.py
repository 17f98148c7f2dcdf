"""A user's serializer (any object with ``dumps`` and ``loads``), wrapped so that its failures
are SerializationError like the built-in codecs' and its str output is UTF-8 bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cachedeco.core.codec.base import type_name
from cachedeco.errors import SerializationError

__all__ = ["CustomCodec"]


class CustomCodec:
    """A user serializer whose failures become SerializationError and str output UTF-8."""

    __slots__ = ("_dumps", "_loads", "_name")

    def __init__(self, serializer: Any, name: str) -> None:
        self._dumps: Callable[[Any], object] = serializer.dumps
        self._loads: Callable[[bytes], Any] = serializer.loads
        self._name = name

    def dumps(self, value: Any, key: str = "") -> bytes:
        """Encode with the user's dumps; insist on bytes (str is encoded as UTF-8)."""
        try:
            data = self._dumps(value)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"the serializer cannot serialize the {type_name(type(value))} returned by "
                f"{self._name}: {type(exc).__name__}: {exc}", function=self._name) from exc
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, bytearray | memoryview):
            return bytes(data)
        raise SerializationError(
            f"the serializer's dumps() returned a {type_name(type(data))} for {self._name}, "
            "not bytes or str", function=self._name)

    def loads(self, data: bytes, key: str = "") -> Any:
        """Decode with the user's loads."""
        try:
            return self._loads(data)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"cannot decode the cached value of {self._name}: {type(exc).__name__}: {exc}",
                function=self._name) from exc
