"""``@cached_many``: one call, many keys. The function takes an iterable of ids and returns a
mapping from id to value; each id is cached as its own entry (named by a key template over
``{id}``), read for all ids in one round trip, and the function is called once with only the
ids that missed. Its entries are those of a ``@cached`` reader whose key template renders the
same key: repository code loading many ids no longer makes N round trips (the N+1)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

from cachedeco.api.checks import check_flag, check_placement, method_form, unwrap_callable
from cachedeco.api.typing import CachedManyDecorator, TtlArg
from cachedeco.core.codec.annotations import mapping_values, return_annotation
from cachedeco.core.keys.builder import KeyBuilder
from cachedeco.core.keys.tags import TagSet
from cachedeco.core.keys.templates import POSITIONAL, Binder, Template
from cachedeco.core.policy import check_ttl_option
from cachedeco.errors import ConfigurationError
from cachedeco.flows._async import change as change_async
from cachedeco.flows._async import many as many_async
from cachedeco.flows._sync import change as change_sync
from cachedeco.flows._sync import many as many_sync
from cachedeco.flows.spec import CachedOptions, Spec
from cachedeco.runtime.registry import Registry

__all__ = ["cached_many"]

F = TypeVar("F", bound=Callable[..., Any])
_BOUND_SELF: Final = ("self", "cls")
_ID: Final = ("id",)


def cached_many(ttl: TtlArg = None, *, key: str, tags: list[str] | tuple[str, ...] = (),
                version: str | int | None = None, backend: str = "default", lock: bool = False,
                registry: Registry | None = None) -> CachedManyDecorator:
    """Cache a batch loader per id: `@cached_many(key="user:{id}") def f(ids) -> dict`.

    The function's first parameter (after `self`/`cls`) takes an iterable of ids, it has no
    other parameter, and it returns a mapping from id to value. Each id is its own entry: a
    call takes the ids the registry's near cache holds, if it has one, reads every other
    id's entry in one round trip, calls the function once with only the ids
    that missed (not at all when none did), stores what it returned and returns a mapping
    for every id found or returned. Ids the function leaves out are not cached. An entry is
    shared with a `@cached` reader whose key template renders the same key with the same
    tags.

    Args:
        ttl: Seconds, a `timedelta`, or a function `ttl(value) -> seconds` of each value;
            `None`: the registry's `ttl`.
        key: A key template whose one placeholder is `{id}`, bound to one id.
        tags: Tag templates over `{id}`.
        version: Part of every key: bump it when the values' shape changes.
        backend: The name of the registry's backend to use.
        lock: Per id, only one process of all loads it (a distributed lease).
        registry: The registry to bind to; `None`: the default `cachedeco.registry`.

    Returns:
        A decorator making the cached batch loader.

    Raises:
        ConfigurationError: A `key` without `{id}`, a template with another placeholder,
            or a function whose parameters do not fit.
    """
    if not isinstance(key, str):
        raise ConfigurationError(f"@cached_many key= must be a template over {{id}}, not {key!r}")
    if not Template(key, _ID, what="key").fields:
        raise ConfigurationError(f"@cached_many key {key!r} must use {{id}}: every id needs its "
                                 "own entry")
    if isinstance(tags, str) or callable(tags):
        raise ConfigurationError("@cached_many tags= is a list of templates over {id}")
    for tag in tags:
        Template(tag, _ID, what="tag")
    check_placement(backend, registry)
    ttl_checked = check_ttl_option(ttl)
    options = CachedOptions(
        ttl=None if callable(ttl_checked) else ttl_checked, stale_ttl=0.0, beta=0.0,
        jitter=None, lock=check_flag(lock, "lock"), lock_timeout=None, cache_none=True,
        condition=None, serializer=None, backend=backend,
        ttl_of=ttl_checked if callable(ttl_checked) else None)

    def decorate(target: F) -> F:
        func, kind = unwrap_callable(target, "cached_many")
        skip = _ids_position(func)
        one = _per_id(func)
        keys = KeyBuilder(one, key=key, version=version)
        name = keys.name
        spec = Spec(func, keys, TagSet(one, tags, keys.binder()), options, registry,
                    annotation=lambda: mapping_values(return_annotation(func, name)))
        wrapper = _async_wrapper(spec, skip) if spec.is_async else _sync_wrapper(spec, skip)
        return cast(F, method_form(wrapper, func, kind, per_call=frozenset()))

    return cast(CachedManyDecorator, decorate)


def _ids_position(func: Callable[..., Any]) -> int:
    """Where the ids parameter sits (1 after ``self``/``cls``); ConfigurationError unless
    the function takes the ids and nothing else."""
    params = list(Binder(func).signature.parameters.values())
    skip = 1 if params and params[0].name in _BOUND_SELF else 0
    rest = params[skip:]
    if len(rest) != 1 or rest[0].kind not in POSITIONAL:
        raise ConfigurationError(
            f"@cached_many {func.__qualname__} must take the ids as its one parameter "
            f"(after self/cls), not {[p.name for p in rest]}: other arguments would not be "
            "part of the key")
    return skip


def _per_id(func: Callable[..., Any]) -> Callable[..., Any]:
    """The signature the key and tag templates are bound to: one id, named ``id``."""

    def one(id: Any) -> Any:
        """One id of the batch."""

    one.__module__, one.__qualname__ = func.__module__, func.__qualname__
    return one


def _split(spec: Spec, skip: int) -> Callable[[tuple[Any, ...], dict[str, Any]],
                                              tuple[tuple[Any, ...], Any]]:
    """``(args, kwargs) -> (self or nothing, the ids)`` for the function's signature."""
    binder = Binder(spec.func)
    names = binder.parameters

    def split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], Any]:
        if not kwargs and len(args) == skip + 1:
            return args[:skip], args[skip]
        values = binder.arguments(args, kwargs)
        return tuple(values[n] for n in names[:skip]), values[names[skip]]

    return split


def _sync_wrapper(spec: Spec, skip: int) -> Callable[..., Any]:
    func, split = spec.func, _split(spec, skip)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        head, ids = split(args, kwargs)
        return many_sync.get_many(spec.bound(), func, head, ids)

    def invalidate(id: Any, /) -> bool:
        return change_sync.invalidate(spec.bound(), (id,), {})

    def invalidate_all() -> None:
        change_sync.invalidate_all(spec.bound())

    return _attach(wrapper, spec, invalidate=invalidate, invalidate_all=invalidate_all)


def _async_wrapper(spec: Spec, skip: int) -> Callable[..., Any]:
    func, split = spec.func, _split(spec, skip)

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        head, ids = split(args, kwargs)
        return await many_async.get_many(spec.bound(), func, head, ids)

    async def invalidate(id: Any, /) -> bool:
        return await change_async.invalidate(spec.bound(), (id,), {})

    async def invalidate_all() -> None:
        await change_async.invalidate_all(spec.bound())

    return _attach(wrapper, spec, invalidate=invalidate, invalidate_all=invalidate_all)


def _attach(wrapper: Callable[..., Any], spec: Spec, **methods: Callable[..., Any]
            ) -> Callable[..., Any]:
    """Give a wrapper its attributes (key, invalidate, invalidate_all, stats) and the
    function's signature."""

    def key(id: Any, /) -> str:
        return spec.bound().key((id,), {})

    attrs: dict[str, Any] = {"key": key, "stats": spec.stats,
                             "__signature__": inspect.signature(spec.func), **methods}
    for name, value in attrs.items():
        setattr(wrapper, name, value)
    return wrapper
