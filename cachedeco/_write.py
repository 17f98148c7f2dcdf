"""``@write_through``: the database write runs first; on success its result becomes the cached
entry of a ``@cached`` reader (or of a key template), then the listed tags are invalidated.

A :class:`Link` maps a writer's call onto the reader's entry by parameter name, decided at
decoration; ``@write_behind`` uses the same link.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from cachedeco import _drive_async, _drive_sync
from cachedeco._decorators import (
    Options,
    Spec,
    TagsArg,
    TagSet,
    check_optional_ttl,
    spec_of,
    unwrap_callable,
)
from cachedeco._flow import Bound
from cachedeco._guard import logger
from cachedeco._keys import KeyBuilder
from cachedeco._policy import Policy
from cachedeco._registry import Registry
from cachedeco._templates import Binder, Template
from cachedeco.errors import BackendError, ConfigurationError

__all__ = ["Link", "make_write_through"]

F = TypeVar("F", bound=Callable[..., Any])
_SELF = ("self", "cls")


class Link:
    """How one writer's call maps to the entry it stores and the tags it invalidates."""

    def __init__(self, writer: Callable[..., Any], what: str, target: Any, *, key: str | None,
                 ttl: float | None, tags: TagsArg, invalidate: Iterable[str], backend: str,
                 registry: Registry | None) -> None:
        if (target is None) == (key is None):
            raise ConfigurationError(f"@{what} takes exactly one of a @cached target and key=")
        self.writer = writer
        self.binder = Binder(writer)
        self.ttl = check_optional_ttl(ttl)
        if isinstance(invalidate, str):
            raise ConfigurationError("invalidate= must be a list of tag templates")
        self.invalidate = tuple(Template(t, writer, what="tag") for t in invalidate)
        self.own_tags = None if not tags else TagSet(writer, tags, self.binder)
        if target is not None and tags:
            raise ConfigurationError(
                f"@{what}: tags= applies only with key=; an entry stored for a @cached target "
                "carries the target's own tags, the only ones its reader checks")
        if target is not None:
            if isinstance(target, staticmethod | classmethod):
                target = target.__func__
            self.spec = spec_of(target)
            self.params = self._shared_params(self.spec, what)
        else:
            keys = KeyBuilder(writer, key=key)
            options = Options(ttl=self.ttl, stale_ttl=0.0, beta=0.0, jitter=None, lock=False,
                              lock_timeout=None, cache_none=True, condition=None,
                              serializer=None, backend=backend)
            self.spec = Spec(writer, keys, TagSet(writer, (), self.binder), options, registry)
            self.params = ()
        self.registry = registry
        self._cache: tuple[Bound, Bound] | None = None  # (the target's Bound, ours)

    def _shared_params(self, spec: Spec, what: str) -> tuple[str, ...]:
        """The target's parameters, each of which the writer must have by name."""
        target_params = spec.keys.binder().parameters
        skip = 1 if target_params and target_params[0] in _SELF else 0
        wanted = target_params[skip:]
        missing = [p for p in wanted if p not in self.binder.parameters]
        if missing:
            raise ConfigurationError(
                f"@{what} {self.writer.__qualname__} lacks parameter(s) {missing} of its "
                f"target {spec.keys.name}: the entry to store cannot be named")
        self.target_self = bool(skip)
        return wanted

    def bound(self) -> Bound:
        """The target's Bound, with this link's ttl override, for the current configuration."""
        base = self.spec.bind()
        cache = self._cache
        if cache is None or cache[0] is not base:  # the target was (re)bound: derive again
            derived = base
            if self.ttl is not None:
                policy = Policy(self.ttl, base.policy.jitter, base.policy.stale_ttl)
                derived = dataclasses.replace(base, policy=policy)
            cache = self._cache = (base, derived)
        return cache[1]

    def locate(self, bound: Bound, args: tuple[Any, ...], kwargs: dict[str, Any]
               ) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        """The entry key, the tag keys and the writer's bound arguments of one call."""
        values = self.binder.bind(args, kwargs)
        if self.params or self.spec.func is not self.writer:
            first = self.binder.parameters[0] if self.binder.parameters else None
            owner = values.get(first) if first in _SELF else None
            t_args = (owner,) if self.target_self else ()
            t_kwargs = {name: values[name] for name in self.params}
        else:
            t_args, t_kwargs = args, kwargs
        key = bound.key(t_args, t_kwargs)
        if self.own_tags is None:
            tag_keys = bound.tags(t_args, t_kwargs)
        else:
            registry = bound.registry
            tag_keys = (*map(registry.tag_key, self.own_tags.render(args, kwargs)),
                        bound.fn_tag)
        return key, tag_keys, values

    def stale_tags(self, values: dict[str, Any]) -> tuple[str, ...]:
        """The tags to invalidate after a write."""
        return tuple(t.render(values) for t in self.invalidate)

    def invalidation_failed(self, bound: Bound, exc: BackendError) -> None:
        """The write succeeded but its tags could not be invalidated: raise or log loudly."""
        if bound.guard.raise_errors:
            raise exc
        logger.error("cachedeco: %s wrote, but invalidating its tags failed (%s); entries "
                     "with those tags may be served until they expire",
                     self.writer.__qualname__, exc)


def make_write_through(target: Any, *, key: str | None, ttl: float | None, tags: TagsArg,
                       invalidate: Iterable[str], backend: str,
                       registry: Registry | None) -> Callable[[F], F]:
    """The ``@write_through`` decorator."""

    def decorate(writer: F) -> F:
        func, kind = unwrap_callable(writer, "write_through")
        link = Link(func, "write_through", target, key=key, ttl=ttl, tags=tags,
                    invalidate=invalidate, backend=backend, registry=registry)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                result = await func(*args, **kwargs)
                bound = link.bound()
                entry, tag_keys, values = link.locate(bound, args, kwargs)
                stale = link.stale_tags(values)
                if stale:  # first, so the entry stored next carries the tags' new tokens
                    try:
                        await bound.registry.ainvalidate_tags(*stale, backend=bound.slot.name)
                    except BackendError as exc:
                        link.invalidation_failed(bound, exc)
                await _drive_async.put(bound, entry, tag_keys, result)
                return result

            wrapper: Callable[..., Any] = awrapper
        else:

            @functools.wraps(func)
            def swrapper(*args: Any, **kwargs: Any) -> Any:
                result = func(*args, **kwargs)
                bound = link.bound()
                entry, tag_keys, values = link.locate(bound, args, kwargs)
                stale = link.stale_tags(values)
                if stale:  # first, so the entry stored next carries the tags' new tokens
                    try:
                        bound.registry.invalidate_tags(*stale, backend=bound.slot.name)
                    except BackendError as exc:
                        link.invalidation_failed(bound, exc)
                _drive_sync.put(bound, entry, tag_keys, result)
                return result

            wrapper = swrapper
        if kind == "staticmethod":
            return cast(F, staticmethod(wrapper))
        if kind == "classmethod":
            return cast(F, classmethod(wrapper))
        return cast(F, wrapper)

    return decorate
