"""``@write_behind``: the function builds a record; the record becomes the cached entry at
once and is queued, and a worker hands batches of records to ``flush`` later, at least once.

Every argument is checked when the decorator is applied. The pieces: the queue contract and
its Redis and memory homes (:mod:`cachedeco.backends.queues`), the service a call goes
through, which holds the entry until its record is flushed (:mod:`._write_behind_service`),
the I/O-free delivery flow with coalescing, retries and dead letters
(:mod:`._write_behind_flow`), and the thread and task workers that drive it
(:mod:`._write_behind_run`).
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar, cast

from cachedeco._decorators import TagsArg, unwrap_callable
from cachedeco._policy import check_ttl
from cachedeco._registry import Registry
from cachedeco._write import Link
from cachedeco._write_behind_flow import Settings
from cachedeco._write_behind_service import WriteBehind
from cachedeco.backends.queues import DeadLetter
from cachedeco.errors import ConfigurationError

__all__ = [
    "DeadLetter",
    "WriteBehind",
    "adead_letters",
    "areplay_dead_letters",
    "dead_letters",
    "replay_dead_letters",
    "write_behind",
]

F = TypeVar("F", bound=Callable[..., Any])
MAX_BATCH: Final = 10_000
_attached: weakref.WeakKeyDictionary[Registry, set[str]] = weakref.WeakKeyDictionary()


# --- the registry's view (reg.dead_letters() and friends) --------------------------------------


def _services(services: Iterable[Any]) -> list[WriteBehind]:
    """The write-behind services among a registry's services."""
    return [s for s in services if isinstance(s, WriteBehind)]


def dead_letters(services: Iterable[Any], limit: int) -> list[DeadLetter]:
    """Dead letters of every write-behind function, oldest first within each."""
    return [d for s in _services(services) for d in s.dead_letters(limit)]


async def adead_letters(services: Iterable[Any], limit: int) -> list[DeadLetter]:
    """The asyncio form of :func:`dead_letters`."""
    return [d for s in _services(services) for d in await s.adead_letters(limit)]


def replay_dead_letters(services: Iterable[Any]) -> int:
    """Queue every dead letter of every write-behind function again; return how many."""
    return sum(s.replay_dead_letters() for s in _services(services))


async def areplay_dead_letters(services: Iterable[Any]) -> int:
    """The asyncio form of :func:`replay_dead_letters`."""
    return sum([await s.areplay_dead_letters() for s in _services(services)])


# --- the decorator -----------------------------------------------------------------------------


def _count(value: object, what: str, low: int, high: int) -> int:
    """An int in ``[low, high]`` (not a bool), else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{what} must be an int in [{low}, {high}], not {value!r}")
    return value


def write_behind(target: Any = None, *, flush: Callable[[list[Any]], Any],
                 key: str | None = None, ttl: float | None = None, tags: TagsArg = (),
                 batch_size: int = 100, flush_interval: float = 5.0, coalesce: bool = True,
                 max_retries: int = 5, backend: str = "default",
                 registry: Registry | None = None, claim_after: float = 30.0,
                 retry_delay: float = 0.5) -> Callable[[F], F]:
    """Cache a writer's record at once and persist it later through ``flush``; see API.md.

    Beyond API.md: ``claim_after`` is the visibility timeout (seconds a record taken by a
    process that stopped answering waits before another process takes it over) and
    ``retry_delay`` the first backoff of a failing flush (doubled on every retry).
    """
    if not callable(flush) or inspect.isgeneratorfunction(flush):
        raise ConfigurationError(f"flush must be a function taking a list of records, "
                                 f"not {flush!r}")
    if not isinstance(coalesce, bool):
        raise ConfigurationError(f"coalesce must be a bool, not {coalesce!r}")
    if not isinstance(backend, str):
        raise ConfigurationError(f"backend must be a backend name, not {backend!r}")
    if registry is not None and not isinstance(registry, Registry):
        raise ConfigurationError(f"registry must be a Registry, not {registry!r}")
    if registry is not None:
        registry.slot(backend)
    checked = functools.partial(
        Settings, batch_size=_count(batch_size, "batch_size", 1, MAX_BATCH),
        flush_interval=check_ttl(flush_interval, "flush_interval"), coalesce=coalesce,
        max_retries=_count(max_retries, "max_retries", 0, 100),
        claim_after=check_ttl(claim_after, "claim_after"),
        retry_delay=check_ttl(retry_delay, "retry_delay"))

    def decorate(writer: F) -> F:
        func, kind = unwrap_callable(writer, "write_behind")
        link = Link(func, "write_behind", target, key=key, ttl=ttl, tags=tags, invalidate=(),
                    backend=backend, registry=registry)
        owner = link.spec.registry
        if target is not None and (registry not in (None, owner) or backend not in (
                "default", link.spec.options.backend)):
            raise ConfigurationError("@write_behind with a @cached target uses the target's "
                                     "registry and backend; do not pass others")
        name = f"{func.__module__}.{func.__qualname__}"
        named = _attached.setdefault(owner, set())
        if name in named:
            raise ConfigurationError(f"a @write_behind function named {name} is already "
                                     "attached to this registry: they would share one queue")
        named.add(name)
        service = WriteBehind(link, flush, checked(name=name))
        owner.add_service(service)
        wrapper = _wrap(func, service)
        if kind == "staticmethod":
            return cast(F, staticmethod(wrapper))
        if kind == "classmethod":
            return cast(F, classmethod(wrapper))
        return cast(F, wrapper)

    return decorate


def _wrap(func: Callable[..., Any], service: WriteBehind) -> Callable[..., Any]:
    """The decorated function: build the record, store and queue it, return it."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            record = await func(*args, **kwargs)
            await service.apush(args, kwargs, record)
            return record

        wrapper: Callable[..., Any] = awrapper
    else:

        @functools.wraps(func)
        def swrapper(*args: Any, **kwargs: Any) -> Any:
            record = func(*args, **kwargs)
            service.push(args, kwargs, record)
            return record

        wrapper = swrapper
    attrs = {"stats": service.stats, "flush": service.flush, "aflush": service.aflush,
             "write_behind": service}
    for attr, value in attrs.items():
        setattr(wrapper, attr, value)
    return wrapper
