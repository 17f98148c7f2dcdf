"""The registry core: named backends, settings, failure guards, background work and services,
and the operations that are not tied to one function.

Decorated functions bind to a registry lazily, at call time: each remembers the registry's
``revision`` and binds again after ``configure()``, so configuration may happen after the
decorated modules were imported; a hit compiled at binding is dropped when the revision
moves (:meth:`Registry.advance`), so the hit itself checks nothing. Creating a registry opens
no connection. This layer never names a decorator: the public :class:`cachedeco.Registry`
adds those conveniences.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any, Protocol, Self

from cachedeco.backends.contracts.queues import DeadLetter
from cachedeco.backends.open import BackendSlot
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.keyring import Keyring
from cachedeco.core.keyspace import KeySpace
from cachedeco.core.stats import Stats
from cachedeco.errors import ConfigurationError
from cachedeco.runtime.guard import CLUSTER_GRACE, Breaker, Guard
from cachedeco.runtime.invalidation import Invalidation
from cachedeco.runtime.ledger import Ledger, enrol
from cachedeco.runtime.lineage import Lineage
from cachedeco.runtime.primitives import Background
from cachedeco.runtime.recovery import Recovery
from cachedeco.runtime.report import Reporter, Target
from cachedeco.runtime.settings import EncryptionKey, check_settings
from cachedeco.runtime.spool import open_spool
from cachedeco.runtime.watch import Watchers

__all__ = ["EncryptionKey", "Registry", "Service", "default_registry", "set_default_registry"]



class Compiled(Protocol):
    """What holds a hit compiled for one revision of a registry (a cached function)."""

    def drop_hit(self) -> None:
        """Stop using the compiled hit: the next call binds again."""


class Service(Protocol):
    """Background work attached to a registry (a write-behind queue): flushed, closed and
    counted with it."""

    def flush(self) -> None: ...
    async def aflush(self) -> None: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...
    def stats(self) -> Stats: ...
    def left_in_memory(self) -> bool: ...
    def dead_letters(self, limit: int) -> list[DeadLetter]: ...
    async def adead_letters(self, limit: int) -> list[DeadLetter]: ...
    def replay_dead_letters(self) -> int: ...
    async def areplay_dead_letters(self) -> int: ...
    def wake(self) -> None: ...
    def start(self) -> None: ...


class Registry(Invalidation):
    """Backends by name plus the settings every decorator bound to this registry uses."""

    def __init__(self, backend: object = "memory://", *,
                 backends: Mapping[str, object] | None = None,
                 prefix: str = "cachedeco", ttl: float | timedelta = 3600, jitter: float = 0.1,
                 serializer: object = "orjson", secret: str | bytes | None = None,
                 on_error: str = "fallback", lock_timeout: float = 10.0, near_cache: int = 0,
                 encryption_key: EncryptionKey = None, spool: object = None,
                 **backend_options: Any) -> None:
        self.revision = 0
        self._in_use = -1  # the revision its services were last started at
        self._closing = 0  # close() calls under way: the bindings they make start nothing
        self._compiled: weakref.WeakSet[Compiled] = weakref.WeakSet()
        self._compiled_lock = threading.Lock()
        self.enabled = True  # False between disable() and enable(): nothing reads or writes
        self._stats = Stats()
        self.ledger = Ledger(self._stats, prefix)  # every counter, kept while the process lives
        self.watchers = Watchers(self)  # what exporters watch of each load
        self.reporter = Reporter(self.ledger, weakref.WeakMethod(self._report_target))
        self.background = Background()
        self.recovery = Recovery(self._stats, weakref.ref(self))  # changes kept in an outage
        self.lineage = Lineage(self.recovery, weakref.ref(self))  # data gone back in time
        self._services: dict[str, Service] = {}
        self._slots: dict[str, BackendSlot] = {}
        self.configure(backend, backends=backends, prefix=prefix, ttl=ttl, jitter=jitter,
                       serializer=serializer, secret=secret, on_error=on_error,
                       lock_timeout=lock_timeout, near_cache=near_cache,
                       encryption_key=encryption_key, spool=spool, **backend_options)
        enrol(self, self.ledger)
        redo_after_fork(self)

    def after_fork(self) -> None:
        """In a child: its first binding there starts the services (its parent's started
        them for the parent only: the child has none of its threads, nor a close() one of
        them had under way), and every function binds again at its first call there, so a
        child that only calls functions its parent bound (a pre-fork server's worker that
        only reads) starts them too: write-behind records others left get delivered."""
        self._in_use, self._closing = -1, 0
        self.advance()

    # -- settings ---------------------------------------------------------------------------

    def configure(self, backend: object = "memory://", *,
                  backends: Mapping[str, object] | None = None, prefix: str = "cachedeco",
                  ttl: float | timedelta = 3600, jitter: float = 0.1, serializer: object = "orjson",
                  secret: str | bytes | None = None, on_error: str = "fallback",
                  lock_timeout: float = 10.0, near_cache: int = 0,
                  encryption_key: EncryptionKey = None, spool: object = None,
                  **backend_options: Any) -> Self:
        """Replace every setting; the ones not given take their defaults.

        Takes exactly the arguments of [`Registry`][cachedeco.Registry], documented there;
        nothing changes if one is bad. Decorated functions rebind at their next call.

        Raises:
            ConfigurationError: A bad setting, or a `memory://` write-behind queue that still
                holds records (`flush()` first: the new backends would never deliver them).
        """
        waiting = [s for s in self._services.values() if s.left_in_memory()]
        if waiting:
            raise ConfigurationError(
                f"{len(waiting)} write-behind queue(s) still hold records in memory, which "
                "the new backends would never deliver: call flush() (or aflush()) first")
        checked = check_settings(
            prefix=prefix, ttl=ttl, jitter=jitter, serializer=serializer, secret=secret,
            on_error=on_error, lock_timeout=lock_timeout, near_cache=near_cache,
            encryption_key=encryption_key, backend_options=backend_options)
        if backends and "default" in backends and backend != "memory://" and (
                backends["default"] != backend):
            raise ConfigurationError(
                "the default backend is given twice, as backend= and as backends['default']: "
                "give it once")
        specs: dict[str, object] = {"default": backend, **(backends or {})}
        spooled = None if spool is None else open_spool(spool)
        slots = {name: BackendSlot(name, spec, checked.options, prefix)
                 for name, spec in specs.items()}
        # Everything is valid: only now does the registry change.
        self.settings = checked
        self.prefix, self.keyspace = prefix, KeySpace(prefix)
        self.ttl, self.jitter = checked.ttl, checked.jitter
        self.serializer, self.secret, self.on_error = serializer, secret, on_error
        self.keyring: Keyring | None = checked.keyring
        self.lock_timeout, self.tag_ttl = checked.lock_timeout, checked.tag_ttl
        self.ledger.rename(prefix)
        self.reporter.interval = checked.stats_interval
        replaced, self.recovery.spool = self.recovery.spool, spooled
        if replaced is not None:  # reopened if a change kept there lands (then closed again)
            replaced.close()
        for name, slot in slots.items():  # (no reference to the registry: see _switched)
            slot.on_move(functools.partial(self.lineage.moving, name))
            slot.on_switch(functools.partial(_switched, self.recovery, self.lineage, name))
        old, self._slots = self._slots, slots
        self.lineage.forget()  # beats keyed by slot: none of the old ones is compared again
        self._breakers = {name: Breaker(checked.breaker_threshold, checked.breaker_cooldown,
                                        explain=slot.server_problem,
                                        grace=CLUSTER_GRACE if slot.kind == "cluster" else 0.0)
                          for name, slot in slots.items()}
        for name, breaker in self._breakers.items():  # back after failures: recovery hurries
            breaker.on_back = functools.partial(self.recovery.hurry, name)
        self._guards = {name: self.guard(name, self._stats) for name in slots}
        self.advance()
        for slot in old.values():
            slot.close(final=True)  # replaced: its threads stay stopped
        return self

    def advance(self) -> None:
        """Move to a new revision: every function binds again at its next call, and the hits
        compiled for the old one are dropped now (a compiled hit checks nothing itself)."""
        with self._compiled_lock:
            self.revision += 1
            holders = list(self._compiled)
        for holder in holders:
            holder.drop_hit()

    def compiled(self, holder: Compiled, revision: int) -> bool:
        """Note that ``holder`` uses a hit compiled at ``revision``, to drop it at the next
        :meth:`advance`; False when the registry has moved on already (drop it now)."""
        with self._compiled_lock:
            self._compiled.add(holder)
            return self.revision == revision

    def slot(self, name: str) -> BackendSlot:
        """The backend slot called ``name``, or ConfigurationError."""
        try:
            return self._slots[name]
        except KeyError:
            raise ConfigurationError(
                f"no backend named {name!r}; this registry has {sorted(self._slots)}") from None

    def breaker(self, name: str) -> Breaker:
        """Backend ``name``'s circuit breaker (shared by every guard over it)."""
        return self._breakers[name]

    def backend_names(self) -> list[str]:
        """The names of this registry's backends."""
        return list(self._slots)

    def wake(self, function: str) -> None:
        """Records of ``function`` were queued again: have its worker deliver them."""
        service = self._services.get(function)
        if service is not None:
            service.wake()

    def guard(self, name: str, stats: Stats) -> Guard:
        """A failure policy over backend ``name``'s breaker that counts into ``stats``."""
        self.slot(name)
        return Guard(name, stats, raise_errors=self.on_error == "raise",
                     breaker=self._breakers[name], prefix=self.prefix)

    def track(self, function: object, name: str, stats: Stats) -> None:
        """Count a function bound to this registry (``stats`` under ``name``, also once it is
        gone) and report its counts with the service's."""
        self.ledger.track(function, name, stats)
        if self._closing:  # close() looking at what a queue holds: not a use of the registry
            return
        self.reporter.ensure()
        self.recovery.ensure()
        self.lineage.ensure()
        if self._in_use != self.revision:  # the first binding since close() or configure()
            self._in_use = self.revision
            for service in list(self._services.values()):
                service.start()

    @property
    def lineage_key(self) -> str:
        """The counter the lineage beats on (:mod:`cachedeco.runtime.lineage`)."""
        return self.keyspace.lineage

    def _report_target(self) -> Target | None:
        """Where this process's counts go for the whole service: the first Redis backend."""
        for slot in self._slots.values():
            if not slot.stores_objects:
                return slot, self.keyspace.stats
        return None

    def attach(self, name: str, service: Service) -> None:
        """Attach a service (a write-behind queue), flushed and closed with the registry;
        ConfigurationError when one of that name is attached already."""
        if name in self._services:
            raise ConfigurationError(f"a @write_behind function named {name} is already "
                                     "attached to this registry: they would share one queue")
        self._services[name] = service
        self.ledger.attach(name, service.stats)

    # -- switching caching off ---------------------------------------------------------------

    def disable(self) -> None:
        """Switch caching off: every function bound to this registry runs its function and
        neither reads nor writes the cache (a write-behind record goes to ``flush`` at once);
        invalidations do nothing. For test suites and incident response."""
        self._switch(False)

    def enable(self) -> None:
        """Switch caching back on (what was cached before is served again if still live)."""
        self._switch(True)

    @contextlib.contextmanager
    def disabled(self) -> Iterator[Self]:
        """`with reg.disabled():` caching is off inside the block, as it was after it."""
        was = self.enabled
        self._switch(False)
        try:
            yield self
        finally:
            self._switch(was)

    def _switch(self, on: bool) -> None:
        """Functions see the switch through their binding: one check per call."""
        if self.enabled != on:
            self.enabled = on
            self.advance()

    # -- operations -------------------------------------------------------------------------

    def stats(self) -> Stats:
        """The registry's counters plus those of every function bound to it (those
        garbage-collected since included: counters never go down)."""
        return self.ledger.total()

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self) -> None:
        """Deliver what waits for a backend that was down, then flush every write-behind
        queue now."""
        self.recovery.deliver()
        for service in list(self._services.values()):
            service.flush()

    async def aflush(self) -> None:
        """The asyncio form of [`flush`][cachedeco.Registry.flush]."""
        await self.recovery.adeliver()
        for service in list(self._services.values()):
            await service.aflush()

    def close(self) -> None:
        """Flush and stop background work, then close the backends' connections (on
        Redis, a write-behind flush that keeps failing is retried for 5 s, then its batch
        is left queued). Used again, the registry reconnects and starts its background work
        again."""
        self._closing += 1
        try:
            for service in list(self._services.values()):
                service.close()
            self.recovery.close()
            self.reporter.stop()
            self.lineage.stop()
            self.background.close()
            for slot in self._slots.values():
                slot.close()
        finally:
            self._closing -= 1
        # Functions bind again at their next call, which starts the reporter, the beats and
        # the spool's worker again (binding is where a function says the registry is in use).
        self.advance()

    async def aclose(self) -> None:
        """The asyncio form of [`close`][cachedeco.Registry.close]."""
        self._closing += 1
        try:
            for service in list(self._services.values()):
                await service.aclose()
            await self.reporter.astop()
            await self.lineage.astop()
            await self.background.aclose()
            await self.aclose_clients_here()  # then close(): other loops' clients, on theirs
            self.close()
        finally:
            self._closing -= 1

    async def aclose_clients_here(self) -> None:
        """Close the asyncio clients the backends made for the running loop: before a loop
        that used this registry ends (``aclose()`` does it for the caller's loop; the
        write-behind workers for the loops they run on)."""
        for slot in self._slots.values():
            await slot.aclose_here()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Registry prefix={self.prefix!r} backends={sorted(self._slots)}>"


_default: list[Registry] = []


def _switched(recovery: Recovery, lineage: Lineage, name: str) -> None:
    """Backend ``name``'s primary moved: the changes of the last moments again, and a beat at
    once (the new primary may hold much older data). A function of the two, not a method of
    the registry: the primary's watch holds it, and a registry dropped without ``close()``
    must still be collected (its watch ends then)."""
    recovery.replay(name)
    lineage.kick()


def set_default_registry(registry: Registry) -> None:
    """Name the registry that decorators without ``registry=`` use (done once, on import).

    The registry it replaces moves to a new revision, so what was bound to it while it was the
    default (a function's compiled hit) binds again, to the new default, at its next call."""
    for replaced in _default:
        replaced.advance()
    _default[:] = [registry]


def default_registry() -> Registry:
    """The registry of decorators without ``registry=``: ``cachedeco.registry``."""
    return _default[0]
