"""Following Sentinel's primary between two failovers a process would not otherwise notice.

When the sentinels move the primary while the old one still runs (an operator's ``SENTINEL
FAILOVER``, or a primary they wrongly judged down), the old primary keeps accepting writes
until they demote it, about ten seconds later; then it drops them. redis-py asks the sentinels
only when it opens a connection, so a busy pool keeps writing to the old primary that whole
time: every change made then is lost, and the value it replaced is served again until it
expires. A :class:`PrimaryWatch` asks every sentinel every :data:`INTERVAL` seconds in a daemon
thread, and at once when one of them publishes that it switched
(:mod:`~cachedeco.backends.redis.sentinel_push`). When the newest configuration among their
answers names another primary, it bumps ``epoch``: the pools
(:mod:`~cachedeco.backends.redis.pools`) check it on every checkout, move their connections
over and connect where the watch says from then on (not where the first sentinel to answer
says). Just before, it tells its ``before_move`` listeners (the registry then serves none of
the backend's entries until it knows whether the new primary's data went back). It tells its
other listeners at once and a few times over the next seconds (:data:`ECHOES`): auto-recovery
applies the changes of the last seconds again, since the old primary may have lost them. A
failover the sentinels have not finished is not seen here: until they name the new primary,
nobody can. While connections are being opened (a primary that stopped answering, say) the
watch asks every :data:`FAST` seconds instead, for :data:`HURRIED_FOR` seconds: a failover's
new primary is then followed within that time, before an old primary restarted empty can take
the changes meant for the new one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import redis
import redis.sentinel

from cachedeco.backends.base import ConnectionOptions
from cachedeco.backends.redis.sentinel_push import listen_for_switches
from cachedeco.backends.redis.urls import parse_url, sentinel_settings
from cachedeco.core.forking import redo_after_fork
from cachedeco.core.logs import say

__all__ = ["INTERVAL", "PrimaryWatch"]

INTERVAL: Final = 0.5  # seconds between two questions to the sentinels
#: When the listeners are told of a move, in seconds after the watch saw it: at once, then
#: again for the changes that were in flight (sent to the old primary, which may have been
#: restarted empty before its REPLICAOF, and noted as landed only after the move was told:
#: a busy process's thread may take a while to note its reply). Each tell applies again what
#: landed since the last one: a few more misses, once per failover.
ECHOES: Final = (0.0, 0.25, 1.0, 2.5)
FAST: Final = 0.05  # seconds between two questions while connections are being opened
HURRIED_FOR: Final = 5.0  # seconds of FAST questions after a connection was opened


class PrimaryWatch:
    """The primary a Sentinel service has now, asked every :data:`INTERVAL` seconds."""

    def __init__(self, url: str, options: ConnectionOptions, prefix: str | None = None
                 ) -> None:
        target = parse_url("sentinel", url)
        self._prefix = prefix  # the registry's, for log lines
        kwargs = options.redis_kwargs()
        self._service = target.service
        self._sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(target.hosts), sentinel_kwargs=sentinel_settings(kwargs))
        #: The primary last named, and how many times it changed (the pools' cue).
        self.address: tuple[str, int] | None = None
        self.epoch = 0
        self._config = 0  # the sentinels' config epoch of ``address``
        self._listeners: list[Callable[[], None]] = []
        self._before: list[Callable[[int], None]] = []  # told before any connection moves
        self._echo_at: list[float] = []  # when to tell the listeners next (monotonic)
        self._stop = threading.Event()
        self._nudge = threading.Event()  # set by hurry(): ask now
        self._hurried = 0.0  # monotonic time until which the questions are FAST
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._checking = threading.Lock()  # the thread's rounds and a new pool's question
        redo_after_fork(self)  # a pre-forking server's workers watch on their own

    def listen(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (in the watch's thread) when the primary changed."""
        self._listeners.append(listener)

    def before_move(self, listener: Callable[[int], None]) -> None:
        """Call ``listener`` with the new epoch when the primary changed, before ``epoch``
        moves (so before any pool's connection follows it), in the thread that saw it."""
        self._before.append(listener)

    def start(self) -> None:
        """Start watching, once per process."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="cachedeco-primary-watch")
                self._thread.start()
                listen_for_switches(self._sentinel.sentinels, self._service, self._pushed,
                                    self._stop)

    def _pushed(self) -> None:
        """A sentinel said it switched this service's primary: ask the sentinels now."""
        self._nudge.set()

    def hurry(self) -> None:
        """A connection is being opened: the primary may have failed, so ask the sentinels
        every FAST seconds for a while (once an outage's failover is done, its new primary
        is followed within FAST seconds, not INTERVAL)."""
        if self._thread is None:  # the registry was closed, and is used again
            self.start()
        hurried = self._hurried
        self._hurried = time.monotonic() + HURRIED_FOR
        if hurried < time.monotonic():
            self._nudge.set()

    def check(self) -> bool:
        """Ask every sentinel once (each round of the watch's thread, and a new pool's first
        question); True when the newest configuration among their answers
        (the highest config epoch) names another primary than before. Sentinels learn of a
        failover seconds apart, and the first one to answer may not know yet: asking one
        (as redis-py does) can move back to the old primary, which still runs."""
        with self._checking:
            return self._check()

    def _check(self) -> bool:
        best: tuple[int, tuple[str, int]] | None = None
        named: set[tuple[str, int]] = set()
        answers = 0
        for sentinel in self._sentinel.sentinels:
            try:
                masters: Any = sentinel.sentinel_masters()
                state = masters.get(self._service)
            except (redis.RedisError, OSError):
                continue
            if not state or not state["is_master"] or state["is_sdown"] or state["is_odown"]:
                continue
            if _FAILING_OVER in _flags(state):
                # the sentinel leading a failover: from the promotion until it switches over
                # it names the old primary with the new config epoch (the others already
                # name the new one, from its hello messages)
                continue
            found = (int(state.get("config-epoch", 0)), (str(state["ip"]), int(state["port"])))
            named.add(found[1])
            answers += 1
            if best is None or found[0] > best[0]:
                best = found
        everyone = len(named) == 1 and answers == len(self._sentinel.sentinels)
        if best is None or (best[0] < self._config and not everyone):
            # no answer, or sentinels that have not heard of the last failover yet (an older
            # configuration is taken when every sentinel names it: sentinels set up anew)
            return False
        self._config, address = best
        if self.address is None or address == self.address:
            self.address = address
            return False
        say(self._prefix, logging.WARNING, "Sentinel service %r moved its primary from %s:%d "
            "to %s:%d; following it", self._service, *self.address, *address)
        for listener in list(self._before):
            try:
                listener(self.epoch + 1)
            except Exception:  # a listener's fault must not stop the move
                say(self._prefix, logging.ERROR, "a primary-change listener failed",
                    exc_info=True)
        self.address, self.epoch = address, self.epoch + 1
        seen = time.monotonic()  # the watch's thread tells the listeners (see ECHOES)
        self._echo_at = [seen + after for after in ECHOES]
        return True

    def _run(self) -> None:
        stop, nudge = self._stop, self._nudge
        while not stop.is_set():
            nudge.clear()  # a nudge from now on asks again: one during this round is kept
            self.check()
            if self._due():
                for listener in list(self._listeners):
                    try:
                        listener()
                    except Exception:  # a listener's fault must not stop the watch
                        say(self._prefix, logging.ERROR, "a primary-change listener failed",
                            exc_info=True)
            if stop.wait(FAST):
                break
            if time.monotonic() >= self._hurried:
                nudge.wait(INTERVAL - FAST)  # woken early by hurry() or a sentinel's word
        self._close_sentinels()  # stopped (closed, or abandoned: nobody closes them after)

    def _due(self) -> bool:
        """Whether the listeners are to be told now: a move was seen, or one of its echoes
        is due (each told once, however late the round)."""
        now = time.monotonic()
        with self._checking:  # check() sets the times anew: never lose a move's
            due = [at for at in self._echo_at if at <= now]
            self._echo_at = [at for at in self._echo_at if at > now]
        return bool(due)

    def after_fork(self) -> None:
        """In a forked child: no thread came along; one is started if the parent watched."""
        watched = self._thread is not None and not self._stop.is_set()
        self._stop = threading.Event()
        self._nudge, self._hurried = threading.Event(), 0.0
        self._thread, self._echo_at = None, []
        if watched:
            self.start()

    def abandon(self) -> None:
        """Its backend was dropped without being closed (collected): stop the thread without
        waiting for it; it closes its connections to the sentinels as it ends."""
        self._stop.set()
        self._nudge.set()

    def _close_sentinels(self) -> None:
        for sentinel in self._sentinel.sentinels:
            with contextlib.suppress(redis.RedisError, OSError):
                sentinel.close()

    def close(self, *, final: bool = False) -> None:
        """Stop the thread and close the connections to the sentinels; a connection opened
        later starts it again (a registry used after ``close()``), unless ``final``."""
        self._stop.set()
        self._nudge.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._close_sentinels()
        if not final:
            with self._lock:  # a registry used again after close() watches again
                self._thread, self._stop = None, threading.Event()


_FAILING_OVER: Final = "failover_in_progress"


def _flags(state: dict[str, Any]) -> set[str] | frozenset[str]:
    """The flags of a ``SENTINEL MASTERS`` answer: a comma-separated string in RESP2, a set
    in RESP3."""
    flags = state.get("flags", "")
    if isinstance(flags, str):
        return set(flags.split(","))
    return frozenset(flags)
