"""The pure steps of a ``@cached_many`` call: the ids asked for and their keys, what the one
read found, and what the function returned (the drivers are ``_async/many.py`` and its
generated ``_sync/`` twin)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cachedeco.backends.base import ReadResult
from cachedeco.core.entry import CORRUPT, NO_VALUE
from cachedeco.errors import ConfigurationError
from cachedeco.flows.bound import Bound, Call, ReadState

__all__ = ["ABSENT", "Batch", "ManyCall", "found_and_missing", "returned"]

#: What a per-id flight lands with when the function left that id out of its mapping.
ABSENT: Final = object()


@dataclass(slots=True, eq=False)
class Batch:
    """One call's distinct ids (in the order asked), their entry keys and tag keys."""

    ids: list[Any]
    keys: list[str]
    tag_keys: list[tuple[str, ...]]

    @classmethod
    def of(cls, b: Bound, ids: Iterable[Any]) -> Batch:
        """The batch for ``ids``: duplicates asked once, each id bound alone to the templates."""
        if isinstance(ids, str | bytes):
            raise ConfigurationError(f"@cached_many {b.name} takes an iterable of ids, not the "
                                     f"{type(ids).__name__} {ids!r}")
        unique = list(dict.fromkeys(ids))
        return cls(unique, [b.key((i,), {}) for i in unique], [b.tags((i,), {}) for i in unique])

    def reads(self) -> list[tuple[str, tuple[str, ...]]]:
        """What to read: every entry with its tags."""
        return list(zip(self.keys, self.tag_keys, strict=True))


@dataclass(slots=True, eq=False)
class ManyCall:
    """One call that missed some ids: its binding, function, leading arguments and batch."""

    b: Bound
    func: Callable[..., Any]
    head: tuple[Any, ...]  # what comes before the ids: ``self`` of a method
    batch: Batch

    def entry(self, i: int) -> Call:
        """The call of one id, as the single-entry steps (store, leases) take it."""
        return Call(self.func, self.head, {}, self.batch.keys[i], self.batch.tag_keys[i])


def found_and_missing(b: Bound, batch: Batch, results: list[ReadResult]
                      ) -> tuple[dict[Any, Any], dict[int, ReadState]]:
    """The fresh values the read found (by id), and for the other ids (by index in the
    batch) what their fill read: the state its conditional store expects."""
    found: dict[Any, Any] = {}
    missing: dict[int, ReadState] = {}
    now = time.time()
    for i, (entry, tokens) in enumerate(results):
        if entry is not None and entry.tags == tokens and entry.value is not NO_VALUE and (
                now < entry.soft):
            value = b.decode(entry, batch.keys[i])
            if value is not NO_VALUE:
                found[batch.ids[i]] = value
                continue
        if entry is not None and entry.marker == CORRUPT:
            b.corrupt()
        missing[i] = ("" if entry is None else entry.marker, tokens)
    b.stats.hits += len(found)
    b.stats.misses += len(missing)
    return found, missing


def returned(b: Bound, result: object) -> Mapping[Any, Any]:
    """The function's result, which must map ids to values."""
    if not isinstance(result, Mapping):
        raise ConfigurationError(f"@cached_many {b.name} must return a mapping from id to "
                                 f"value, not {type(result).__qualname__}", function=b.name)
    return result
