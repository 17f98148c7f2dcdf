"""``@cached``: every decision is taken when the decorator is applied (or, for registry
settings, when the function is first called after a ``configure()``); the call itself only
runs the read flow of its flavour."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, cast, overload

from cachedeco.api.checks import (
    beta,
    check_flag,
    check_placement,
    check_serializer,
    decorated_now,
    method_form,
    unwrap_callable,
)
from cachedeco.api.typing import (
    AsyncCachedClassFunction,
    AsyncCachedFunction,
    CachedClassFunction,
    CachedDecorator,
    CachedFunction,
    TtlArg,
)
from cachedeco.core.entry import NO_VALUE
from cachedeco.core.keys.builder import KeyBuilder
from cachedeco.core.keys.tags import TagsArg, TagSet
from cachedeco.core.policy import check_jitter, check_optional_ttl, check_ttl, check_ttl_option
from cachedeco.errors import ConfigurationError
from cachedeco.flows._async import change as change_async
from cachedeco.flows._async import read as read_async
from cachedeco.flows._sync import change as change_sync
from cachedeco.flows._sync import read as read_sync
from cachedeco.flows.spec import SPEC_ATTR, CachedOptions, Spec
from cachedeco.runtime.registry import Registry

__all__ = ["cached"]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


@overload
def cached(func: Callable[Concatenate[type[S], P], Coroutine[Any, Any, R]], /
           ) -> AsyncCachedClassFunction[Concatenate[type[S], P], R]: ...
@overload
def cached(func: Callable[Concatenate[type[S], P], R], /
           ) -> CachedClassFunction[Concatenate[type[S], P], R]: ...
@overload
def cached(func: Callable[P, Coroutine[Any, Any, R]], /) -> AsyncCachedFunction[P, R]: ...
@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...
@overload
def cached(seconds: float | timedelta | None = None, /, *, ttl: TtlArg = None,
           key: str | Callable[..., str] | None = None, tags: TagsArg = (),
           ignore: Iterable[str] = (), version: str | int | None = None,
           backend: str = "default", lock: bool = False, lock_timeout: float | None = None,
           stale_ttl: float = 0, early_refresh: bool | float = False, cache_none: bool = True,
           condition: Callable[[Any], bool] | None = None, jitter: float | None = None,
           serializer: object = None, near: bool = True, sensitive: bool = False,
           registry: Registry | None = None) -> CachedDecorator: ...
def cached(ttl_or_func: Any = None, /, *, ttl: TtlArg = None,
           key: str | Callable[..., str] | None = None, tags: TagsArg = (),
           ignore: Iterable[str] = (), version: str | int | None = None,
           backend: str = "default", lock: bool = False, lock_timeout: float | None = None,
           stale_ttl: float = 0, early_refresh: bool | float = False, cache_none: bool = True,
           condition: Callable[[Any], bool] | None = None, jitter: float | None = None,
           serializer: object = None, near: bool = True, sensitive: bool = False,
           registry: Registry | None = None) -> Any:
    """Cache a function's results (cache-aside / read-through).

    Used bare (`@cached`) or called (`@cached(60)`, `@cached(ttl=timedelta(hours=1))`), on a
    `def`, an `async def`, a method, a classmethod or a staticmethod (put `@cached`
    outermost). Every option is checked here, when the decorator is applied: a bad one is a
    `ConfigurationError` at import time, not at the first call. The decorated function has
    the attributes `key`, `invalidate`, `invalidate_all`, `refresh`, `get`, `set` and
    `stats` (see [the cached function][cachedeco.api.typing.BoundCachedFunction]).

    Args:
        ttl_or_func: The function itself (bare `@cached`), or the `ttl` given positionally
            (`@cached(60)`).
        ttl: How long an entry lives: seconds (int or float, > 0), a `timedelta`, or, by
            keyword only, a function `ttl(result) -> seconds` choosing it from the result.
            Never below 1 s; `None` takes the registry's `ttl`.
        key: `None` for the default key (`module.qualname` and the typed, encoded
            arguments); a template over the parameters (`"user:{user_id}"`,
            `"{user.id}"`); or a callable taking the function's arguments and returning the
            key. The registry's prefix is always prepended.
        tags: Tag templates (like `key`), or a callable taking the function's arguments and
            returning tags; `invalidate_tags(tag)` makes every entry stored with `tag` a miss.
        ignore: Parameter names left out of the default key (a connection, a logger).
        version: Part of the key: bump it when the shape of the returned value changes.
        backend: The name of the registry's backend to use (`backends={...}`).
        lock: Across processes, only one computes a missing value (a distributed lease);
            the others wait for it. In one process, concurrent calls always share one load.
        lock_timeout: Seconds a `lock=True` waiter waits before computing the value itself
            (`None`: the registry's `lock_timeout`).
        stale_ttl: Seconds past expiry during which the old value is served at once while
            one background refresh runs; if the function raises, the stale value is
            returned (fail-safe) and the error logged.
        early_refresh: Recompute before expiry, with a probability that grows as expiry
            nears (XFetch): `True`, or a float beta (higher refreshes earlier).
        cache_none: Whether a `None` result is cached.
        condition: `condition(result) -> bool`: the result is cached only when it is true.
        jitter: The fraction by which stored TTLs are spread (`[ttl*(1-j), ttl*(1+j)]`);
            `None`: the registry's.
        serializer: `"orjson"`, `"pickle"` (needs the registry's `secret=`) or an object
            with `dumps(obj) -> bytes` and `loads(data) -> obj`; `None`: the registry's.
        near: Whether hits may be served from the registry's near cache (`near_cache=`):
            `False` reads Redis on every call, for values that must never be even a few
            milliseconds behind a change made by another process.
        sensitive: Encrypt and authenticate every entry with the registry's
            `encryption_key=` and put a keyed hash of the arguments in its keys instead of
            the arguments; tags stay as given. A `ConfigurationError` without a key, on
            every backend.
        registry: The registry to bind to; `None`: the default `cachedeco.registry`, bound
            at call time, so `configure()` may run after the import.

    Returns:
        The cached function, or a decorator making one when called with options.

    Raises:
        ConfigurationError: A bad option, a generator function, or a template naming a
            parameter the function does not have.
    """
    func, ttl = decorated_now(ttl_or_func, ttl, "cached")
    if condition is not None and not callable(condition):
        raise ConfigurationError(f"condition must be callable, not {condition!r}")
    check_placement(backend, registry)
    ttl_checked = check_ttl_option(ttl)
    options = CachedOptions(
        ttl=None if callable(ttl_checked) else ttl_checked,
        stale_ttl=check_ttl(stale_ttl, "stale_ttl", allow_zero=True),
        beta=beta(early_refresh), jitter=None if jitter is None else check_jitter(jitter),
        lock=check_flag(lock, "lock"),
        lock_timeout=check_optional_ttl(lock_timeout, "lock_timeout"),
        cache_none=check_flag(cache_none, "cache_none"), condition=condition,
        serializer=check_serializer(serializer), backend=backend,
        ttl_of=ttl_checked if callable(ttl_checked) else None,
        sensitive=check_flag(sensitive, "sensitive"), near=check_flag(near, "near"))

    def decorate(target: F) -> F:
        func, kind = unwrap_callable(target, "cached")
        keys = KeyBuilder(func, version=version, ignore=ignore, key=key)
        spec = Spec(func, keys, TagSet(func, tags, keys.binder()), options, registry)
        wrapper = _async_wrapper(spec) if spec.is_async else _sync_wrapper(spec)
        return cast(F, method_form(wrapper, func, kind))

    return decorate if func is None else decorate(func)


def _sync_wrapper(spec: Spec) -> Callable[..., Any]:
    func = spec.func

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = spec.hit  # memory:// or near: a fresh hit without the generic layers
        if hit is not None and (value := hit(args, kwargs)) is not NO_VALUE:
            return value
        return read_sync.get_or_load(spec.bound(), func, args, kwargs, hit is not None)

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        return change_sync.invalidate(spec.bound(), args, kwargs)

    def refresh(*args: Any, **kwargs: Any) -> Any:
        return change_sync.refresh(spec.bound(), func, args, kwargs)

    def invalidate_all() -> None:
        change_sync.invalidate_all(spec.bound())

    def get(*args: Any, **kwargs: Any) -> Any:
        return change_sync.cached_value(spec.bound(), args, kwargs)

    def set_(value: Any, /, *args: Any, **kwargs: Any) -> None:
        change_sync.set_value(spec.setter(), args, kwargs, value)

    return _attach(wrapper, spec, invalidate=invalidate, refresh=refresh,
                   invalidate_all=invalidate_all, get=get, set=set_)


def _async_wrapper(spec: Spec) -> Callable[..., Any]:
    func = spec.func

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        hit = spec.hit  # memory:// or near: a fresh hit without the generic layers
        if hit is not None and (value := hit(args, kwargs)) is not NO_VALUE:
            return value
        return await read_async.get_or_load(spec.bound(), func, args, kwargs, hit is not None)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        return await change_async.invalidate(spec.bound(), args, kwargs)

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        return await change_async.refresh(spec.bound(), func, args, kwargs)

    async def invalidate_all() -> None:
        await change_async.invalidate_all(spec.bound())

    async def get(*args: Any, **kwargs: Any) -> Any:
        return await change_async.cached_value(spec.bound(), args, kwargs)

    async def set_(value: Any, /, *args: Any, **kwargs: Any) -> None:
        await change_async.set_value(spec.setter(), args, kwargs, value)

    return _attach(wrapper, spec, invalidate=invalidate, refresh=refresh,
                   invalidate_all=invalidate_all, get=get, set=set_)


def _attach(wrapper: Callable[..., Any], spec: Spec, **methods: Callable[..., Any]
            ) -> Callable[..., Any]:
    """Give a wrapper its attributes (key, invalidate, invalidate_all, refresh, get, set,
    stats) and the function's signature, which ``inspect.getfullargspec`` reads too."""

    def key(*args: Any, **kwargs: Any) -> str:
        return spec.bound().key(args, kwargs)

    attrs: dict[str, Any] = {"key": key, "stats": spec.stats, SPEC_ATTR: spec,
                             "__signature__": spec.keys.binder().signature, **methods}
    for name, value in attrs.items():
        setattr(wrapper, name, value)
    return wrapper
