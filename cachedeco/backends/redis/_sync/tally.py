# GENERATED from _async/tally.py by tools/unasync.py: do not edit.
"""The tally in a Redis hash, sync flavour: one script adds every count at once
(``HINCRBY`` per field, atomic), ``HGETALL`` reads the sums. Works alike on one server,
Sentinel's primary and Cluster (one key, one slot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachedeco.backends.redis import scripts

__all__ = ["RedisTally"]


class RedisTally:
    """A table of counts in the hash at ``key``, shared by every process."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self._add = client.register_script(scripts.TALLY_ADD)

    def add(self, counts: Mapping[str, int]) -> None:
        """One EVALSHA: every count added, or none."""
        if counts:
            args = [part for name, count in counts.items() for part in (name, count)]
            self._add(keys=[self.key], args=args)

    def read(self) -> dict[str, int]:
        """Every field of the hash and its sum."""
        raw = self.client.hgetall(self.key)
        return {_text(name): int(value) for name, value in raw.items()}


def _text(name: bytes | str) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name
