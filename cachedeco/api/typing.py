"""The static types of decorated functions: signatures and awaitability survive decoration.

``@cached`` on ``def f(x: int) -> User`` gives a :class:`CachedFunction` whose ``__call__``,
``key``, ``invalidate``, ``refresh``, ``get`` and ``set`` take exactly ``f``'s parameters; on
an ``async def`` it gives an :class:`AsyncCachedFunction` whose call and attributes are
awaitable. Reached through an instance, a cached method is a :class:`BoundCachedFunction`
without ``self``: the ``__get__`` overloads drop the first parameter, as Python binds it. A
function whose first parameter is a class (``cls`` of a classmethod, which type checkers hand
to the decorator unwrapped) gives a ``...ClassFunction`` bound through its class too.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeVar, overload

from cachedeco.core.entry import Miss
from cachedeco.core.stats import Stats

__all__ = [
    "AsyncBoundCachedFunction",
    "AsyncBoundCachedMany",
    "AsyncCachedClassFunction",
    "AsyncCachedClassMany",
    "AsyncCachedFunction",
    "AsyncCachedMany",
    "BoundCachedFunction",
    "BoundCachedMany",
    "CachedClassFunction",
    "CachedClassMany",
    "CachedDecorator",
    "CachedFunction",
    "CachedMany",
    "CachedManyDecorator",
    "TtlArg",
]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
M = TypeVar("M", bound=Mapping[Any, Any])
M_co = TypeVar("M_co", bound=Mapping[Any, Any], covariant=True)
S = TypeVar("S")

#: What ``ttl=`` takes: seconds, a timedelta, or (by keyword) ``ttl(result) -> seconds``.
TtlArg = float | timedelta | Callable[[Any], float | timedelta] | None


class BoundCachedFunction(Protocol[P, R]):
    """A `@cached` function and its attributes (a method: as reached on an instance).

    Each attribute takes the function's own arguments (`*args`, `**kwargs`, bound to its
    signature as a call is: `f.key(1)` and `f.key(x=1)` agree). On an `async def` every
    attribute but `key` and `stats` is a coroutine. `__wrapped__` is the undecorated function.
    """

    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[..., R]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The full key of the entry for these arguments (pure: no I/O)."""
        ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry for these arguments; True if there was one. When the backend
        cannot be reached, False: the drop is kept and done once it answers
        (auto-recovery), and this process does not serve the entry meanwhile."""
        ...
    def invalidate_all(self) -> None:
        """Make every entry of this function a miss (its implicit tag), in one round trip."""
        ...
    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function now, store its result as the entry, and return it. When the
        entry or its tags changed during the call (a write, an invalidation, another
        refresh), or the result is not to be cached, the entry is dropped instead."""
        ...
    def get(self, *args: P.args, **kwargs: P.kwargs) -> R | Miss:
        """The cached value, or `cachedeco.MISS` when there is none; never calls the
        function and never stores."""
        ...
    def set(self, value: R, /, *args: P.args, **kwargs: P.kwargs) -> None:
        """Store `value` as the entry for these arguments, with the function's TTL and
        tags, as a write-through would (a load still in flight never overwrites it).

        Args:
            value: The value to store.
            *args: The function's positional arguments.
            **kwargs: The function's keyword arguments.
        """
        ...
    def stats(self) -> Stats:
        """This function's counters (a snapshot)."""
        ...


class CachedFunction(BoundCachedFunction[P, R], Protocol[P, R]):
    """A ``@cached`` sync function; through an instance (or a classmethod through its class)
    the first parameter is bound."""

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: CachedFunction[Concatenate[S, P2], R], obj: S,
                owner: type[Any] | None = None) -> BoundCachedFunction[P2, R]: ...


class AsyncBoundCachedFunction(Protocol[P, R]):
    """A ``@cached`` coroutine function; its attributes are coroutines too (but ``key``)."""

    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[..., Coroutine[Any, Any, R]]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]: ...
    def invalidate_all(self) -> Coroutine[Any, Any, None]: ...
    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]: ...
    def get(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R | Miss]: ...
    def set(self, value: R, /, *args: P.args, **kwargs: P.kwargs
            ) -> Coroutine[Any, Any, None]: ...
    def stats(self) -> Stats: ...


class AsyncCachedFunction(AsyncBoundCachedFunction[P, R], Protocol[P, R]):
    """A ``@cached`` coroutine function; bound like :class:`CachedFunction`."""

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: AsyncCachedFunction[Concatenate[S, P2], R], obj: S,
                owner: type[Any] | None = None) -> AsyncBoundCachedFunction[P2, R]: ...


class CachedClassFunction(BoundCachedFunction[P, R], Protocol[P, R]):
    """A ``@cached`` classmethod: bound to its class, reached by class or instance."""

    def __get__(self: CachedClassFunction[Concatenate[type[S], P2], R], obj: object,
                owner: type[S] | None = None) -> BoundCachedFunction[P2, R]: ...


class AsyncCachedClassFunction(AsyncBoundCachedFunction[P, R], Protocol[P, R]):
    """A ``@cached`` async classmethod: bound to its class, reached by class or instance."""

    def __get__(self: AsyncCachedClassFunction[Concatenate[type[S], P2], R], obj: object,
                owner: type[S] | None = None) -> AsyncBoundCachedFunction[P2, R]: ...


class CachedDecorator(Protocol):
    """What ``cached(...)`` returns: applied to a function, its typed cached form."""

    @overload
    def __call__(self, func: Callable[Concatenate[type[S], P], Coroutine[Any, Any, R]]
                 ) -> AsyncCachedClassFunction[Concatenate[type[S], P], R]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[type[S], P], R]
                 ) -> CachedClassFunction[Concatenate[type[S], P], R]: ...
    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]]
                 ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> CachedFunction[P, R]: ...


class BoundCachedMany(Protocol[P, M_co]):
    """A `@cached_many` function: ids in, a mapping out; each id its own entry.

    On an `async def`, `invalidate` and `invalidate_all` are coroutines too.
    """

    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[..., M_co]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> M_co: ...
    def key(self, id: Any, /) -> str:
        """The full key of one id's entry (pure: no I/O).

        Args:
            id: One id, as the function takes it.
        """
        ...
    def invalidate(self, id: Any, /) -> bool:
        """Drop one id's entry; True if there was one.

        Args:
            id: One id, as the function takes it.
        """
        ...
    def invalidate_all(self) -> None:
        """Make every entry of this function a miss."""
        ...
    def stats(self) -> Stats:
        """This function's counters (a snapshot)."""
        ...


class CachedMany(BoundCachedMany[P, M_co], Protocol[P, M_co]):
    """A ``@cached_many`` sync function, bound like :class:`CachedFunction`."""

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: CachedMany[Concatenate[S, P2], M_co], obj: S,
                owner: type[Any] | None = None) -> BoundCachedMany[P2, M_co]: ...


class AsyncBoundCachedMany(Protocol[P, M_co]):
    """A ``@cached_many`` coroutine function; ``invalidate`` and ``invalidate_all`` too."""

    __name__: str
    __qualname__: str

    @property
    def __wrapped__(self) -> Callable[..., Coroutine[Any, Any, M_co]]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, M_co]: ...
    def key(self, id: Any, /) -> str: ...
    def invalidate(self, id: Any, /) -> Coroutine[Any, Any, bool]: ...
    def invalidate_all(self) -> Coroutine[Any, Any, None]: ...
    def stats(self) -> Stats: ...


class AsyncCachedMany(AsyncBoundCachedMany[P, M_co], Protocol[P, M_co]):
    """A ``@cached_many`` coroutine function, bound like :class:`CachedFunction`."""

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: AsyncCachedMany[Concatenate[S, P2], M_co], obj: S,
                owner: type[Any] | None = None) -> AsyncBoundCachedMany[P2, M_co]: ...


class CachedClassMany(BoundCachedMany[P, M_co], Protocol[P, M_co]):
    """A ``@cached_many`` classmethod: bound to its class."""

    def __get__(self: CachedClassMany[Concatenate[type[S], P2], M_co], obj: object,
                owner: type[S] | None = None) -> BoundCachedMany[P2, M_co]: ...


class AsyncCachedClassMany(AsyncBoundCachedMany[P, M_co], Protocol[P, M_co]):
    """A ``@cached_many`` async classmethod: bound to its class."""

    def __get__(self: AsyncCachedClassMany[Concatenate[type[S], P2], M_co], obj: object,
                owner: type[S] | None = None) -> AsyncBoundCachedMany[P2, M_co]: ...


class CachedManyDecorator(Protocol):
    """What ``cached_many(...)`` returns: applied to a function, its typed form."""

    @overload
    def __call__(self, func: Callable[Concatenate[type[S], P], Coroutine[Any, Any, M]]
                 ) -> AsyncCachedClassMany[Concatenate[type[S], P], M]: ...
    @overload
    def __call__(self, func: Callable[Concatenate[type[S], P], M]
                 ) -> CachedClassMany[Concatenate[type[S], P], M]: ...
    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, M]]) -> AsyncCachedMany[P, M]: ...
    @overload
    def __call__(self, func: Callable[P, M]) -> CachedMany[P, M]: ...
