"""Cached methods: descriptors that bind ``self`` (or the class) for the call and for the
per-call attributes, so ``obj.m.invalidate(x)`` names the entry ``obj.m(x)`` reads.

A bound method looks like the method it stands for: its ``__doc__``, ``__name__``,
``__qualname__`` and ``__wrapped__`` are the method's, and its signature has no ``self``.
A plain function's call never goes through here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Final

__all__ = ["PER_CALL", "BoundMethod", "CachedClassMethod", "CachedMethod"]

#: The attributes that take the function's arguments, so a bound method passes ``self`` too.
PER_CALL: Final = frozenset({"key", "invalidate", "refresh", "get", "set"})


class BoundMethod:
    # A cached method bound to its instance (or class): calls and attributes pass it first.
    # No docstring on purpose: ``__doc__`` is the method's (see the property below).

    __slots__ = ("__self__", "_per_call", "_wrapper")

    def __init__(self, wrapper: Callable[..., Any], owner: object,
                 per_call: frozenset[str] = PER_CALL) -> None:
        self._wrapper = wrapper
        self.__self__ = owner
        self._per_call = per_call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapper(self.__self__, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._wrapper, name)
        if name in self._per_call:
            if name == "set":  # set(value, *args): the instance goes after the value
                return lambda value, *a, **kw: attr(value, self.__self__, *a, **kw)
            return functools.partial(attr, self.__self__)
        return attr

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return self._wrapper.__doc__

    @property
    def __wrapped__(self) -> Callable[..., Any]:
        """The undecorated method (unbound, as on a plain bound method's function)."""
        wrapper: Any = self._wrapper
        return wrapper.__wrapped__  # type: ignore[no-any-return]

    @property
    def __signature__(self) -> inspect.Signature:
        """The method's signature without its first parameter, as Python binds it."""
        signature = inspect.signature(self._wrapper)
        return signature.replace(parameters=tuple(signature.parameters.values())[1:])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BoundMethod) and self._wrapper is other._wrapper
                and self.__self__ is other.__self__)

    def __hash__(self) -> int:
        return hash((id(self._wrapper), id(self.__self__)))

    def __repr__(self) -> str:
        return f"<bound cached {self._wrapper.__qualname__} of {self.__self__!r}>"


class CachedMethod:
    """Descriptor for a cached method: ``obj.m.invalidate(x)`` passes ``obj`` like ``obj.m(x)``."""

    def __init__(self, wrapper: Callable[..., Any], per_call: frozenset[str] = PER_CALL) -> None:
        self.wrapper = wrapper
        self.per_call = per_call
        functools.update_wrapper(self, wrapper)
        # update_wrapper points __wrapped__ at the wrapper, which goes through the cache: the
        # undecorated function is the wrapper's own __wrapped__.
        self.__wrapped__ = getattr(wrapper, "__wrapped__", wrapper)

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self.wrapper if obj is None else BoundMethod(self.wrapper, obj, self.per_call)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapper(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapper, name)


class CachedClassMethod(CachedMethod):
    """Descriptor for a cached classmethod: binds the class whether reached by class or object."""

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return BoundMethod(self.wrapper, owner if owner is not None else type(obj),
                           self.per_call)
