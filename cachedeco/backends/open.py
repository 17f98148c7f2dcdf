"""Backend specs turned into backends, lazily and once: a URL or a ready client.

A URL is checked when the registry is built (an unknown scheme or a malformed URL is a
ConfigurationError then, never a silent fallback); the clients are made on first use. From a
URL both flavours are made: the sync client once, the async client once per event loop (an
asyncio connection belongs to the loop that opened it), closed as that loop shuts down. A
ready client gives one flavour only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any

import redis.exceptions

from cachedeco.backends.base import BACKEND_ERRORS, AsyncBackend, Backend, ConnectionOptions
from cachedeco.backends.loop_guard import on_shutdown
from cachedeco.backends.memory.faces import AsyncMemoryBackend
from cachedeco.backends.memory.store import MemoryBackend
from cachedeco.backends.near._async.backend import AsyncNearBackend
from cachedeco.backends.near._sync.backend import NearBackend
from cachedeco.backends.near.sources import no_source, source_for
from cachedeco.backends.near.store import NearStore
from cachedeco.backends.near.tracker import Tracker
from cachedeco.backends.redis._async.cluster import AsyncClusterBackend
from cachedeco.backends.redis._sync.cluster import ClusterBackend
from cachedeco.backends.redis.connect import (
    client_flavour,
    make_async,
    make_sync,
    wrap_async,
    wrap_sync,
)
from cachedeco.backends.redis.primary_watch import PrimaryWatch
from cachedeco.backends.redis.ready import slow_failures
from cachedeco.backends.redis.urls import kind_of_url, memory_size, refused_options
from cachedeco.backends.redis.versions import aask, ask
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.logs import say
from cachedeco.errors import ConfigurationError

__all__ = ["ASK_AGAIN", "BackendSlot"]


#: Seconds before a server that did not answer the version question is asked again.
ASK_AGAIN = 10.0


class BackendSlot:
    """One named backend: its spec, and the sync and async backends made from it on demand."""

    def __init__(self, name: str, spec: object, options: ConnectionOptions,
                 prefix: str = "cachedeco") -> None:
        self.name = name
        self.prefix = prefix  # the registry's, for log lines
        self.spec = spec
        self.options = options
        self._lock = threading.Lock()
        self._sync: Backend | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncBackend] = (
            weakref.WeakKeyDictionary())
        #: Each loop's guard: it closes that loop's backend as the loop shuts down.
        self._guards: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]] = weakref.WeakKeyDictionary()
        self._ready_async: AsyncBackend | None = None
        #: What the server said of its version at the first refused command ("": fine), and
        #: when a question went unanswered (asked again only ASK_AGAIN seconds later).
        self._verdict: str | None = None
        self._unanswered = -ASK_AGAIN
        if isinstance(spec, str):
            self.kind = kind_of_url(name, spec)
            self.flavours: tuple[str, ...] = ("sync", "async")
            refused = refused_options(self.kind, spec, options.extra) if (
                self.kind != "memory") else ""
            if refused:
                raise ConfigurationError(f"backend {name!r}: {refused}")
        else:
            flavour = client_flavour(spec)
            self.kind = "cluster" if "Cluster" in type(spec).__name__ else "redis"
            self.flavours = (flavour,)
            if slow := slow_failures(spec):  # it works, but a down Redis costs more than said
                say(prefix, logging.WARNING, "backend %r: %s", name, slow)
        #: The near cache in front of this backend (None: none, always on memory://).
        self.near: NearStore | None = None
        self._tracker: Tracker | None = None
        #: A Sentinel URL's watch on its primary (None elsewhere): see ``on_switch``.
        self.watch = (PrimaryWatch(spec, options, prefix)
                      if self.kind == "sentinel" and isinstance(spec, str) else None)
        if self.kind == "memory":
            memory = MemoryBackend(memory_size(str(spec), options.maxsize))
            self._sync, self._ready_async = memory, AsyncMemoryBackend(memory)
        elif options.near_cache:
            source = source_for(self.kind, spec, options, self.watch)
            if source is not None:
                self.near = NearStore(options.near_cache)
                self._tracker = Tracker(self.near, source, prefix, name)
            else:  # it works without, but the caller asked for it: say why not
                say(prefix, logging.WARNING, "backend %r has no near cache: %s", name,
                    no_source(spec))
        if self._tracker is not None or self.watch is not None:  # dropped without close()
            weakref.finalize(self, _abandon, self._tracker, self.watch).atexit = False
        redo_after_fork(self)  # new locks in a forked child, its backends' and store's too

    def on_switch(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (in another thread) when the sentinels name another primary: the
        changes that reached the old one lately may be lost."""
        if self.watch is not None:
            self.watch.listen(listener)

    def on_move(self, listener: Callable[[int], None]) -> None:
        """Call ``listener`` with the watch's new epoch when the sentinels name another
        primary, before any connection follows it (the new one may hold older data)."""
        if self.watch is not None:
            self.watch.before_move(listener)

    @property
    def moves(self) -> int:
        """How many times the sentinels named another primary since the watch began (0 for
        every other backend): a change sent while it moved may have reached the old one."""
        return 0 if self.watch is None else self.watch.epoch

    @property
    def stores_objects(self) -> bool:
        """Whether values are kept as objects (memory) rather than encoded payloads."""
        return self.kind == "memory"

    def backend(self) -> Backend:
        """The synchronous backend, made on first use."""
        if self._sync is not None:
            return self._sync
        if "sync" not in self.flavours:
            raise ConfigurationError(
                f"backend {self.name!r} was given an asyncio client only: a sync function "
                "cannot use it; give a URL or a redis.Redis client too")
        with self._lock:
            if self._sync is None:
                self._sync = self._make_sync()
            return self._sync

    def abackend(self) -> AsyncBackend:
        """The asyncio backend for the running event loop, made on first use."""
        if self._ready_async is not None:
            return self._ready_async
        if "async" not in self.flavours:
            raise ConfigurationError(
                f"backend {self.name!r} was given a sync client only: an async function "
                "cannot use it; give a URL or a redis.asyncio.Redis client too")
        if not isinstance(self.spec, str):
            with self._lock:
                if self._ready_async is None:
                    self._ready_async = self._make_async()
                return self._ready_async
        loop = asyncio.get_running_loop()
        backend = self._async.get(loop)
        if backend is None:
            backend = self._adopt(loop)
        return backend

    def server_problem(self, exc: BaseException) -> str | None:
        """Why the server refused a command, when the reason is its age: the first refusal
        asks its version (on the sync client, once; see
        :mod:`~cachedeco.backends.redis.versions`), later ones reuse the answer. Given an
        asyncio client only, the question goes in a task: the refusals after its answer say
        what it found."""
        if not isinstance(exc, redis.exceptions.ResponseError) or self.kind == "memory":
            return None
        if self._verdict is None:
            if time.monotonic() - self._unanswered < ASK_AGAIN:
                return None  # a node down (a cluster's refusals then): not on every call
            if "sync" not in self.flavours:  # an asyncio client only: asked in a task
                self._unanswered = time.monotonic()  # (meanwhile, and if it gets no answer)
                with contextlib.suppress(RuntimeError):  # no running loop: next time
                    _asking.add(task := asyncio.get_running_loop().create_task(self._aask()))
                    task.add_done_callback(_asking.discard)
                return None
            try:
                found = ask(_client(self.backend()))
            except BACKEND_ERRORS:
                self._unanswered = time.monotonic()
                return None
            self._verdict = found or ""
        return self._verdict or None

    async def _aask(self) -> None:
        """:meth:`server_problem`'s question on the asyncio client; the answer is kept for
        the next refusal."""
        with contextlib.suppress(*BACKEND_ERRORS):
            self._verdict = await aask(_client(self.abackend())) or ""

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> AsyncBackend:
        """A new backend for ``loop``, closed as the loop shuts down (``asyncio.run()`` and
        the like: see :mod:`cachedeco.backends.loop_guard`). A loop closed without that leaves
        its backend here: such loops' backends are dropped now, for the collector. (Under
        the lock: loops in other threads adopt and let go at the same time.)"""
        async def forget_and_close() -> None:
            with self._lock:
                if self._async.get(loop) is backend:
                    self._let_go(loop)
            await _close_quietly(backend)

        with self._lock:
            self._let_go(*[known for known in self._async if known.is_closed()])
            backend = self._async[loop] = self._make_async()
            self._guards[loop] = on_shutdown(forget_and_close)
        return backend

    def _let_go(self, *loops: asyncio.AbstractEventLoop) -> None:
        for loop in loops:
            self._async.pop(loop, None)
            self._guards.pop(loop, None)

    def _make_sync(self) -> Backend:
        if not isinstance(self.spec, str):
            made = wrap_sync(self.spec)
        else:
            made = make_sync(self.kind, self.spec, self.options, self.watch)
            if self.watch is not None:
                self.watch.start()
        if self.near is None or self._tracker is None:
            return made
        if isinstance(made, ClusterBackend):  # tells the stream of reads it cannot vouch for
            made.coverage = self._tracker
        return NearBackend(made, self.near, self._tracker)

    def _make_async(self) -> AsyncBackend:
        if not isinstance(self.spec, str):
            made = wrap_async(self.spec)
        else:
            made = make_async(self.kind, self.spec, self.options, self.watch)
            if self.watch is not None:
                self.watch.start()
        if self.near is None or self._tracker is None:
            return made
        if isinstance(made, AsyncClusterBackend):
            made.coverage = self._tracker
        return AsyncNearBackend(made, self.near, self._tracker)

    async def aclose_here(self) -> None:
        """Close the asyncio backends usable on the running loop, before that loop ends (an
        asyncio connection cannot be closed once its loop is closed). The one made for this
        loop from a URL is forgotten too: a later call on this loop makes a new one."""
        guard = self._guards.get(asyncio.get_running_loop())
        if guard is not None:
            await guard.aclose()  # forgets and closes this loop's backend
        if self._ready_async is not None:
            await _close_quietly(self._ready_async)

    def close(self, *, final: bool = False) -> None:
        """Close the sync backend, and the asyncio ones made from a URL on their loops: the
        running loop's in a task (``aclose_here()`` closes them at once), those of loops
        running in other threads there, waiting for them (a loop that ended without
        ``aclose_here()`` or a shutdown that closes its async generators took its clients'
        sockets with it). The slot can be used again afterwards (clients reconnect, the near
        cache's and the Sentinel watch's threads start again) unless ``final``."""
        if self._tracker is not None:
            self._tracker.close(final=final)
        if self.watch is not None:
            self.watch.close(final=final)
        if self._sync is not None:
            with contextlib.suppress(*BACKEND_ERRORS):
                self._sync.close()
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        with self._lock:
            guards = list(self._guards.items())
        for loop, guard in guards:
            if loop is here:
                _closing.add(task := loop.create_task(_end(guard)))
                task.add_done_callback(_closing.discard)
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(_end(guard), loop)
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    done.result(self.options.socket_connect_timeout + 1.0)
            elif loop.is_closed():
                with self._lock:
                    self._let_go(loop)


#: Closes under way in tasks of the running loop (referenced until they end), and version
#: questions (:meth:`BackendSlot.server_problem`).
_closing: set[asyncio.Task[None]] = set()
_asking: set[asyncio.Task[None]] = set()


def _abandon(tracker: Tracker | None, watch: PrimaryWatch | None) -> None:
    """A slot was collected without being closed: its threads end on their own (they hold
    no reference to it)."""
    if tracker is not None:
        tracker.abandon()
    if watch is not None:
        watch.abandon()


def _client(backend: Any) -> Any:
    """The redis-py client under a Redis backend (a near cache's: the one it wraps)."""
    return getattr(backend, "inner", backend).client


async def _end(guard: AsyncGenerator[None, None]) -> None:
    await guard.aclose()  # a coroutine, for create_task and run_coroutine_threadsafe


async def _close_quietly(backend: AsyncBackend) -> None:
    with contextlib.suppress(*BACKEND_ERRORS):
        await backend.close()
