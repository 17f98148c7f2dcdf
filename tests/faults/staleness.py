"""Is a stale read a broken promise, or a change still on its way to another process?

The near cache promises that the process which made a change never serves the old value once
its call has returned, and that other processes see the change within the *reach window*:
the time Redis's invalidation message takes to arrive (a few ms, longer on a saturated
machine). A read older than a returned write is therefore *within reach*, not stale, when a
near hit served it, and every newer version it missed returned less than :data:`REACH`
seconds before the read began and was written by another process than the reader's. (A read
that went to Redis has no such window: the write had stored or dropped the entry there.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["REACH", "Ack", "missed", "within_reach"]

#: Seconds after a write's call returned during which another process may still serve the
#: version before it (a generous bound: the reach measured is a few ms, tens on a busy machine).
REACH = 0.2


@dataclass(frozen=True)
class Ack:
    """Version ``v`` of a product: written by worker ``writer``, its call returned at ``at``
    (wall clock)."""

    v: int
    at: float
    writer: int


def missed(acks: Iterable[Ack], got: int, before: int) -> list[Ack]:
    """The acknowledged versions a read that returned ``got`` did not see: newer than ``got``,
    at most ``before`` (the newest acknowledged when the read began)."""
    return sorted((a for a in acks if got < a.v <= before), key=lambda a: a.v)


def within_reach(missing: Sequence[Ack], began: float, reader: int, *, near: bool,
                 reach: float = REACH) -> bool:
    """Whether a stale read by worker ``reader`` that began at ``began`` (wall clock), missed
    ``missing`` and was (``near``) or was not served by the near cache is within reach: a near
    hit, each missed version written by another process and acknowledged less than ``reach``
    seconds before the read began. Nothing missed: False (not stale, or versions unknown)."""
    return near and bool(missing) and all(
        a.writer != reader and began - a.at < reach for a in missing)
