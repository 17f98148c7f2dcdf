"""The cachedeco exception hierarchy: every error the library raises derives from CacheError.

::

    Exception
     └── CacheError
          ├── BackendError                      the backend failed or timed out
          ├── SerializationError (+ TypeError)  a value could not be encoded
          ├── ConfigurationError (+ ValueError) a bad setting, caught as early as possible
          ├── LockTimeout (+ TimeoutError)      a lock was not acquired in time
          └── LockNotOwned                      a lock was released after its ttl ran out

Backend errors carry context (``key=``, ``function=``) and chain the client's exception with
``raise ... from exc`` so the root cause stays visible.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "CacheError",
    "ConfigurationError",
    "LockNotOwned",
    "LockTimeout",
    "SerializationError",
]


class CacheError(Exception):
    """Root of every cachedeco error.

    Args:
        message: What went wrong.
        key: The cache key concerned, if any (never an argument of a sensitive function).
        function: The function concerned (`module.qualname`), if any.
    """

    def __init__(self, message: str, *, key: str | None = None, function: str | None = None):
        self.key = key
        self.function = function
        context = [f"{name}={value!r}" for name, value in (("function", function), ("key", key))
                   if value is not None]
        super().__init__(f"{message} ({', '.join(context)})" if context else message)


class BackendError(CacheError):
    """The cache backend failed, timed out or is skipped by the open circuit breaker."""


class SerializationError(CacheError, TypeError):
    """A value could not be serialized (or a serializer is misconfigured)."""


class ConfigurationError(CacheError, ValueError):
    """A setting, a decorator argument or a backend spec is invalid."""


class LockTimeout(CacheError, TimeoutError):
    """A distributed lock was not acquired within its timeout."""


class LockNotOwned(CacheError):
    """A lock's ``ttl`` ran out before its owner released it: another owner may have held it
    meanwhile (or this owner never held it)."""
