"""Checks every decorator runs when it is applied: a bad argument is a ConfigurationError at
import time, not at the first call."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

from cachedeco.api.methods import PER_CALL, CachedClassMethod, CachedMethod
from cachedeco.core.codec.factory import make_codec
from cachedeco.errors import ConfigurationError
from cachedeco.runtime.registry import Registry

__all__ = [
    "beta",
    "check_flag",
    "check_placement",
    "check_serializer",
    "decorated_now",
    "method_form",
    "unwrap_callable",
]

_BOUND_SELF: Final = ("self", "cls")


def decorated_now(first: object, ttl: Any, what: str) -> tuple[Any, Any]:
    """A decorator's first positional argument sorted out: ``(function, ttl)`` when it is
    used bare (``@cached``, ``@reg.cached``: every keyword still applies), else
    ``(None, ttl)`` with a positional TTL (``@cached(60)``) taken as ``ttl``."""
    if isinstance(first, staticmethod | classmethod) or (
            callable(first) and not isinstance(first, timedelta)):
        return first, ttl
    if first is None:
        return None, ttl
    if ttl is not None:
        raise ConfigurationError(f"@{what} got two TTLs: {first!r} and ttl={ttl!r}")
    return None, first


def method_form(wrapper: Callable[..., Any], func: Callable[..., Any], kind: str | None, *,
                per_call: frozenset[str] = PER_CALL) -> Any:
    """What replaces the function: a staticmethod, a classmethod or method descriptor (which
    binds the instance for the call and for the ``per_call`` attributes), or the wrapper."""
    if kind == "staticmethod":
        return staticmethod(wrapper)
    if kind == "classmethod":
        return CachedClassMethod(wrapper, per_call)
    params = list(inspect.signature(func).parameters)
    if params and params[0] in _BOUND_SELF:
        return CachedMethod(wrapper, per_call)
    return wrapper


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


def check_placement(backend: object, registry: object) -> None:
    """``backend=`` is a name, ``registry=`` a Registry (and, when given, has that backend)."""
    if not isinstance(backend, str):
        raise ConfigurationError(f"backend must be a backend name, not {backend!r}")
    if registry is not None:
        if not isinstance(registry, Registry):
            raise ConfigurationError(f"registry must be a Registry, not {registry!r}")
        registry.slot(backend)


def check_flag(value: object, what: str) -> bool:
    """A bool, not something merely truthy (``sensitive="no"`` would turn protection on)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{what} must be True or False, not {value!r}")
    return value


def beta(early_refresh: object) -> float:
    if early_refresh is False or early_refresh is None:
        return 0.0
    if early_refresh is True:
        return 1.0
    if isinstance(early_refresh, int | float) and math.isfinite(early_refresh) and (
            early_refresh > 0):
        return float(early_refresh)
    raise ConfigurationError(f"early_refresh must be a bool or a beta > 0, not {early_refresh!r}")


def check_serializer(serializer: object) -> object:
    if serializer is None or serializer in ("orjson", "pickle"):
        return serializer
    if isinstance(serializer, str):
        raise ConfigurationError(f"unknown serializer {serializer!r}: use 'orjson', 'pickle' "
                                 "or an object with dumps() and loads()")
    make_codec(serializer, name="?")
    return serializer
