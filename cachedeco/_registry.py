"""The Registry: named backends, settings, and the operations that are not tied to one function.

Decorators bind to their registry lazily, at call time: each bound function remembers the
registry's ``generation`` and binds again after ``configure()``, so configuration may happen
after the decorated modules were imported. Creating a registry opens no connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from cachedeco._codec import make_codec
from cachedeco._connect import BackendSlot, Options
from cachedeco._entry import new_tag_token
from cachedeco._guard import BACKEND_ERRORS, Breaker, Guard
from cachedeco._policy import check_jitter, check_ttl
from cachedeco._stats import Stats
from cachedeco._templates import escape_text
from cachedeco.errors import ConfigurationError

if TYPE_CHECKING:
    from cachedeco._lock import Lock
    from cachedeco.backends.queues import DeadLetter

__all__ = ["Registry", "escape_glob"]

ON_ERROR: Final = ("fallback", "raise")
_OPTION_NAMES: Final = ("socket_timeout", "socket_connect_timeout", "max_connections",
                        "pool_timeout", "maxsize")
_POLICY_NAMES: Final = ("tag_ttl", "breaker_threshold", "breaker_cooldown")


@functools.cache
def _redis_keywords() -> frozenset[str]:
    """The keywords a redis-py client accepts (passwords, TLS options and such)."""
    import inspect

    import redis

    names = set(inspect.signature(redis.Redis.__init__).parameters)
    return frozenset(names - {"self", "host", "port", "db", "connection_pool", "retry"})


def escape_glob(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class Registry:
    """Backends by name plus the settings every decorator bound to this registry uses."""

    def __init__(self, backend: object = "memory://", *,
                 backends: Mapping[str, object] | None = None,
                 prefix: str = "cachedeco", ttl: float = 3600, jitter: float = 0.1,
                 serializer: object = "orjson", secret: str | bytes | None = None,
                 on_error: str = "fallback", lock_timeout: float = 10.0,
                 **backend_options: Any) -> None:
        self.generation = 0
        self._stats = Stats()
        self._functions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._services: list[Any] = []  # write-behind queues and such: flushed and closed with us
        self._slots: dict[str, BackendSlot] = {}
        self.configure(backend, backends=backends, prefix=prefix, ttl=ttl, jitter=jitter,
                       serializer=serializer, secret=secret, on_error=on_error,
                       lock_timeout=lock_timeout, **backend_options)

    # -- settings ---------------------------------------------------------------------------

    def configure(self, backend: object = "memory://", *,
                  backends: Mapping[str, object] | None = None, prefix: str = "cachedeco",
                  ttl: float = 3600, jitter: float = 0.1, serializer: object = "orjson",
                  secret: str | bytes | None = None, on_error: str = "fallback",
                  lock_timeout: float = 10.0, **backend_options: Any) -> Registry:
        """Replace every setting (unnamed ones take their defaults); functions rebind lazily."""
        if not isinstance(prefix, str) or not prefix or any(
                c.isspace() or c in "{}" for c in prefix):
            raise ConfigurationError(
                f"prefix must be a non-empty string without spaces or braces, not {prefix!r}")
        if on_error not in ON_ERROR:
            raise ConfigurationError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        if serializer == "pickle" and not secret:
            raise ConfigurationError('serializer="pickle" requires secret= (payloads are signed)')
        make_codec(serializer, name="registry", secret=secret)  # checks the serializer now
        waiting = [s for s in self._services if s.left_in_memory()]
        if waiting:
            raise ConfigurationError(
                f"{len(waiting)} write-behind queue(s) still hold records in memory, which "
                "the new backends would never deliver: call flush() (or aflush()) first")
        options = self._options(backend_options)
        ttl, jitter = check_ttl(ttl), check_jitter(jitter)
        lock_timeout = check_ttl(lock_timeout, "lock_timeout")
        tag_ttl = check_ttl(backend_options.get("tag_ttl", 3600.0), "tag_ttl")
        specs: dict[str, object] = {"default": backend, **(backends or {})}
        slots = {name: BackendSlot(name, spec, options) for name, spec in specs.items()}
        # Everything is valid: only now does the registry change.
        self.prefix, self.ttl, self.jitter = prefix, ttl, jitter
        self.serializer, self.secret, self.on_error = serializer, secret, on_error
        self.lock_timeout, self.tag_ttl = lock_timeout, tag_ttl
        self.breaker_threshold = int(backend_options.get("breaker_threshold", 5))
        self.breaker_cooldown = float(backend_options.get("breaker_cooldown", 5.0))
        old, self._slots = self._slots, slots
        self._breakers = {name: Breaker(self.breaker_threshold, self.breaker_cooldown)
                          for name in slots}
        self._guards = {name: Guard(name, self._stats, raise_errors=on_error == "raise",
                                    breaker=self._breakers[name]) for name in slots}
        self.generation += 1
        for slot in old.values():
            _close_quietly(slot)
        return self

    @staticmethod
    def _options(given: Mapping[str, Any]) -> Options:
        """Connection options: ours, checked, plus redis-py connection keywords passed on."""
        known = {k: v for k, v in given.items() if k in _OPTION_NAMES}
        extra = {k: v for k, v in given.items()
                 if k not in _OPTION_NAMES and k not in _POLICY_NAMES}
        unknown = sorted(set(extra) - _redis_keywords())
        if unknown:
            raise ConfigurationError(
                f"unknown registry option(s) {unknown}: expected one of "
                f"{sorted(_OPTION_NAMES + _POLICY_NAMES)} or a redis-py connection keyword")
        for name in ("socket_timeout", "socket_connect_timeout", "pool_timeout"):
            if name in known:
                known[name] = check_ttl(known[name], name)
        return Options(**known, extra=extra)

    def slot(self, name: str) -> BackendSlot:
        """The backend slot called ``name``, or ConfigurationError."""
        try:
            return self._slots[name]
        except KeyError:
            raise ConfigurationError(
                f"no backend named {name!r}; this registry has {sorted(self._slots)}") from None

    def guard(self, name: str, stats: Stats) -> Guard:
        """A failure policy over backend ``name``'s breaker that counts into ``stats``."""
        self.slot(name)
        return Guard(name, stats, raise_errors=self.on_error == "raise",
                     breaker=self._breakers[name])

    def internal_key(self, family: str, rest: str) -> str:
        """A key of cachedeco's own (``prefix:~family:rest``): no entry key starts with "~"."""
        return f"{self.prefix}:~{family}:{rest}"

    def _internal(self) -> str:
        """What every key of cachedeco's own starts with."""
        return f"{self.prefix}:~"

    def tag_key(self, tag: str) -> str:
        """The key holding a tag's current token."""
        return f"{self.prefix}:~tag:{tag}"

    def fn_tag_key(self, namespace: str) -> str:
        """The key of a function's implicit tag (``f.invalidate_all()``)."""
        return f"{self.prefix}:~fn:{namespace}"

    def track(self, function: Any) -> None:
        """Remember a function bound to this registry, for ``stats()``."""
        self._functions.add(function)

    # -- operations -------------------------------------------------------------------------

    def stats(self) -> Stats:
        """The registry's counters plus those of every function bound to it."""
        total = self._stats.snapshot()
        for function in list(self._functions):
            total = total + function.stats()
        for service in self._services:
            total = total + service.stats()
        return total

    def invalidate_tags(self, *tags: str, backend: str = "default") -> None:
        """Make every entry stored with any of ``tags`` a miss, everywhere, in one round trip."""
        keys = self._tag_keys(tags)
        if not keys:
            return
        self._stats.invalidations += 1
        try:
            self.slot(backend).backend().invalidate_tags(keys, new_tag_token(True),
                                                         self._tag_px())
        except BACKEND_ERRORS as exc:
            self._guards[backend].fail(exc, action="invalidate tags")

    async def ainvalidate_tags(self, *tags: str, backend: str = "default") -> None:
        """The asyncio form of :meth:`invalidate_tags`."""
        keys = self._tag_keys(tags)
        if not keys:
            return
        self._stats.invalidations += 1
        try:
            await self.slot(backend).abackend().invalidate_tags(keys, new_tag_token(True),
                                                                self._tag_px())
        except BACKEND_ERRORS as exc:
            self._guards[backend].fail(exc, action="invalidate tags")

    def _tag_keys(self, tags: tuple[str, ...]) -> list[str]:
        for tag in tags:
            if not isinstance(tag, str) or not tag:
                raise ConfigurationError(f"a tag must be a non-empty string, not {tag!r}")
        # The same escaping as a rendered tag template, so "item:50%" names f("50%")'s tag.
        return [self.tag_key(escape_text(tag)) for tag in dict.fromkeys(tags)]

    def _tag_px(self) -> int:
        return int(self.tag_ttl * 1000)

    def _pattern(self, glob: str) -> str:
        if not isinstance(glob, str) or not glob:
            raise ConfigurationError(f"a pattern must be a non-empty string, not {glob!r}")
        return f"{escape_glob(self.prefix)}:{glob}"

    def invalidate_pattern(self, glob: str, *, backend: str = "default") -> int:
        """Drop the entries whose key after the prefix matches ``glob``; SCAN, never KEYS.

        cachedeco's own keys (``prefix:~…``: tags, leases, write-behind queues) are spared.
        """
        pattern = self._pattern(glob)
        self._stats.invalidations += 1
        try:
            return self.slot(backend).backend().delete_matching(pattern, self._internal())
        except BACKEND_ERRORS as exc:
            self._guards[backend].fail(exc, action="invalidate a pattern")

    async def ainvalidate_pattern(self, glob: str, *, backend: str = "default") -> int:
        """The asyncio form of :meth:`invalidate_pattern`."""
        pattern = self._pattern(glob)
        self._stats.invalidations += 1
        try:
            return await self.slot(backend).abackend().delete_matching(pattern,
                                                                       self._internal())
        except BACKEND_ERRORS as exc:
            self._guards[backend].fail(exc, action="invalidate a pattern")

    def clear(self, *, backend: str = "default") -> int:
        """Drop every key under the prefix (SCAN + UNLINK; never KEYS or FLUSHDB)."""
        return self.invalidate_pattern("*", backend=backend)

    async def aclear(self, *, backend: str = "default") -> int:
        """The asyncio form of :meth:`clear`."""
        return await self.ainvalidate_pattern("*", backend=backend)

    def cached(self, *args: Any, **kwargs: Any) -> Any:
        """``@cachedeco.cached`` bound to this registry."""
        from cachedeco._decorators import cached

        return cached(*args, registry=self, **kwargs)

    def write_through(self, *args: Any, **kwargs: Any) -> Any:
        """``@cachedeco.write_through`` bound to this registry."""
        from cachedeco._decorators import write_through

        return write_through(*args, registry=self, **kwargs)

    def write_behind(self, *args: Any, **kwargs: Any) -> Any:
        """``@cachedeco.write_behind`` bound to this registry."""
        from cachedeco._write_behind import write_behind

        return write_behind(*args, registry=self, **kwargs)

    def lock(self, name: str, *, ttl: float = 10.0, timeout: float | None = None,
             backend: str = "default") -> Lock:
        """A distributed mutex for ``with`` and ``async with``; see :class:`cachedeco.lock`."""
        from cachedeco._lock import Lock

        return Lock(self, name, ttl=ttl, timeout=timeout, backend=backend)

    # -- background work --------------------------------------------------------------------

    def spawn_async(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run a coroutine in the background on the running loop, keeping a reference."""
        task = asyncio.get_running_loop().create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def spawn_sync(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a function in the background on the registry's small thread pool."""
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        4, thread_name_prefix="cachedeco")
        self._pool.submit(fn, *args)

    def add_service(self, service: Any) -> None:
        """Attach a service (a write-behind queue) flushed and closed with the registry."""
        self._services.append(service)

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self) -> None:
        """Flush every write-behind queue now."""
        for service in list(self._services):
            service.flush()

    async def aflush(self) -> None:
        """The asyncio form of :meth:`flush`."""
        for service in list(self._services):
            await service.aflush()

    def close(self) -> None:
        """Flush and stop background work, then close the backends' connections."""
        for service in list(self._services):
            service.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for slot in self._slots.values():
            _close_quietly(slot)

    async def aclose(self) -> None:
        """The asyncio form of :meth:`close`."""
        for service in list(self._services):
            await service.aclose()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot in self._slots.values():
            for backend in slot.made_here():  # another loop's clients close with that loop
                with contextlib.suppress(*BACKEND_ERRORS):
                    await backend.close()
        self.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Registry:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Registry prefix={self.prefix!r} backends={sorted(self._slots)}>"

    # -- write-behind dead letters (cachedeco._write_behind) ----------------------------------

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Write-behind records that used up their retries (up to ``limit`` per function)."""
        from cachedeco import _write_behind

        return _write_behind.dead_letters(self._services, limit)

    async def adead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The asyncio form of :meth:`dead_letters`."""
        from cachedeco import _write_behind

        return await _write_behind.adead_letters(self._services, limit)

    def replay_dead_letters(self) -> int:
        """Queue every write-behind dead letter again; return how many."""
        from cachedeco import _write_behind

        return _write_behind.replay_dead_letters(self._services)

    async def areplay_dead_letters(self) -> int:
        """The asyncio form of :meth:`replay_dead_letters`."""
        from cachedeco import _write_behind

        return await _write_behind.areplay_dead_letters(self._services)


def _close_quietly(slot: BackendSlot) -> None:
    """Close the sync clients a slot made (async ones close with their loop)."""
    for backend in slot.made():
        if not asyncio.iscoroutinefunction(backend.close):
            with contextlib.suppress(*BACKEND_ERRORS):
                backend.close()


registry: Final = Registry()

