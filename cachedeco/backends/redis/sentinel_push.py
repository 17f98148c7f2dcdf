"""The sentinels' word that they switched primaries, heard as it is said.

A sentinel publishes ``+switch-master <service> <old ip> <old port> <new ip> <new port>`` on
its own pub/sub when it names another primary (the one that led the failover as it ends it,
the others as they learn of it). One daemon thread per sentinel listens, and wakes the
:class:`~cachedeco.backends.redis.primary_watch.PrimaryWatch`, which then asks the sentinels
at once instead of at its next round: the processes of a service follow a switchover within
milliseconds of one another, not within half a second, and that is how long readers already
on the new primary can be served what a writer still on the old one changed. The message
only wakes the watch: what it follows is decided by the sentinels' answers, as always, and its
rounds go on (a message is missed while a sentinel restarts, or its connection is lost).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import redis

__all__ = ["CHANNEL", "listen_for_switches"]

CHANNEL: Final = "+switch-master"
WAIT: Final = 0.5  # the longest wait for a message: how soon a stopped listener notices
AGAIN: Final = 1.0  # seconds before a lost subscription is made again


def listen_for_switches(sentinels: Sequence[Any], service: str, heard: Callable[[], None],
                        stop: threading.Event) -> list[threading.Thread]:
    """Start one listener per sentinel, calling ``heard`` when ``service`` switched; each
    ends within :data:`WAIT` seconds of ``stop``."""
    threads = [threading.Thread(target=_listen, args=(sentinel, service, heard, stop),
                                daemon=True, name="cachedeco-sentinel-push")
               for sentinel in sentinels]
    for thread in threads:
        thread.start()
    return threads


def _listen(sentinel: Any, service: str, heard: Callable[[], None],
            stop: threading.Event) -> None:
    """One sentinel's messages, on a client of the thread's own (the watch closes the
    sentinels' clients when it stops: never under a read of this thread)."""
    prefix = f"{service} ".encode()
    while not stop.is_set():
        client: Any = None
        try:
            client = own_client(sentinel)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(CHANNEL)
            while not stop.is_set():
                message = pubsub.get_message(timeout=WAIT)
                data = message.get("data") if message else None
                if isinstance(data, str):
                    data = data.encode()
                if isinstance(data, bytes) and data.startswith(prefix):
                    heard()
        except Exception:  # a sentinel down, restarting, refusing SUBSCRIBE: the rounds
            pass  # go on, and this listener tries again
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        stop.wait(AGAIN)


def own_client(sentinel: Any) -> redis.Redis:
    """A client to the same sentinel, with the same settings (TLS too), and a pool of its
    own."""
    pool = sentinel.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **pool.connection_kwargs))
