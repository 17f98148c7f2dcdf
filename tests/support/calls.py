"""``Calls``: what a cached function was called with, in order (thread-safe)."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Calls"]


class Calls:
    """Records each call's arguments: one argument as itself, several as a tuple."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, *item: Any) -> None:
        with self._lock:
            self.log.append(item if len(item) != 1 else item[0])

    def __len__(self) -> int:
        return len(self.log)

    def count(self, item: Any) -> int:
        return self.log.count(item)
