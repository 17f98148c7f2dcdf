"""What a Redis server ran, and clean-up: ``INFO commandstats`` snapshots and sweeping a
test's prefix (SCAN + UNLINK; the tests never run KEYS, FLUSHDB or FLUSHALL).

Command counts are server-wide: take a snapshot before and after the code under test and
compare (:func:`ran`). The tests run one at a time, so nothing else runs in between.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from redis.cluster import RedisCluster

__all__ = ["BEATS", "BOOKKEEPING", "NOT_OURS", "acommandstats", "commandstats", "ran",
           "sweep_prefix"]

#: Commands a client sends for itself (connecting, discovering slots, loading scripts).
BOOKKEEPING = frozenset({"info", "cluster|slots", "cluster|shards", "cluster|nodes", "command",
                         "client|setinfo", "hello", "ping", "script|load"})


def _calls(info: Mapping[str, Any]) -> Counter[str]:
    """``{"get": 10, ...}`` from a parsed ``INFO commandstats``."""
    return Counter({key.removeprefix("cmdstat_"): int(value["calls"])
                    for key, value in info.items()
                    if key.startswith("cmdstat_") and isinstance(value, dict)})


def commandstats(client: Any) -> dict[str, int]:
    """Calls per command since start, e.g. ``{"get": 10, "mget": 3}`` (subcommands appear as
    ``"client|setinfo"``). ``client`` is a sync ``redis.Redis``, or a ``RedisCluster``: then
    the counts are summed over every primary, each asked on its own connection."""
    if isinstance(client, RedisCluster):
        total: Counter[str] = Counter()
        for node in client.get_primaries():
            total.update(_calls(client.get_redis_connection(node).info("commandstats")))
        return dict(total)
    return dict(_calls(client.info("commandstats")))


async def acommandstats(client: Any) -> dict[str, int]:
    """:func:`commandstats` of a ``redis.asyncio.Redis``."""
    return dict(_calls(await client.info("commandstats")))


#: Commands other clients send to a server under test: Sentinels ``PUBLISH`` their hello
#: messages to the primary every 2 s (cachedeco never publishes), and a replica acknowledges
#: its offset to the primary every second (``REPLCONF ACK``; ``PSYNC`` when it reconnects).
NOT_OURS = frozenset({"publish", "replconf", "psync", "sync"})
#: Each process's lineage beat (``INCR prefix:~lineage``, one a second whatever the calls:
#: cachedeco sends INCR for nothing else), left out of every count like :data:`NOT_OURS`.
BEATS = frozenset({"incr"})


def ran(before: dict[str, int], after: dict[str, int], *,
        ignore: frozenset[str] = frozenset({"info"})) -> dict[str, int]:
    """The commands run between two snapshots (those in ``ignore``, :data:`NOT_OURS` and
    :data:`BEATS` left out)."""
    return {name: n - before.get(name, 0) for name, n in after.items()
            if name not in ignore and name not in NOT_OURS and name not in BEATS
            and n != before.get(name, 0)}


def sweep_prefix(client: Any, prefix: str) -> int:
    """UNLINK the keys ``prefix*`` and ``{prefix}*`` (SCAN, never KEYS); returns how many.

    ``client`` is a sync ``redis.Redis`` or ``RedisCluster`` (whose SCAN covers every primary;
    its keys are unlinked one at a time, as they may lie in different slots).
    """
    deleted = 0
    one_by_one = isinstance(client, RedisCluster)
    for pattern in (f"{prefix}*", f"{{{prefix}}}*"):
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if one_by_one or len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    return deleted
