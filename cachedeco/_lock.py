"""``cachedeco.lock`` (being built)."""

from __future__ import annotations

from typing import Any


class Lock:
    """Not available yet."""

    def __init__(self, registry: Any, name: str, **kwargs: Any) -> None:
        raise NotImplementedError
