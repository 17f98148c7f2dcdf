"""The I/O of one ``@write_behind`` function, asyncio flavour: a call's push, a drain, the
last drain before its worker ends, and the dead letters, over the state kept by
:class:`~cachedeco.flows.write_behind_core.WriteBehindCore`.
"""

from __future__ import annotations

import time
from typing import Any, Final

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.contracts.queues import DeadLetter, NotReplicated, NotStored
from cachedeco.core.entry import new_tombstone
from cachedeco.flows._async.deliver import run
from cachedeco.flows.delivery import Deferred
from cachedeco.flows.delivery import drain as drain_flow
from cachedeco.flows.write_behind_core import CLOSE_GRACE, WriteBehindCore
from cachedeco.runtime.primitives import Stop, asleep, never

__all__ = ["AsyncWriteBehindIO"]

REPLAY_CHUNK: Final = 500
#: Seconds between two takes of a patient drain that found another process's batch in flight.
BLOCKED_NAP: Final = 0.05


class AsyncWriteBehindIO(WriteBehindCore):
    """The asyncio I/O of one write-behind function."""

    async def apush(self, args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> None:
        """Store and queue a call's record; when the backend cannot take it, into the
        registry's spool, else BackendError. While caching is switched off the record goes to
        ``flush`` at once."""
        bound = self.link.bound()
        if not bound.enabled:
            await self.ahand_over(value)
            return
        guard, item, aliases = self.prepare(bound, args, kwargs, value)
        if not guard.breaker.allow():
            await self.akeep(bound, guard, item, None)
            return
        try:
            length = await self.aqueue(bound).push(item, *self.replication(bound))
        except NotStored as exc:
            self.not_stored(guard, item, exc)
            return
        except NotReplicated as exc:
            self.not_replicated(bound, guard, item, exc)
        except BACKEND_ERRORS as exc:
            await self.akeep(bound, guard, item, exc)
            return
        self.queued(guard, length)
        if aliases:  # after a key rotation: the entry's older copies must not outlive it
            try:
                await bound.slot.abackend().invalidate(aliases, new_tombstone(),
                                                       bound.policy.hard_ms)
            except BACKEND_ERRORS as exc:
                guard.absorb(exc, key=item.key, function=self.name,
                             action="drop the entry's copies under older encryption keys")

    async def adrain(self, *, raise_errors: bool, stop: Stop = never, wait: bool = True,
                     patience: float = 0.0) -> None:
        """Deliver what waits, in this task; a backend fault is a BackendError when
        ``raise_errors``, else a (rate-limited) log line. Without ``wait`` a failed
        ``flush`` is not retried now: its batch stays queued for a later drain; nor, on a
        durable queue, once the registry has closed for CLOSE_GRACE (see ``hurry``). With
        ``patience`` (seconds), a drain that could take nothing while another process's
        batch is in flight (one per queue) tries again until it takes some (an explicit
        flush or close: it returned with this process's records still queued)."""
        until = time.monotonic() + patience
        while True:
            async with self.alock():
                self.since_take = 0
                bound = self.link.bound()
                queue = self.aqueue(bound)
                job = self.job(bound, queue.durable, stop)
                try:
                    await run(drain_flow(job), queue, self.consumer, self.flush_fn,
                              self.settings, wait=wait, hurry=self.hurry)
                except Deferred:
                    self.deferred(job)
                except BACKEND_ERRORS as exc:
                    guard = self.quiet(bound)
                    action = "flush the write-behind queue"
                    if raise_errors:
                        raise guard.error(exc, function=self.name, action=action) from exc
                    guard.absorb(exc, function=self.name, action=action)
                    return
            if job.taken or not job.blocked or stop() or time.monotonic() >= until:
                return
            await asleep(BLOCKED_NAP)

    async def afinal(self, *, wait: bool = True) -> None:
        """The last drain before the worker ends; then this consumer leaves the group.
        Without ``wait`` (its event loop shuts down), a failed ``flush`` is left queued."""
        await self.adrain(raise_errors=False, wait=wait, patience=CLOSE_GRACE if wait else 0.0)
        bound = self.link.bound()
        try:
            await self.aqueue(bound).release(self.consumer, (), 0)
        except BACKEND_ERRORS as exc:
            self.quiet(bound).absorb(exc, function=self.name, action="leave the consumer group")

    async def adead_letters(self, limit: int) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, records decoded (left as bytes if they cannot be)."""
        bound = self.link.bound()
        try:
            return self.decoded(bound, await self.aqueue(bound).dead_letters(limit))
        except BACKEND_ERRORS as exc:
            raise self.quiet(bound).error(exc, function=self.name,
                                          action="list dead letters") from exc

    async def areplay_dead_letters(self) -> int:
        """Queue every dead letter again and wake the worker; return how many."""
        bound = self.link.bound()
        queue = self.aqueue(bound)
        total = 0
        try:
            while moved := await queue.replay(REPLAY_CHUNK):
                total += moved
        except BACKEND_ERRORS as exc:
            raise self.quiet(bound).error(exc, function=self.name,
                                          action="replay dead letters") from exc
        self.queued_here = True  # queued by this process: its worker delivers them now
        self.worker.ensure()
        self.worker.notify()
        return total
