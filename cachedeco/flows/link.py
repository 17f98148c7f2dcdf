"""How a writer's call maps onto a reader's entry, decided at decoration: ``@write_through``
and ``@write_behind`` store their result as the entry of a ``@cached`` target (matched by
parameter name) or of a key template, with the target's ttl and tags unless given."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from cachedeco.core.codec.annotations import return_annotation
from cachedeco.core.codec.factory import make_codec
from cachedeco.core.keys.builder import KeyBuilder
from cachedeco.core.keys.tags import TagsArg, TagSet
from cachedeco.core.keys.templates import Binder, Template, items
from cachedeco.core.policy import Policy, TtlFn, check_ttl_option
from cachedeco.errors import ConfigurationError
from cachedeco.flows.bound import Bound
from cachedeco.flows.foreign import adopting, rebuilds
from cachedeco.flows.spec import CachedOptions, Spec, spec_of
from cachedeco.runtime.registry import Registry

__all__ = ["Link", "Located"]

_SELF = ("self", "cls")


class Located(NamedTuple):
    """Where one writer's call stores its result."""

    key: str
    tag_keys: tuple[str, ...]
    values: dict[str, Any]  # the writer's arguments by name
    aliases: tuple[str, ...]  # the entry's keys under older encryption keys


class Link:
    """How one writer's call maps to the entry it stores and the tags it invalidates."""

    def __init__(self, writer: Callable[..., Any], what: str, target: Any, *, key: str | None,
                 ttl: object, tags: TagsArg, invalidate: Iterable[str], backend: str,
                 registry: Registry | None, sensitive: bool = False) -> None:
        if (target is None) == (key is None):
            raise ConfigurationError(f"@{what} takes exactly one of a @cached target and key=")
        self.writer = writer
        self.binder = Binder(writer)
        checked = check_ttl_option(ttl)
        self.ttl: float | None = None if callable(checked) else checked
        self.ttl_of: TtlFn | None = checked if callable(checked) else None
        self.invalidate = tuple(Template(t, writer, what="tag")
                                for t in items(invalidate, "invalidate="))
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
            if sensitive and not self.spec.options.sensitive:
                raise ConfigurationError(
                    f"@{what}(sensitive=True) stores the entry of {self.spec.keys.name}, which "
                    "is not sensitive: mark the @cached target sensitive=True (a target's "
                    "entries are stored as the target says, by its reader and its writers)")
        else:
            keys = KeyBuilder(writer, key=key)
            options = CachedOptions(ttl=self.ttl, stale_ttl=0.0, beta=0.0, jitter=None, lock=False,
                                    lock_timeout=None, cache_none=True, condition=None,
                                    serializer=None, backend=backend, ttl_of=self.ttl_of,
                                    sensitive=bool(sensitive))
            self.spec = Spec(writer, keys, TagSet(writer, (), self.binder), options, registry)
            self.params = ()
        self.registry = registry
        self._cache: tuple[Bound, Bound] | None = None  # (the target's Bound, ours)
        #: The writer stores a target's entry: the target's readers decode it (:meth:`_typed`).
        self.foreign = target is not None and self.spec.func is not writer
        self._declares = "return" in getattr(writer, "__annotations__", {})
        #: Its write-behind records reach ``flush`` as the target's entries do: the writer
        #: declares no type of its own (on Redis they are decoded as the target's type).
        self.records_as_entries = self.foreign and not self._declares
        self.name = f"{writer.__module__}.{writer.__qualname__}"

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
        base = self.spec.bound()
        cache = self._cache
        if cache is None or cache[0] is not base:  # the target was (re)bound: derive again
            derived = base
            if self.ttl is not None or self.ttl_of is not None:
                policy = Policy(self.ttl or base.policy.ttl, base.policy.jitter,
                                base.policy.stale_ttl, ttl_of=self.ttl_of)
                derived = dataclasses.replace(base, policy=policy)
            if self.foreign:
                derived = self._typed(derived)
            cache = self._cache = (base, derived)
        return cache[1]

    def _typed(self, bound: Bound) -> Bound:
        """The Bound of a writer storing a target's entry, with a codec of its own: for the
        type the writer declares (else the target's), named after the writer in what it
        logs. A stored entry reads back as the target's type (its readers decode it); the
        writer's write-behind records are decoded for ``flush`` as the writer declared them.
        On memory://, which keeps objects, the result is made the target's type as a reader
        on Redis would decode it (:mod:`.foreign`), so both backends serve readers the same
        type and hand ``flush`` the same records."""
        if not rebuilds(self.spec.serializer(self.spec.registry)):
            return bound  # pickle and custom serializers keep the type the writer returned
        try:
            theirs = self.spec.hint()
        except ConfigurationError:  # memory:// only (on Redis the target's binding resolved
            return bound  # it): the result is kept as it is
        own = theirs
        if self._declares:
            with contextlib.suppress(ConfigurationError):  # a TYPE_CHECKING-only import
                own = return_annotation(self.writer, self.name)
        if bound.codec is None:
            write = make_codec("orjson", name=self.name, annotation=lambda: own)
            return adopting(bound, lambda: theirs, write)
        keyring = self.spec.registry.keyring if self.spec.options.sensitive else None
        return dataclasses.replace(bound, codec=make_codec(
            "orjson", name=self.name, keyring=keyring, annotation=lambda: own))

    def locate(self, bound: Bound, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Located:
        """The entry key, the tag keys, the writer's bound arguments and the entry's keys
        under older encryption keys (a rotation) of one call."""
        values = self.binder.arguments(args, kwargs)
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
            tag_keys = (*map(bound.keyspace.tag, self.own_tags.render(args, kwargs)),
                        bound.fn_tag)
        aliases = () if bound.aliases is None else bound.aliases(t_args, t_kwargs)
        return Located(key, tag_keys, values, aliases)

    def stale_tags(self, values: dict[str, Any]) -> tuple[str, ...]:
        """The tags a write invalidates (before it stores its entry)."""
        return tuple(t.render(values) for t in self.invalidate)
