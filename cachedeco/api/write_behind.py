"""``@write_behind``: the function builds a record; the record becomes the cached entry at
once and is queued, and a worker hands batches of records to ``flush`` later, at least once.

Every argument is checked when the decorator is applied. The pieces: the queue contract and
its Redis and memory homes (``backend.queue()``), the service a call goes through
(:mod:`cachedeco.flows.write_behind`), and the I/O-free delivery flow with coalescing,
retries and dead letters (:mod:`cachedeco.flows.delivery`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from cachedeco.api.checks import check_flag, check_placement, unwrap_callable
from cachedeco.api.typing import TtlArg
from cachedeco.core.keys.tags import TagsArg
from cachedeco.core.policy import check_ttl
from cachedeco.errors import ConfigurationError
from cachedeco.flows.delivery import Settings
from cachedeco.flows.link import Link
from cachedeco.flows.write_behind import WriteBehind
from cachedeco.runtime.registry import Registry

__all__ = ["write_behind"]

F = TypeVar("F", bound=Callable[..., Any])
MAX_BATCH: Final = 10_000
MAX_REPLICAS: Final = 100


def _count(value: object, what: str, low: int, high: int) -> int:
    """An int in ``[low, high]`` (not a bool), else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{what} must be an int in [{low}, {high}], not {value!r}")
    return value


def write_behind(target: Any = None, *, flush: Callable[[list[Any]], Any],
                 key: str | None = None, ttl: TtlArg = None, tags: TagsArg = (),
                 batch_size: int = 100, flush_interval: float = 5.0, coalesce: bool = True,
                 max_retries: int = 5, replicas: int = 0, replicas_timeout: float = 1.0,
                 sensitive: bool = False, backend: str = "default",
                 registry: Registry | None = None, claim_after: float = 30.0,
                 retry_delay: float = 0.5) -> Callable[[F], F]:
    """Cache a writer's record at once and persist it later through `flush`.

    The function builds the record without I/O. Its result is stored at once as the entry of
    `target` or `key` (as `@write_through` stores it), queued, and returned; background
    workers hand the queued records to `flush` in batches. On Redis the queue is a stream in
    Redis: a crash loses nothing a call returned, and this process, a restarted one or
    another one delivers what was queued and not acknowledged (at least once). On
    `memory://` the queue is in the process and `close()` drains it. An entry still waiting
    in the queue does not expire before it is flushed; after the flush it gets its `ttl`, or,
    if an invalidation or a refresh replaced it meanwhile (readers then load the database's
    older row), a tombstone, so nothing loaded before the flush outlives it. When the
    backend is down, a call raises `BackendError`, unless the registry has a `spool=`: the
    record is kept there and queued once the backend is back, and the call returns. While
    caching is switched off each record goes to `flush` at once, in the call.

    Args:
        target: A `@cached` function whose entry the record becomes (for the arguments the
            writer shares with it by name). Exactly one of `target` and `key`.
        flush: `flush(records: list)`, sync or async: persists a batch (an upsert, so that
            a batch delivered twice does no harm). If it raises, the batch is retried.
        key: A key template over the writer's parameters, naming the entry instead.
        ttl: Seconds, a `timedelta` or a function `ttl(record) -> seconds`; `None`: the
            target's (the registry's with `key`).
        tags: The entry's tag templates, with `key` only.
        batch_size: The most records one `flush` call receives (1 to 10,000).
        flush_interval: Seconds a waiting record waits at most before a flush.
        coalesce: Of the records with one key queued before a flush, flush only the latest.
        max_retries: Retries of a raising flush (with exponential backoff) before its
            records go to the dead letters (`reg.dead_letters()`), logged and counted.
        replicas: On Redis, a call returns only once this many replicas acknowledged the
            queued record (`WAIT` on the node holding the queue, at most
            `replicas_timeout`); else it raises `BackendError` (the record was queued on
            the primary and may still be delivered). With it a Sentinel or Cluster failover
            loses no record a call returned. `0` (default): the primary alone; refused on
            `memory://`.
        replicas_timeout: Seconds a call waits for the `replicas` acknowledgements.
        sensitive: Encrypt the entry, the queued record and its dead letter, hash the
            arguments in the entry's key, and keep flush errors' messages out of logs and
            dead letters (needs the registry's `encryption_key=`). With a `target`, the
            target decides; `True` insists that it is sensitive too.
        backend: The name of the registry's backend to use.
        registry: The registry to bind to; `None`: the default `cachedeco.registry`.
        claim_after: The visibility timeout: seconds a record taken by a process that
            stopped answering waits before another process takes it over.
        retry_delay: Seconds before the first retry of a failing flush (doubled on each
            retry, at most 60 s, with jitter).

    Returns:
        A decorator that wraps the writer, keeping its signature and flavour.

    Raises:
        ConfigurationError: Both or neither of `target` and `key`, a `flush` that is not a
            function, or an option out of range.
    """
    if not callable(flush) or inspect.isgeneratorfunction(flush):
        raise ConfigurationError(f"flush must be a function taking a list of records, "
                                 f"not {flush!r}")
    if not isinstance(coalesce, bool):
        raise ConfigurationError(f"coalesce must be a bool, not {coalesce!r}")
    check_placement(backend, registry)
    sensitive = check_flag(sensitive, "sensitive")
    checked = functools.partial(
        Settings, batch_size=_count(batch_size, "batch_size", 1, MAX_BATCH),
        flush_interval=check_ttl(flush_interval, "flush_interval"), coalesce=coalesce,
        max_retries=_count(max_retries, "max_retries", 0, 100),
        claim_after=check_ttl(claim_after, "claim_after"),
        retry_delay=check_ttl(retry_delay, "retry_delay"),
        replicas=_count(replicas, "replicas", 0, MAX_REPLICAS),
        replicas_timeout=check_ttl(replicas_timeout, "replicas_timeout"))

    def decorate(writer: F) -> F:
        func, kind = unwrap_callable(writer, "write_behind")
        link = Link(func, "write_behind", target, key=key, ttl=ttl, tags=tags, invalidate=(),
                    backend=backend, registry=registry, sensitive=sensitive)
        owner = link.spec.registry
        if target is not None and (registry not in (None, owner) or backend not in (
                "default", link.spec.options.backend)):
            raise ConfigurationError("@write_behind with a @cached target uses the target's "
                                     "registry and backend; do not pass others")
        name = f"{func.__module__}.{func.__qualname__}"
        service = WriteBehind(link, flush, checked(name=name))
        owner.attach(name, service)
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
