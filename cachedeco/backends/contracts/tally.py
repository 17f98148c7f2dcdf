"""The tally contract a backend offers beside the cache core (``backend.tally(key)``).

A tally is one table of named integers that many processes add to: each adds what it
counted since its last report, and anyone reads the sums. The operator's ``cachedeco stats``
reads the service-wide hit and miss counts from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["AsyncTally", "Tally"]


class Tally(Protocol):
    """A table of counts shared by every process using the backend."""

    def add(self, counts: Mapping[str, int]) -> None:
        """Add each count to its name's sum, all or none, in one command."""
        ...

    def read(self) -> dict[str, int]:
        """Every name and its sum."""
        ...


class AsyncTally(Protocol):
    """The asyncio twin of :class:`Tally`."""

    async def add(self, counts: Mapping[str, int]) -> None:
        """See :meth:`Tally.add`."""
        ...

    async def read(self) -> dict[str, int]:
        """See :meth:`Tally.read`."""
        ...
