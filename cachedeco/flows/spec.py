"""A decorated function's definition (:class:`Spec`) and its lazy binding: every call asks
for the :class:`~cachedeco.flows.bound.Bound` of its registry's current configuration, made
again only after ``configure()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cachedeco.backends.memory.store import MemoryBackend
from cachedeco.core.codec.annotations import return_annotation
from cachedeco.core.codec.base import decoder
from cachedeco.core.codec.factory import Codec, make_codec
from cachedeco.core.keys.builder import KeyBuilder
from cachedeco.core.keys.tags import TagSet
from cachedeco.core.policy import Policy, TtlFn
from cachedeco.core.stats import Stats
from cachedeco.errors import ConfigurationError
from cachedeco.flows.bound import Bound
from cachedeco.flows.foreign import adopting, rebuilds
from cachedeco.flows.hot import Hit, memory_hit, near_hit
from cachedeco.runtime.guard import warn
from cachedeco.runtime.registry import Registry, default_registry
from cachedeco.runtime.singleflight import Flights

__all__ = ["SPEC_ATTR", "CachedOptions", "Spec", "spec_of"]

SPEC_ATTR: Final = "__cachedeco_spec__"


@dataclass(eq=False)
class CachedOptions:
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
    ttl_of: TtlFn | None = None  # a callable ttl: the TTL chosen from each result
    sensitive: bool = False
    near: bool = True  # served from the registry's near cache, when it has one


class Spec:
    """A cached function as decorated: its key builder, tags and options, bound lazily."""

    def __init__(self, func: Callable[..., Any], keys: KeyBuilder, tags: TagSet,
                 options: CachedOptions, registry: Registry | None, *,
                 annotation: Callable[[], Any] | None = None) -> None:
        self.func = func
        self.annotation = annotation  # what entries decode to, when not func's return type
        self.keys = keys
        self.tags = tags
        self.options = options
        self.explicit_registry = registry
        self.is_async = inspect.iscoroutinefunction(func)
        self.stats_ = Stats()
        self.flights = Flights()
        self._bound: Bound | None = None
        #: The compiled hit of the current binding (memory://, or a near cache), tried before
        #: the generic read; the registry drops it (drop_hit) when it is configured again.
        self.hit: Hit | None = None
        self._revision = -1
        self._registry: Registry | None = None
        self._setter: tuple[Bound, Bound] | None = None  # (the Bound, f.set()'s: see setter)
        if registry is not None:  # known now: what it lacks is an error at decoration
            self._codec(registry, stores_objects=True)  # the settings only: annotations later

    @property
    def registry(self) -> Registry:
        """The registry this function uses now."""
        return self.explicit_registry or default_registry()

    @property
    def used(self) -> bool:
        """Whether it was ever bound (called, or a registry operation reached it)."""
        return self._bound is not None

    def bound(self) -> Bound:
        """The Bound for the registry's current configuration (rebuilt after configure())."""
        registry = self.explicit_registry or default_registry()
        bound = self._bound
        if bound is not None and self._revision == registry.revision and (
                self._registry is registry):
            return bound
        return self._rebind(registry)

    def _codec(self, registry: Registry, stores_objects: bool) -> Codec | None:
        """The codec under ``registry``'s settings (None where the backend keeps objects).

        A setting that only a serializing backend would use is checked whatever the backend,
        so it fails on memory:// too: ``serializer="pickle"`` without a secret,
        ``sensitive=True`` without a key. The return annotation is resolved only where values
        are serialized (memory:// returns the object itself)."""
        keyring = registry.keyring
        if self.options.sensitive and keyring is None:
            raise ConfigurationError(
                f"{self.keys.name} is sensitive=True, but its registry has no encryption_key=: "
                "configure one (at least 32 bytes) to cache it", function=self.keys.name)
        spec = self.serializer(registry)
        if stores_objects:
            if spec not in (None, "orjson"):
                make_codec(spec, func=self.func, name=self.keys.name, secret=registry.secret)
            return None
        return make_codec(spec, func=self.func, name=self.keys.name, secret=registry.secret,
                          keyring=keyring if self.options.sensitive else None,
                          annotation=self.annotation)

    def _rebind(self, registry: Registry) -> Bound:
        revision = registry.revision  # read first: a change made while binding binds again
        opts = self.options
        slot = registry.slot(opts.backend)
        codec = self._codec(registry, slot.stores_objects)
        namers = registry.keyring.namers() if opts.sensitive and registry.keyring else ()
        fn_tag = registry.keyspace.fn_tag(self.keys.family)
        policy = Policy(opts.ttl if opts.ttl is not None else registry.ttl,
                        opts.jitter if opts.jitter is not None else registry.jitter,
                        opts.stale_ttl, opts.beta, opts.ttl_of)
        tags = self.tags.keys_fn(registry.keyspace, fn_tag)
        owned = self.keys.whole and self.tags.func_tags is None and slot.near is not None
        bound = Bound(
            name=self.keys.name,
            key=self.keys.for_prefix(registry.prefix, namers[0] if namers else None),
            aliases=self.keys.aliases(registry.prefix, namers[1:]), sensitive=opts.sensitive,
            tags=tags, fn_tag=fn_tag, slot=slot, near_owner=tags if owned else None,
            near_reader=None if codec is None else decoder(codec),
            guard=registry.guard(opts.backend, self.stats_),
            codec=codec, policy=policy, near=slot.near if opts.near else None,
            lease_read=bool(opts.lock and opts.near and slot.near is not None
                            and slot.kind != "cluster"),
            stats=self.stats_, flights=self.flights, keyspace=registry.keyspace,
            background=registry.background,
            cache_none=opts.cache_none, condition=opts.condition, lock=opts.lock,
            lock_timeout=opts.lock_timeout if opts.lock_timeout is not None
            else registry.lock_timeout,
            tag_px=max(int(registry.tag_ttl * 1000), policy.hard_ms),
            recovery=registry.recovery, enabled=registry.enabled,
            watch=registry.watchers.hook(registry.prefix, self.keys.name))
        registry.track(self, self.keys.name, self.stats_)
        self._namesakes(registry)
        self._bound, self._revision, self._registry = bound, revision, registry
        store = slot.backend() if slot.stores_objects else None
        pure_keys = self.keys.pure
        if isinstance(store, MemoryBackend):  # memory:// has no near cache
            self.hit = memory_hit(bound, store, fixed_tags=self.tags.fixed, pure_keys=pure_keys)
        elif bound.near is not None:  # a near cache, and the function uses it (near=True)
            self.hit = near_hit(bound, bound.near, pure_keys=pure_keys)
        else:
            self.hit = None
        # Set first, then noted: a configure() that came meanwhile drops it either way.
        if self.hit is not None and not registry.compiled(self, revision):
            self.drop_hit()
        return bound

    def _namesakes(self, registry: Registry) -> None:
        """Warn (at most every LOG_INTERVAL per name) when another live function of this
        registry builds the same default keys: functions a factory makes share their name,
        so they would read each other's entries."""
        space = self.keys.by_name
        if space is None:
            return
        for other in registry.ledger.namesakes(self, self.keys.name):
            if (isinstance(other, Spec) and other.keys.by_name == space
                    and other.func is not self.func):
                warn(f"namesake:{registry.prefix}:{space}", "two live functions build "
                     "their keys from one name, %s (a factory makes each of its functions "
                     "under the same name): they read and write each other's entries; tell "
                     "them apart with key= (a template) or version=", space,
                     prefix=registry.prefix)
                return

    def hint(self) -> Any:
        """The resolved type entries decode to (ConfigurationError when it cannot be)."""
        annotation = self.annotation
        return annotation() if annotation is not None else return_annotation(self.func,
                                                                             self.keys.name)

    def serializer(self, registry: Registry) -> object:
        """The serializer setting in force under ``registry``: the function's, else its."""
        own = self.options.serializer
        return own if own is not None else registry.serializer

    def setter(self) -> Bound:
        """The Bound ``f.set()`` stores with: on memory://, a value of another type than
        the function returns is made that type as Redis would decode it (:mod:`.foreign`)."""
        bound = self.bound()
        if bound.codec is not None or not rebuilds(self.serializer(self.registry)):
            return bound
        setter = self._setter
        if setter is None or setter[0] is not bound:
            setter = self._setter = (bound, adopting(bound, self.hint))
        return setter[1]

    def drop_hit(self) -> None:
        """Stop using the compiled hit (the registry moved on): the next call binds again."""
        self.hit = None
        self._revision = -1

    def stats(self) -> Stats:
        """A snapshot of this function's counters."""
        return self.stats_.snapshot()


def spec_of(func: object) -> Spec:
    """The Spec of a ``@cached`` function, or ConfigurationError."""
    spec = getattr(func, SPEC_ATTR, None)
    if not isinstance(spec, Spec):
        raise ConfigurationError(f"{func!r} is not a @cached function")
    return spec
