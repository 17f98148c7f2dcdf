"""``@cached``: every decision is taken when the decorator is applied (or, for registry
settings, when the function is first called after a ``configure()``); the call itself only
runs the read flow of its flavour."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar, cast, overload

from cachedeco.api.checks import (
    beta,
    check_flag,
    check_placement,
    check_serializer,
    unwrap_callable,
)
from cachedeco.api.methods import CachedClassMethod, CachedMethod
from cachedeco.api.typing import AsyncCachedFunction, CachedDecorator, CachedFunction
from cachedeco.core.keys.builder import KeyBuilder
from cachedeco.core.keys.tags import TagsArg, TagSet
from cachedeco.core.policy import check_jitter, check_optional_ttl, check_ttl
from cachedeco.errors import ConfigurationError
from cachedeco.flows._async import read as read_async
from cachedeco.flows._sync import read as read_sync
from cachedeco.flows.spec import SPEC_ATTR, CachedOptions, Spec
from cachedeco.runtime.registry import Registry

__all__ = ["cached"]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
_BOUND_SELF = ("self", "cls")


@overload
def cached(ttl: Callable[P, Coroutine[Any, Any, R]]) -> AsyncCachedFunction[P, R]: ...
@overload
def cached(ttl: Callable[P, R]) -> CachedFunction[P, R]: ...
@overload
def cached(ttl: float | None = None, *,
           key: str | Callable[..., str] | None = None, tags: TagsArg = (),
           ignore: Iterable[str] = (), version: str | int | None = None,
           backend: str = "default", lock: bool = False, lock_timeout: float | None = None,
           stale_ttl: float = 0, early_refresh: bool | float = False, cache_none: bool = True,
           condition: Callable[[Any], bool] | None = None, jitter: float | None = None,
           serializer: object = None, sensitive: bool = False,
           registry: Registry | None = None) -> CachedDecorator: ...
def cached(ttl: float | Callable[..., Any] | None = None, *,
           key: str | Callable[..., str] | None = None, tags: TagsArg = (),
           ignore: Iterable[str] = (), version: str | int | None = None,
           backend: str = "default", lock: bool = False, lock_timeout: float | None = None,
           stale_ttl: float = 0, early_refresh: bool | float = False, cache_none: bool = True,
           condition: Callable[[Any], bool] | None = None, jitter: float | None = None,
           serializer: object = None, sensitive: bool = False,
           registry: Registry | None = None) -> Any:
    """Cache a function's results (cache-aside / read-through).

    ``sensitive=True`` encrypts and authenticates every entry with the registry's
    ``encryption_key=`` (a ConfigurationError without one, on every backend) and replaces the
    arguments in its keys by a keyed hash; tags stay as given.
    """
    if callable(ttl):  # used bare: @cached
        return cached()(ttl)
    if condition is not None and not callable(condition):
        raise ConfigurationError(f"condition must be callable, not {condition!r}")
    check_placement(backend, registry)
    options = CachedOptions(
        ttl=check_optional_ttl(ttl), stale_ttl=check_ttl(stale_ttl, "stale_ttl", allow_zero=True),
        beta=beta(early_refresh), jitter=None if jitter is None else check_jitter(jitter),
        lock=bool(lock), lock_timeout=check_optional_ttl(lock_timeout, "lock_timeout"),
        cache_none=bool(cache_none), condition=condition,
        serializer=check_serializer(serializer), backend=backend,
        sensitive=check_flag(sensitive, "sensitive"))

    def decorate(target: F) -> F:
        func, kind = unwrap_callable(target, "cached")
        keys = KeyBuilder(func, version=version, ignore=ignore, key=key)
        spec = Spec(func, keys, TagSet(func, tags, keys.binder()), options, registry)
        wrapper = _async_wrapper(spec) if spec.is_async else _sync_wrapper(spec)
        params = list(inspect.signature(func).parameters)
        if kind == "staticmethod":
            return cast(F, staticmethod(wrapper))
        if kind == "classmethod":
            return cast(F, CachedClassMethod(wrapper))
        if params and params[0] in _BOUND_SELF:
            return cast(F, CachedMethod(wrapper))
        return cast(F, wrapper)

    return decorate


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

    return _attach(wrapper, spec, invalidate=invalidate, refresh=refresh,
                   invalidate_all=invalidate_all)


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

    return _attach(wrapper, spec, invalidate=invalidate, refresh=refresh,
                   invalidate_all=invalidate_all)


def _attach(wrapper: Callable[..., Any], spec: Spec, **methods: Callable[..., Any]
            ) -> Callable[..., Any]:
    """Give a wrapper its attributes: key, invalidate, invalidate_all, refresh, stats."""

    def key(*args: Any, **kwargs: Any) -> str:
        return spec.bound().key(args, kwargs)

    attrs: dict[str, Any] = {"key": key, "stats": spec.stats, SPEC_ATTR: spec, **methods}
    for name, value in attrs.items():
        setattr(wrapper, name, value)
    return wrapper
