"""The failure policy: which errors count as backend faults, a circuit breaker, and rate-limited
logging, so a slow or dead backend costs each call at most one bounded timeout and, while the
breaker is open, nothing at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Final

from cachedeco.core.forking import redo_after_fork
from cachedeco.core.logs import say
from cachedeco.core.stats import Stats
from cachedeco.errors import BackendError, ConfigurationError

__all__ = ["CLUSTER_GRACE", "LOG_INTERVAL", "Breaker", "Guard", "LogLimit", "warn"]

LOG_INTERVAL: Final = 10.0  # seconds between two warnings of one guard
#: The ``grace`` of a Redis Cluster backend's breaker: while one primary fails over, runs of
#: failures come by chance (5 in a row are likely when a third of the keys fail) and would
#: skip every primary, sending every call to the database; in a busy process the calls the
#: other primaries answer end those runs well within a second. (Calls that fail slowly one
#: after another can still make a run last one: the breaker counts per backend, not per node.)
CLUSTER_GRACE: Final = 1.0


class LogLimit:
    """At most one line per ``interval`` seconds for one subject; counts what it held back."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._last = -interval
        self._held = 0
        self._lock = threading.Lock()

    def allow(self) -> int | None:
        """None: stay quiet now; else the number of lines held back since the last one."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval:
                self._held += 1
                return None
            held, self._held, self._last = self._held, 0, now
            return held


_limits: dict[str, LogLimit] = {}
_SUBJECTS: Final = 1024  # distinct subjects remembered (the oldest are forgotten)


def warn(subject: str, message: str, *args: object, level: int = logging.WARNING,
         prefix: str | None = None) -> None:
    """Log ``message % args`` at most once per LOG_INTERVAL per ``subject`` (e.g. the kind
    of warning and the function), saying how many were held back: a fault repeated on every
    call is a line now and then, not a line per call. ``prefix``: the registry's (see
    :func:`.say`)."""
    limit = _limits.get(subject)
    if limit is None:
        if len(_limits) >= _SUBJECTS:
            _limits.pop(next(iter(_limits)), None)
        limit = _limits.setdefault(subject, LogLimit())
    held = limit.allow()
    if held is not None:
        say(prefix, level, message + (f" ({held} similar suppressed)" if held else ""), *args)


class Breaker:
    """Opens after ``threshold`` failures in a row (that have lasted ``grace`` seconds, on Redis
    Cluster); after ``cooldown`` lets one probe through.
    One per backend of a registry, shared by every guard over that backend, as is its
    ``log`` limit: an outage logs a line per backend now and then, not one per function.
    ``explain(exc)`` says when a fault is the backend's configuration rather than an outage
    (a server too old: see ``BackendSlot.server_problem``)."""

    def __init__(self, threshold: int = 5, cooldown: float = 5.0,
                 explain: Callable[[BaseException], str | None] | None = None,
                 grace: float = 0.0) -> None:
        self.log = LogLimit()
        self.explain = explain
        self.threshold = threshold
        self.cooldown = cooldown
        #: Seconds a run of failures must also last, without a success, before it opens:
        #: on Redis Cluster, one primary failing over fails a share of the calls, whose
        #: successes on the other primaries cut the runs short (see CLUSTER_GRACE).
        self.grace = grace
        #: Called (no lock held) when a call works after failures: the backend answers again.
        self.on_back: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self.after_fork()
        redo_after_fork(self)

    def after_fork(self) -> None:
        """Closed, as in a child that forked: its parent's failures (a pre-fork server's
        master, which makes no more calls, keeps an outage's open breaker for good) and its
        probe (taken by a thread the child does not have) are not the child's."""
        self._failures = 0
        self._opened_at = 0.0
        #: When the current run of failures began (monotonic; None while calls work).
        self.failing_since: float | None = None
        self.last_failure = float("-inf")  # when a call last failed or was skipped (monotonic)
        self._probing = False

    def allow(self) -> bool:
        """Whether a call may use the backend now (closed, or the one half-open probe)."""
        if self._failures < self.threshold:
            return True
        with self._lock:
            if self._probing or time.monotonic() - self._opened_at < self.cooldown:
                self.last_failure = time.monotonic()  # a call skipped fails as one sent would
                return False
            self._probing = True
            return True

    def open(self) -> bool:
        """Whether the backend is skipped now (open, cooldown running); unlike :meth:`allow`
        it never takes the half-open probe, so a caller that is not a probe can ask."""
        return self._failures >= self.threshold and (
            time.monotonic() - self._opened_at < self.cooldown)

    def success(self) -> None:
        """A call worked: close the breaker (after failures: tell ``on_back``)."""
        if self._failures:
            with self._lock:
                self._failures = 0
                self._probing = False
                self.failing_since = None
            if self.on_back is not None:
                self.on_back()

    def failure(self) -> None:
        """A call failed: count it, and (re)open the breaker past the threshold (once the run
        has lasted ``grace``)."""
        with self._lock:
            now = self.last_failure = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
            self._failures += 1
            self._probing = False
            if self._failures >= self.threshold:
                if now - self.failing_since < self.grace:  # too short a run yet
                    self._failures = self.threshold - 1
                else:
                    self._opened_at = now


class Guard:
    """A failure policy over one backend's breaker, counting into one Stats (a function's or
    the registry's): fallback or raise, with a rate-limited log."""

    def __init__(self, name: str, stats: Stats, *, raise_errors: bool,
                 breaker: Breaker | None = None, prefix: str | None = None) -> None:
        self.name = name  # the backend's name in the registry
        self.prefix = prefix  # the registry's, for its log lines
        self.stats = stats
        self.raise_errors = raise_errors
        self.breaker = breaker or Breaker()

    def allow(self, key: str | None = None, function: str | None = None) -> bool:
        """False (or BackendError under on_error="raise") while the breaker is open."""
        if self.breaker.allow():
            return True
        self.stats.backend_errors += 1
        if self.raise_errors:
            raise BackendError(f"backend {self.name!r} is skipped: circuit breaker open",
                               key=key, function=function)
        return False

    def withheld(self, key: str, function: str) -> None:
        """An entry auto-recovery holds back is not served: nothing to count under
        on_error="fallback" (the change's own failure was); BackendError under "raise"."""
        if self.raise_errors:
            self.stats.backend_errors += 1
            raise BackendError(f"backend {self.name!r} holds a change of this entry that "
                               "auto-recovery has not landed yet: it is not served until then",
                               key=key, function=function)

    def absorb(self, exc: BaseException, *, key: str | None = None,
               function: str | None = None, action: str = "call") -> None:
        """Record a fault the caller can fall back from: count and log it, or raise
        BackendError under on_error="raise"."""
        self._configured(exc)
        self.breaker.failure()
        self.stats.backend_errors += 1
        self._log(exc, function=function, action=action)
        if self.raise_errors:
            raise self._error(exc, key, function, action) from exc

    def kept(self, exc: BaseException | None, *, key: str | None = None,
             function: str | None = None, action: str = "call") -> None:
        """Record a fault whose change auto-recovery keeps and retries (it logs the outage;
        ``exc`` None: the breaker was open): count it, and raise BackendError under
        on_error="raise"."""
        if exc is not None:
            self._configured(exc)
            self.breaker.failure()
        self.stats.backend_errors += 1
        if self.raise_errors:
            why = "circuit breaker open" if exc is None else f"{type(exc).__name__}: {exc}"
            raise BackendError(f"backend {self.name!r} failed to {action}: {why}", key=key,
                               function=function) from exc

    def error(self, exc: BaseException, *, key: str | None = None,
              function: str | None = None, action: str = "call") -> BackendError:
        """Record a fault the caller cannot fall back from, and return the BackendError it
        raises (``raise guard.error(exc, …) from exc``); a server too old raises
        ConfigurationError instead, as every method here does."""
        self._configured(exc)
        self.breaker.failure()
        self.stats.backend_errors += 1
        return self._error(exc, key, function, action)

    def _configured(self, exc: BaseException) -> None:
        """A fault that no retry or fallback mends (the server is too old) is a
        ConfigurationError saying so, never a backend fault logged now and then."""
        explain = self.breaker.explain
        problem = None if explain is None else explain(exc)
        if problem is not None:
            raise ConfigurationError(f"backend {self.name!r}: {problem}") from exc

    def _error(self, exc: BaseException, key: str | None, function: str | None,
               action: str) -> BackendError:
        return BackendError(f"backend {self.name!r} failed to {action}: "
                            f"{type(exc).__name__}: {exc}", key=key, function=function)

    def _log(self, exc: BaseException, *, function: str | None, action: str) -> None:
        """Warn at most once per LOG_INTERVAL per backend; keys stay out of logs (they carry
        arguments)."""
        suppressed = self.breaker.log.allow()
        if suppressed is None:
            return
        say(self.prefix, logging.WARNING,
            "backend %r failed to %s%s: %s: %s%s",
            self.name, action, "" if function is None else f" (function={function})",
            type(exc).__name__, exc,
            f" ({suppressed} similar errors suppressed)" if suppressed else "",
        )
