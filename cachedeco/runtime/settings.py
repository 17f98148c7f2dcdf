"""A registry's settings, checked as a whole before any of them applies.

:func:`check_settings` validates every argument of ``Registry(...)``/``configure()`` and
returns them normalised (TTLs in seconds, the keyring built, the connection options split
from the policy options), or raises ConfigurationError: ``configure()`` changes nothing when
one is bad.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from cachedeco.backends.base import ConnectionOptions
from cachedeco.backends.redis.urls import refused_option
from cachedeco.core.codec.factory import make_codec
from cachedeco.core.keyring import Keyring, make_keyring
from cachedeco.core.keyspace import check_prefix
from cachedeco.core.policy import check_jitter, check_ttl
from cachedeco.errors import ConfigurationError
from cachedeco.runtime.report import INTERVAL

__all__ = ["ON_ERROR", "EncryptionKey", "Settings", "check_count", "check_settings"]

#: ``encryption_key=``: a key (str or bytes, at least 32 bytes), ``[current, older, …]``, or None.
EncryptionKey = str | bytes | list[str | bytes] | tuple[str | bytes, ...] | None

ON_ERROR: Final = ("fallback", "raise")
_OPTION_NAMES: Final = ("socket_timeout", "socket_connect_timeout", "max_connections",
                        "pool_timeout", "maxsize")
_POLICY_NAMES: Final = ("tag_ttl", "breaker_threshold", "breaker_cooldown", "stats_interval")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of a registry, checked and normalised."""

    prefix: str
    ttl: float
    jitter: float
    serializer: object
    secret: str | bytes | None
    on_error: str
    lock_timeout: float
    keyring: Keyring | None
    options: ConnectionOptions
    tag_ttl: float
    stats_interval: float
    breaker_threshold: int
    breaker_cooldown: float


def check_settings(*, prefix: str, ttl: float | timedelta, jitter: float, serializer: object,
                   secret: str | bytes | None, on_error: str, lock_timeout: float,
                   near_cache: int, encryption_key: EncryptionKey,
                   backend_options: Mapping[str, Any]) -> Settings:
    """The arguments of ``Registry(...)`` checked, or ConfigurationError naming the bad one."""
    check_prefix(prefix)
    if on_error not in ON_ERROR:
        raise ConfigurationError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if serializer == "pickle" and not secret:
        raise ConfigurationError('serializer="pickle" requires secret= (payloads are signed)')
    make_codec(serializer, name="registry", secret=secret)  # checks the serializer now
    options = connection_options(backend_options, check_count(near_cache, "near_cache", 0))
    return Settings(
        prefix=prefix, ttl=check_ttl(ttl), jitter=check_jitter(jitter),
        serializer=serializer, secret=secret, on_error=on_error,
        lock_timeout=check_ttl(lock_timeout, "lock_timeout"),
        keyring=make_keyring(encryption_key), options=options,
        tag_ttl=check_ttl(backend_options.get("tag_ttl", 3600.0), "tag_ttl"),
        stats_interval=check_ttl(backend_options.get("stats_interval", INTERVAL),
                                 "stats_interval", allow_zero=True),
        breaker_threshold=check_count(backend_options.get("breaker_threshold", 5),
                                      "breaker_threshold"),
        breaker_cooldown=check_ttl(backend_options.get("breaker_cooldown", 5.0),
                                   "breaker_cooldown"))


def connection_options(given: Mapping[str, Any], near_cache: int = 0) -> ConnectionOptions:
    """Connection options: ours, checked, plus redis-py connection keywords passed on."""
    known = {k: v for k, v in given.items() if k in _OPTION_NAMES}
    extra = {k: v for k, v in given.items() if k not in _OPTION_NAMES and k not in _POLICY_NAMES}
    unknown = sorted(set(extra) - _redis_keywords() - {"sentinel_kwargs"})
    if unknown:
        raise ConfigurationError(
            f"unknown registry option(s) {unknown}: expected one of "
            f"{sorted(_OPTION_NAMES + _POLICY_NAMES)} or a redis-py connection keyword")
    for name in ("socket_timeout", "socket_connect_timeout", "pool_timeout"):
        if name in known:
            known[name] = check_ttl(known[name], name)
    for name in ("max_connections", "maxsize"):  # checked even where no backend uses them
        if name in known:
            known[name] = check_count(known[name], name)
    if not isinstance(extra.get("sentinel_kwargs", {}), dict):
        raise ConfigurationError("backend option sentinel_kwargs: the sentinels' connection "
                                 "keywords, a dict")
    for name, value in extra.items():
        reason = refused_option(name, value)
        if reason:
            raise ConfigurationError(f"backend option {name}={value!r}: {reason}")
    return ConnectionOptions(**known, near_cache=near_cache, extra=extra)


def check_count(value: object, what: str, least: int = 1) -> int:
    """An int >= ``least`` (not a bool), else ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(f"{what} must be an int >= {least}, not {value!r}")
    return value


@functools.cache
def _redis_keywords() -> frozenset[str]:
    """The keywords a redis-py client accepts (passwords, TLS options and such)."""
    import redis

    names = set(inspect.signature(redis.Redis.__init__).parameters)
    return frozenset(names - {"self", "host", "port", "db", "connection_pool", "retry"})
