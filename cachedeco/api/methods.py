"""Cached methods: descriptors that bind ``self`` (or the class) for the call and for the
per-call attributes, so ``obj.m.invalidate(x)`` names the entry ``obj.m(x)`` reads."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

__all__ = ["BoundMethod", "CachedClassMethod", "CachedMethod"]

_PER_CALL: Final = ("key", "invalidate", "refresh")


class BoundMethod:
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


class CachedMethod:
    """Descriptor for a cached method: ``obj.m.invalidate(x)`` passes ``obj`` like ``obj.m(x)``."""

    def __init__(self, wrapper: Callable[..., Any]) -> None:
        self.wrapper = wrapper
        functools.update_wrapper(self, wrapper)

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return self.wrapper if obj is None else BoundMethod(self.wrapper, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.wrapper(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapper, name)


class CachedClassMethod(CachedMethod):
    """Descriptor for a cached classmethod: binds the class whether reached by class or object."""

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        return BoundMethod(self.wrapper, owner if owner is not None else type(obj))


