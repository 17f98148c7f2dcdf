"""Looking behind the cache: what a registry's backend holds at a key, on any deployment."""

from __future__ import annotations

from typing import Any

from cachedeco import Registry

__all__ = ["is_tombstone", "stored"]


def stored(reg: Registry, key: str, backend: str = "default") -> Any:
    """What ``key`` holds, read past the cache logic: ``None`` when absent, the stored bytes on
    Redis, the entry object on ``memory://`` (whose values are objects)."""
    return reg.slot(backend).backend().raw(key)


def is_tombstone(value: Any) -> bool:
    """Whether what :func:`stored` returned is a tombstone (an invalidated entry)."""
    if isinstance(value, bytes):
        return value.startswith(b"cdT:")
    return bool(value is not None and value.is_tombstone)
