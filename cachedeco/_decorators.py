"""``@cached`` and ``@write_through``: every decision is taken when the decorator is applied (or,
for registry settings, when the function is first called after a ``configure()``); the call
itself only runs the driver of its flavour.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, cast, overload

from cachedeco import _drive_async, _drive_sync
from cachedeco._codec import make_codec
from cachedeco._flow import Bound
from cachedeco._keys import KeyBuilder
from cachedeco._policy import Policy, check_jitter, check_ttl
from cachedeco._protocols import AsyncCachedFunction, CachedDecorator, CachedFunction
from cachedeco._registry import Registry
from cachedeco._registry import registry as default_registry
from cachedeco._singleflight import Flights
from cachedeco._stats import Stats
from cachedeco._templates import Binder, Template, escape_text
from cachedeco.errors import ConfigurationError

__all__ = ["Spec", "cached", "spec_of", "write_through"]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
TagsArg = Iterable[str] | Callable[..., Iterable[str]]
SPEC_ATTR: Final = "__cachedeco_spec__"
_BOUND_SELF: Final = ("self", "cls")


def unwrap_callable(func: object, what: str) -> tuple[Callable[..., Any], str | None]:
    """The plain function behind a function, staticmethod or classmethod, and which it was."""
    kind = None
    if isinstance(func, staticmethod | classmethod):
        kind = type(func).__name__
        func = func.__func__
    if not callable(func):
        raise ConfigurationError(f"@{what} decorates a function, not {func!r}")
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise ConfigurationError(
            f"@{what} cannot cache the generator {getattr(func, '__qualname__', func)}: "
            "its values are produced lazily; return a list instead")
    return func, kind


def check_optional_ttl(ttl: object, what: str = "ttl") -> float | None:
    """None, or a finite number of seconds > 0."""
    return None if ttl is None else check_ttl(ttl, what)


class TagSet:
    """Tag templates (or a callable) of one function, rendered to tag keys per call."""

    def __init__(self, func: Callable[..., Any], tags: TagsArg, binder: Binder) -> None:
        self.binder = binder
        self.func_tags: Callable[..., Iterable[str]] | None = None
        self.templates: tuple[Template, ...] = ()
        if callable(tags):
            self.func_tags = tags
        elif isinstance(tags, str):
            raise ConfigurationError(f"tags must be a list of templates, not the string {tags!r}")
        else:
            self.templates = tuple(Template(t, func, what="tag") for t in tags)

    @property
    def empty(self) -> bool:
        """True when the function has no tags of its own."""
        return self.func_tags is None and not self.templates

    def render(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The tags of one call."""
        if self.func_tags is not None:
            tags = tuple(self.func_tags(*args, **kwargs))
            for tag in tags:
                if not isinstance(tag, str) or not tag:
                    raise ConfigurationError(f"a tags callable returned {tag!r}, not a string")
            return tags
        bound = self.binder.bind(args, kwargs)
        return tuple(t.render(bound) for t in self.templates)

    def keys_fn(self, registry: Registry, fn_tag: str
                ) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, ...]]:
        """A function from one call's arguments to its tag keys (the implicit one last)."""
        if self.empty:
            constant = (fn_tag,)
            return lambda args, kwargs: constant
        head = registry.tag_key("")
        if self.func_tags is not None:

            def called(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
                return (*[head + escape_text(tag) for tag in self.render(args, kwargs)], fn_tag)

            return called
        if not any(t.fields for t in self.templates):  # no placeholders: the same every call
            fixed = (*[head + t.render({}) for t in self.templates], fn_tag)
            return lambda args, kwargs: fixed
        bind, templates = self.binder.bind, self.templates

        def rendered(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
            bound = bind(args, kwargs)
            return (*[head + t.render(bound) for t in templates], fn_tag)

        return rendered


@dataclass(eq=False)
class Options:
    """What ``@cached`` was given, checked."""

    ttl: float | None
    stale_ttl: float
    beta: float
    jitter: float | None
    lock: bool
    lock_timeout: float | None
    cache_none: bool
    condition: Callable[[Any], bool] | None
    serializer: object
    backend: str


class Spec:
    """A cached function as decorated: its key builder, tags and options, bound lazily."""

    def __init__(self, func: Callable[..., Any], keys: KeyBuilder, tags: TagSet,
                 options: Options, registry: Registry | None) -> None:
        self.func = func
        self.keys = keys
        self.tags = tags
        self.options = options
        self.explicit_registry = registry
        self.is_async = inspect.iscoroutinefunction(func)
        self.stats_ = Stats()
        self.flights = Flights()
        self._bound: Bound | None = None
        self._generation = -1
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        """The registry this function uses now."""
        return self.explicit_registry or default_registry

    def bind(self) -> Bound:
        """The Bound for the registry's current configuration (rebuilt after configure())."""
        registry = self.explicit_registry or default_registry
        bound = self._bound
        if bound is not None and self._generation == registry.generation and (
                self._registry is registry):
            return bound
        return self._rebind(registry)

    def _rebind(self, registry: Registry) -> Bound:
        opts = self.options
        slot = registry.slot(opts.backend)
        codec = None if slot.stores_objects else make_codec(
            opts.serializer if opts.serializer is not None else registry.serializer,
            func=self.func, name=self.keys.name, secret=registry.secret)
        fn_tag = registry.fn_tag_key(self.keys.family)
        policy = Policy(opts.ttl if opts.ttl is not None else registry.ttl,
                        opts.jitter if opts.jitter is not None else registry.jitter,
                        opts.stale_ttl, opts.beta)
        bound = Bound(
            name=self.keys.name, key=self.keys.for_prefix(registry.prefix),
            tags=self.tags.keys_fn(registry, fn_tag), fn_tag=fn_tag, slot=slot,
            guard=registry.guard(opts.backend, self.stats_), codec=codec, policy=policy,
            stats=self.stats_, flights=self.flights, registry=registry,
            cache_none=opts.cache_none, condition=opts.condition, lock=opts.lock,
            lock_timeout=opts.lock_timeout if opts.lock_timeout is not None
            else registry.lock_timeout,
            tag_px=max(int(registry.tag_ttl * 1000), policy.hard_ms))
        registry.track(self)
        self._bound, self._generation, self._registry = bound, registry.generation, registry
        return bound

    def stats(self) -> Stats:
        """A snapshot of this function's counters."""
        return self.stats_.snapshot()


def spec_of(func: object) -> Spec:
    """The Spec of a ``@cached`` function, or ConfigurationError."""
    spec = getattr(func, SPEC_ATTR, None)
    if not isinstance(spec, Spec):
        raise ConfigurationError(f"{func!r} is not a @cached function")
    return spec


def _beta(early_refresh: object) -> float:
    if early_refresh is False or early_refresh is None:
        return 0.0
    if early_refresh is True:
        return 1.0
    if isinstance(early_refresh, int | float) and math.isfinite(early_refresh) and (
            early_refresh > 0):
        return float(early_refresh)
    raise ConfigurationError(f"early_refresh must be a bool or a beta > 0, not {early_refresh!r}")


def _check_serializer(serializer: object) -> object:
    if serializer is None or serializer in ("orjson", "pickle"):
        return serializer
    if isinstance(serializer, str):
        raise ConfigurationError(f"unknown serializer {serializer!r}: use 'orjson', 'pickle' "
                                 "or an object with dumps() and loads()")
    make_codec(serializer, name="?")
    return serializer


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
           serializer: object = None, registry: Registry | None = None) -> CachedDecorator: ...
def cached(ttl: float | Callable[..., Any] | None = None, *,
           key: str | Callable[..., str] | None = None, tags: TagsArg = (),
           ignore: Iterable[str] = (), version: str | int | None = None,
           backend: str = "default", lock: bool = False, lock_timeout: float | None = None,
           stale_ttl: float = 0, early_refresh: bool | float = False, cache_none: bool = True,
           condition: Callable[[Any], bool] | None = None, jitter: float | None = None,
           serializer: object = None, registry: Registry | None = None) -> Any:
    """Cache a function's results (cache-aside / read-through); see API.md for every option."""
    if callable(ttl):  # used bare: @cached
        return cached()(ttl)
    if condition is not None and not callable(condition):
        raise ConfigurationError(f"condition must be callable, not {condition!r}")
    if registry is not None and not isinstance(registry, Registry):
        raise ConfigurationError(f"registry must be a Registry, not {registry!r}")
    if not isinstance(backend, str):
        raise ConfigurationError(f"backend must be a backend name, not {backend!r}")
    options = Options(
        ttl=check_optional_ttl(ttl), stale_ttl=check_ttl(stale_ttl, "stale_ttl", allow_zero=True),
        beta=_beta(early_refresh), jitter=None if jitter is None else check_jitter(jitter),
        lock=bool(lock), lock_timeout=check_optional_ttl(lock_timeout, "lock_timeout"),
        cache_none=bool(cache_none), condition=condition,
        serializer=_check_serializer(serializer), backend=backend)
    if registry is not None:
        registry.slot(backend)

    def decorate(target: F) -> F:
        func, kind = unwrap_callable(target, "cached")
        keys = KeyBuilder(func, version=version, ignore=ignore, key=key)
        spec = Spec(func, keys, TagSet(func, tags, keys.binder()), options, registry)
        wrapper = _async_wrapper(spec) if spec.is_async else _sync_wrapper(spec)
        params = list(inspect.signature(func).parameters)
        if kind == "staticmethod":
            return cast(F, staticmethod(wrapper))
        if kind == "classmethod":
            return cast(F, ClassBound(wrapper))
        if params and params[0] in _BOUND_SELF:
            return cast(F, MethodBound(wrapper))
        return cast(F, wrapper)

    return decorate


def _sync_wrapper(spec: Spec) -> Callable[..., Any]:
    func, drive = spec.func, _drive_sync

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return drive.get_or_load(spec.bind(), func, args, kwargs)

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        return drive.invalidate(spec.bind(), args, kwargs)

    def refresh(*args: Any, **kwargs: Any) -> Any:
        return drive.refresh(spec.bind(), func, args, kwargs)

    def invalidate_all() -> None:
        drive.invalidate_all(spec.bind())

    return _attach(wrapper, spec, invalidate=invalidate, refresh=refresh,
                   invalidate_all=invalidate_all)


def _async_wrapper(spec: Spec) -> Callable[..., Any]:
    func, drive = spec.func, _drive_async

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await drive.get_or_load(spec.bind(), func, args, kwargs)

    async def invalidate(*args: Any, **kwargs: Any) -> bool:
        return await drive.invalidate(spec.bind(), args, kwargs)

    async def refresh(*args: Any, **kwargs: Any) -> Any:
        return await drive.refresh(spec.bind(), func, args, kwargs)

    async def invalidate_all() -> None:
        await drive.invalidate_all(spec.bind())

    return _attach(wrapper, spec, invalidate=invalidate, refresh=refresh,
                   invalidate_all=invalidate_all)


def _attach(wrapper: Callable[..., Any], spec: Spec, **methods: Callable[..., Any]
            ) -> Callable[..., Any]:
    """Give a wrapper its attributes: key, invalidate, invalidate_all, refresh, stats."""

    def key(*args: Any, **kwargs: Any) -> str:
        return spec.bind().key(args, kwargs)

    attrs: dict[str, Any] = {"key": key, "stats": spec.stats, SPEC_ATTR: spec, **methods}
    for name, value in attrs.items():
        setattr(wrapper, name, value)
    return wrapper


_PER_CALL: Final = ("key", "invalidate", "refresh")


class BoundCached:
    """A cached method bound to its instance (or class): calls and attributes pass it first."""

    __slots__ = ("__self__", "__wrapped__", "_wrapper")

    def __init__(self, wrapper: Callable[..., Any], owner: object) -> None:
        self._wrapper = wrapper
        self.__self__ = owner
        self.__wrapped__ = getattr(wrapper, "__wrapped__", wrapper)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._wrapper, name)
        if name in _PER_CALL:
            return functools.partial(attr, self.__self__)
        return attr

    def __repr__(self) -> str:
        return f"<bound cached {self._wrapper.__qualname__} of {self.__self__!r}>"


class MethodBound:
    """Descriptor for a cached method: ``obj.m.invalidate(x)`` passes ``obj`` like ``obj.m(x)``."""

    def __init__(self, wrapper: Callable[..., Any]) -> None:
        self.wrapper = wrapper
        functools.update_wrapper(self, wrapper)

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self.wrapper if obj is None else BoundCached(self.wrapper, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapper(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapper, name)


class ClassBound(MethodBound):
    """Descriptor for a cached classmethod: binds the class whether reached by class or object."""

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return BoundCached(self.wrapper, owner if owner is not None else type(obj))


def write_through(target: Any = None, *, key: str | None = None, ttl: float | None = None,
                  tags: TagsArg = (), invalidate: Iterable[str] = (), backend: str = "default",
                  registry: Registry | None = None) -> Callable[[F], F]:
    """Store a writer's result as a cached entry once the write succeeded; see API.md."""
    from cachedeco._write import make_write_through

    return make_write_through(target, key=key, ttl=ttl, tags=tags, invalidate=invalidate,
                              backend=backend, registry=registry)
