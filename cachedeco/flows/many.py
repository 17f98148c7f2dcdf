"""The pure steps of a ``@cached_many`` call: the ids asked for and their keys, what the one
read found, and what the function returned (the drivers are ``_async/many.py`` and its
generated ``_sync/`` twin)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cachedeco.backends.base import ReadResult
from cachedeco.backends.near.store import Ticket
from cachedeco.core.entry import CORRUPT, NO_VALUE
from cachedeco.errors import ConfigurationError
from cachedeco.flows.bound import Bound, Call, ReadState

__all__ = ["ABSENT", "Batch", "ManyCall", "found_and_missing", "keep_near", "near_found",
           "returned"]

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
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
            raise ConfigurationError(f"@cached_many {b.name} takes an iterable of ids, not the "
                                     f"{type(ids).__name__} {ids!r}")
        unique = list(dict.fromkeys(ids))
        return cls(unique, [b.key((i,), {}) for i in unique], [b.tags((i,), {}) for i in unique])

    def reads(self) -> list[tuple[str, tuple[str, ...]]]:
        """What to read: every entry with its tags."""
        return list(zip(self.keys, self.tag_keys, strict=True))

    def only(self, indices: list[int]) -> Batch:
        """The batch of the ids at ``indices``."""
        return Batch([self.ids[i] for i in indices], [self.keys[i] for i in indices],
                     [self.tag_keys[i] for i in indices])


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


def near_found(b: Bound, batch: Batch) -> tuple[dict[Any, Any], Batch, Ticket | None, list[int]]:
    """What the near cache holds of ``batch`` (by id, counted as hits), the batch of the other
    ids to read from Redis, the ticket to take before that read (None: nothing will be kept)
    and the indices in it of the ids whose value is to be kept (see ``NearStore.admits``).
    Without a near cache: nothing, and the whole batch."""
    near = b.near
    if near is None:
        return {}, batch, None, []
    found: dict[Any, Any] = {}
    rest: list[int] = []
    reader = b.near_reader
    for i, key in enumerate(batch.keys):
        kept = near.hit(key, batch.tag_keys[i], reader)
        if kept is None:
            rest.append(i)
        else:
            found[batch.ids[i]] = kept.value
    b.stats.hits += len(found)
    b.stats.near_hits += len(found)
    others = batch if len(rest) == len(batch.ids) else batch.only(rest)
    if not rest:
        return found, others, None, []
    admitted = [i for i, key in enumerate(others.keys) if near.admits(key)]
    return found, others, near.ticket() if admitted else None, admitted


def keep_near(b: Bound, batch: Batch, results: list[ReadResult], found: dict[Any, Any], *,
              ticket: Ticket, admitted: list[int]) -> None:
    """Keep near the values of ``found`` (what the read of ``batch`` found fresh) among the
    ``admitted`` ids: the store refuses each one whose key or tags were reported changed
    since ``ticket`` was taken, before the read."""
    assert b.near is not None
    for i in admitted:
        ident = batch.ids[i]
        entry, tokens = results[i]
        if ident in found and entry is not None:
            b.near.install(ticket, batch.keys[i],
                           b.near_value(entry, tokens, batch.tag_keys[i], found[ident]))


def returned(b: Bound, result: object) -> Mapping[Any, Any]:
    """The function's result, which must map ids to values."""
    if not isinstance(result, Mapping):
        raise ConfigurationError(f"@cached_many {b.name} must return a mapping from id to "
                                 f"value, not {type(result).__qualname__}", function=b.name)
    return result
