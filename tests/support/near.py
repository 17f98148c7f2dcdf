"""Helpers of the near-cache tests: the commands the change stream sends for itself, a
registry with a near cache, waiting until a call is a near hit, silencing the stream, and
finding the stream's thread and its tracking connections; telling an asyncio call's near hit
from its other tasks' (:class:`FirstStep`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from typing import Any

import pytest
import redis

import cachedeco
from cachedeco import Registry
from tests.support.deployments import Deployment
from tests.support.polling import poll

__all__ = ["TRACKER", "FirstStep", "awarm", "near_registry", "near_threads",
           "silenced_stream", "tracking_clients", "warm"]

#: Commands the change stream sends for itself (its pings, a cluster's topology questions),
#: and a new connection's handshake (``CLIENT SETINFO``: counted from Redis 7.2 and Valkey on,
#: an unknown command before).
TRACKER = frozenset({"info", "ping", "cluster|slots", "client|tracking", "hello",
                     "client|setinfo"})


def near_registry(make: Callable[..., Registry], deployment: Deployment, **kw: Any) -> Registry:
    """A registry with a near cache on the deployment, no service counters reported."""
    return make(deployment.url, near_cache=1000, stats_interval=0, **kw)


def warm(call: Callable[[], Any], stats: Callable[[], cachedeco.Stats]) -> None:
    """Call until a call is a near hit (the change stream is up and the value installed)."""
    def near_hit() -> bool:
        before = stats().near_hits
        call()
        return stats().near_hits > before

    poll(near_hit, timeout=10.0)


async def awarm(call: Callable[[], Awaitable[Any]], stats: Callable[[], cachedeco.Stats]
                ) -> None:
    """:func:`warm` for an async function, the loop running meanwhile."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while True:
        before = stats().near_hits
        await call()
        if stats().near_hits > before:
            return
        assert loop.time() < end, "the near cache never came up"
        await asyncio.sleep(0.005)


@contextlib.contextmanager
def silenced_stream(reg: Registry) -> Iterator[None]:
    """Within: ``reg``'s change stream applies nothing it receives, so what this process
    serves is what its own changes did to its near cache, not what Redis reported."""
    tracker = reg.slot("default").backend().tracker
    with pytest.MonkeyPatch.context() as quiet:
        quiet.setattr(tracker, "on_frame", lambda frame: None)
        yield


def near_threads(prefix: str) -> int:
    """The change-stream threads of this process for ``prefix``."""
    return sum(t.name == f"cachedeco-near-{prefix}" for t in threading.enumerate())


def tracking_clients(client: redis.Redis) -> list[dict[str, Any]]:
    """The server's connections with tracking on (``CLIENT LIST`` flag ``t``)."""
    return [c for c in client.client_list() if "t" in str(c.get("flags", ""))]


class FirstStep:
    """Awaits ``coro`` and notes whether ``probe()`` grew during its first step, before it
    first suspended: on one loop no other task runs meanwhile, so that growth is this call's
    own however many tasks call at once (a near hit returns without suspending)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], probe: Callable[[], int]) -> None:
        self.coro, self.probe, self.grew = coro, probe, False

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, before = self.coro, self.probe()
        try:
            yielded = coro.send(None)
        except StopIteration as done:
            self.grew = self.probe() > before
            return done.value
        self.grew = self.probe() > before
        while True:  # the rest, as ``yield from`` would
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation, thrown in by the task
                try:
                    yielded = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as done:
                    return done.value
