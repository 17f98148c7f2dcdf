"""A process reading a near-cached function in a loop, for the cross-process near cache tests
(``python -m tests.support.near_reader URL PREFIX MODE``; stop it with a line on stdin).

The function ``item(x)`` returns the integer at the plain key ``PREFIX-src:x`` (the "database"),
cached under ``PREFIX:item:x`` with the tag ``item:x``, the same definition the tests use.

- ``watch``: reads ``item(1)``; prints ``{"v": value}`` when the value it returns changes, then
  ``{"v": value, "near": true}`` once it has served that value from the near cache.
- ``stress``: reads ``item(x)`` for ``x`` in 0..3 in turn; when stopped prints every read as
  ``[x, value, start]`` (``start``: ``time.time()`` before the call), and its stats.
- ``stress-many``: the same through ``items([x, x + 1])``, a ``@cached_many`` function over
  the same entries (one read per id of each call, all with the call's start).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import redis

import cachedeco

__all__ = ["define"]


def define(reg: cachedeco.Registry, raw: redis.Redis, prefix: str) -> Any:
    """The ``item`` function on ``reg`` (the tests define theirs with this too)."""

    @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def item(x: int) -> int:
        return int(raw.get(f"{prefix}-src:{x}") or 0)

    return item


def define_many(reg: cachedeco.Registry, raw: redis.Redis, prefix: str) -> Any:
    """``items(ids)``: ``item`` for many ids in one call, over the same entries."""

    @reg.cached_many(ttl=60, key="item:{id}", tags=["item:{id}"])
    def items(ids: list[int]) -> dict[int, int]:
        return {x: int(raw.get(f"{prefix}-src:{x}") or 0) for x in ids}

    return items


def main() -> None:
    url, prefix, mode = sys.argv[1:4]
    reg = cachedeco.Registry(url, prefix=prefix, near_cache=1000, stats_interval=0)
    raw = redis.Redis.from_url(url)
    item = define(reg, raw, prefix)
    items = define_many(reg, raw, prefix)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    reads: list[tuple[int, int, float]] = []
    last, near_seen, x = None, False, 0
    while not stop.is_set():
        if mode == "watch":
            before = item.stats().near_hits
            value = item(1)
            if value != last:
                print(json.dumps({"v": value}), flush=True)
                last, near_seen = value, False
            elif not near_seen and item.stats().near_hits > before:
                print(json.dumps({"v": value, "near": True}), flush=True)
                near_seen = True
            time.sleep(0.0002)
        else:
            start = time.time()
            if mode == "stress":
                reads.append((x, item(x), start))
            else:
                reads.extend((i, v, start) for i, v in items([x, (x + 1) % 4]).items())
            x = (x + 1) % 4
            if len(reads) % 8 == 0:
                time.sleep(0.0005)
    stats = item.stats() if mode != "stress-many" else items.stats()
    print(json.dumps({"reads": reads, "near_hits": stats.near_hits, "hits": stats.hits}),
          flush=True)
    reg.close()


if __name__ == "__main__":
    main()
