"""A registry closed a second time (a ``with`` block around an explicit ``close()``, a
framework's shutdown hook after the application's own, a test fixture after the test) stays
closed: looking at what its write-behind queues still hold must not bind the functions
again, which started every background worker anew after the close, polling Redis for good."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from typing import Any

from cachedeco import Registry
from tests.support.commands import BOOKKEEPING, commandstats, ran
from tests.support.polling import poll
from tools.servers import Server


def _functions(reg: Registry, flushed: list[Any], *, is_async: bool) -> tuple[Any, Any]:
    if is_async:
        @reg.cached(ttl=60)
        async def aget(x: int) -> int | None:
            return None

        async def aflush(records: list[Any]) -> None:
            flushed.extend(records)

        @reg.write_behind(aget, flush=aflush, flush_interval=0.05)
        async def aput(x: int) -> int:
            return x

        return aget, aput

    @reg.cached(ttl=60)
    def get(x: int) -> int | None:
        return None

    @reg.write_behind(get, flush=flushed.extend, flush_interval=0.05)
    def put(x: int) -> int:
        return x

    return get, put


def _workers() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("cachedeco"))


def _silent(server: Server) -> dict[str, int]:
    """What the server ran in the second after the closes (nothing, closed)."""
    admin = server.processes[0].client()
    before = commandstats(admin)
    time.sleep(1.0)
    return ran(before, commandstats(admin), ignore=BOOKKEEPING)


def test_a_registry_closed_twice_stays_closed(fresh_redis: Server, prefix: str) -> None:
    before = _workers()
    reg = Registry(fresh_redis.url, prefix=prefix, stats_interval=0)
    flushed: list[Any] = []
    get, put = _functions(reg, flushed, is_async=False)
    assert put(1) == 1 and get(1) == 1
    reg.close()
    assert flushed == [1]
    reg.close()
    assert _silent(fresh_redis) == {}
    poll(lambda: _workers() == before, timeout=5.0)


def test_a_registry_closed_twice_from_asyncio_stays_closed(fresh_redis: Server,
                                                           prefix: str) -> None:
    before = _workers()
    reg = Registry(fresh_redis.url, prefix=prefix, stats_interval=0)
    flushed: list[Any] = []

    async def main() -> None:
        get, put = _functions(reg, flushed, is_async=True)
        assert await put(1) == 1 and await get(1) == 1
        await reg.aclose()
        assert flushed == [1]
        await reg.aclose()

    asyncio.run(main())
    assert _silent(fresh_redis) == {}
    poll(lambda: _workers() == before, timeout=5.0)


CLOSING_AT_FORK = """
import os, sys, threading, warnings
warnings.simplefilter("ignore")  # fork() of a threaded process warns on Python 3.12+
import cachedeco

url, prefix = sys.argv[1:3]
reg = cachedeco.Registry(url, prefix=prefix, stats_interval=0)
inside, release = threading.Event(), threading.Event()

def flush(records):
    inside.set()
    release.wait(10)

@reg.write_behind(key="cf:{n}", flush=flush, flush_interval=3600)
def record(n: int) -> dict:
    return {"n": n}

record(1)
closing = threading.Thread(target=reg.close)
closing.start()
assert inside.wait(10)  # another thread is inside close() at the fork
pid = os.fork()
if pid == 0:
    @reg.cached(ttl=60, key="cg:{x}")
    def get(x: int) -> int:
        return x

    get(1)  # the child's first binding: its services start
    print(sorted(t.name for t in threading.enumerate() if t.name.startswith("cachedeco")),
          flush=True)
    os._exit(0)
os.waitpid(pid, 0)
release.set()
closing.join()
"""


def test_a_child_forked_while_its_parent_closed_the_registry_starts_its_services(
        redis_url: str, prefix: str) -> None:
    """A close() under way in another thread at the fork is not the child's: its bindings
    there start the services as in any child (they started none: the child had inherited
    the count of closes under way, which no thread of it would ever end)."""
    done = subprocess.run([sys.executable, "-c", CLOSING_AT_FORK, redis_url, prefix],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "cachedeco-write-behind:__main__.record" in done.stdout, done.stdout + done.stderr
