"""The state of a distributed lock and the pieces its sync and asyncio acquisitions share;
the I/O is in ``_async/lock.py`` (and its generated sync twin)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from cachedeco.core.keyspace import LeaseName
from cachedeco.core.policy import check_ttl
from cachedeco.errors import BackendError, ConfigurationError, LockNotOwned, LockTimeout
from cachedeco.runtime.registry import Registry

__all__ = ["LockCore"]


class LockCore:
    """A lock's name, settings and held acquisitions (one per thread or task)."""

    def __init__(self, registry: Registry, name: str, *, ttl: float = 10.0,
                 timeout: float | None = None, backend: str = "default") -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a lock name must be a non-empty string, not {name!r}")
        if not isinstance(backend, str):
            raise ConfigurationError(f"backend must be a backend name, not {backend!r}")
        self.registry = registry
        self.name = name
        self.ttl = check_ttl(ttl, "ttl")
        self.timeout = None if timeout is None else check_ttl(timeout, "timeout",
                                                              allow_zero=True)
        self.backend = backend
        self._held: dict[object, Any] = {}  # owner (thread id or task) -> its lease

    @staticmethod
    def owner() -> object:
        """Who holds an acquisition made now: this thread."""
        return threading.get_ident()

    @staticmethod
    def aowner() -> object:
        """Who holds an acquisition made now: this task (or this thread outside one)."""
        return asyncio.current_task() or threading.get_ident()

    def lease_name(self) -> LeaseName:
        """The keys of this lock under the registry's prefix."""
        return self.registry.keyspace.lock(self.name)

    def error(self, exc: BaseException, action: str) -> BackendError:
        """The error for a backend fault while acquiring or releasing."""
        return BackendError(f"backend {self.backend!r} failed to {action} lock {self.name!r}: "
                            f"{type(exc).__name__}: {exc}")

    def timed_out(self) -> LockTimeout:
        """The error for an acquisition that ran out of time."""
        return LockTimeout(f"lock {self.name!r} was not acquired within {self.timeout} s")

    def not_owned(self) -> LockNotOwned:
        """The error for a release after the lock's ttl ran out."""
        return LockNotOwned(f"lock {self.name!r} expired (ttl {self.ttl} s) before its owner "
                            "released it; another owner may have held it meanwhile")
