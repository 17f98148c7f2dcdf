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
from cachedeco.core.keys.builder import KeyBuilder
from cachedeco.core.keys.tags import TagsArg, TagSet
from cachedeco.core.policy import check_jitter, check_optional_ttl, check_ttl, check_ttl_option
from cachedeco.errors import ConfigurationError
from cachedeco.flows._async import read as read_async
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
           serializer: object = None, sensitive: bool = False,
           registry: Registry | None = None) -> CachedDecorator: ...
def cached(ttl_or_func: Any = None, /, *, ttl: TtlArg = None,
           key: str | Callable[..., str] | None = None, tags: TagsArg = (),
           ignore: Iterable[str] = (), version: str | int | None = None,
           backend: str = "default", lock: bool = False, lock_timeout: float | None = None,
           stale_ttl: float = 0, early_refresh: bool | float = False, cache_none: bool = True,
           condition: Callable[[Any], bool] | None = None, jitter: float | None = None,
           serializer: object = None, sensitive: bool = False,
           registry: Registry | None = None) -> Any:
    """Cache a function's results (cache-aside / read-through).

    Used bare (``@cached``) or called: ``@cached(60)``, ``@cached(ttl=timedelta(hours=1))``.
    ``ttl``: seconds, a timedelta, or, by keyword, ``ttl(result) -> seconds`` (None: the
    registry's). ``key``: a template over the parameters (``"user:{user_id}"``), a callable
    returning the key, or None for ``module.qualname`` and the encoded arguments. ``tags``:
    templates (or a callable) naming tags for ``invalidate_tags``. ``ignore``: parameters
    left out of the default key. ``version``: part of the key; bump it when the value's shape
    changes. ``backend``: the registry's backend name. ``lock``: one process of all computes
    a missing value (a distributed lease), waiting at most ``lock_timeout`` seconds.
    ``stale_ttl``: seconds an expired value is still served while one refresh runs.
    ``early_refresh``: recompute before expiry (True, or an XFetch beta). ``cache_none``:
    whether None is cached. ``condition(result)``: cache only when true. ``jitter``: the TTL
    spread fraction. ``serializer``: "orjson", "pickle" or an object with dumps/loads.
    ``sensitive``: encrypt and authenticate every entry with the registry's
    ``encryption_key=`` (a ConfigurationError without one, on every backend) and replace the
    arguments in its keys by a keyed hash; tags stay as given.
    ``registry``: the registry (default: ``cachedeco.registry``, bound at call time).
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
        lock=bool(lock), lock_timeout=check_optional_ttl(lock_timeout, "lock_timeout"),
        cache_none=bool(cache_none), condition=condition,
        serializer=check_serializer(serializer), backend=backend,
        ttl_of=ttl_checked if callable(ttl_checked) else None,
        sensitive=check_flag(sensitive, "sensitive"))

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
        return read_sync.get_or_load(spec.bound(), func, args, kwargs)

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        return read_sync.invalidate(spec.bound(), args, kwargs)

    def refresh(*args: Any, **kwargs: Any) -> Any:
        return read_sync.refresh(spec.bound(), func, args, kwargs)

    def invalidate_all() -> None:
        read_sync.invalidate_all(spec.bound())

    def get(*args: Any, **kwargs: Any) -> Any:
        return read_sync.cached_value(spec.bound(), args, kwargs)

    def set_(value: Any, /, *args: Any, **kwargs: Any) -> None:
        read_sync.set_value(spec.bound(), args, kwargs, value)

    return _attach(wrapper, spec, invalidate=invalidate, refresh=refresh,
                   invalidate_all=invalidate_all, get=get, set=set_)


def _async_wrapper(spec: Spec) -> Callable[..., Any]:
    func = spec.func

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await read_async.get_or_load(spec.bound(), func, args, kwargs)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        return await read_async.invalidate(spec.bound(), args, kwargs)

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        return await read_async.refresh(spec.bound(), func, args, kwargs)

    async def invalidate_all() -> None:
        await read_async.invalidate_all(spec.bound())

    async def get(*args: Any, **kwargs: Any) -> Any:
        return await read_async.cached_value(spec.bound(), args, kwargs)

    async def set_(value: Any, /, *args: Any, **kwargs: Any) -> None:
        await read_async.set_value(spec.bound(), args, kwargs, value)

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
