"""The near cache across real processes and through failures: another process sees every kind
of change within a bounded time (while serving near hits in between); under writers and
invalidators, readers in two other processes never return a value older than the last write
that returned before their read began, beyond the delivery window, and converge; a killed
tracking connection, a restarted server and FLUSHDB leave nothing stale and the near cache
comes back by itself; a user confined to the prefix can run it."""

from __future__ import annotations

import bisect
import json
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from cachedeco import Registry, write_through
from cachedeco.backends.near.store import Ticket
from tests.support.acl import API_RULES, MINIMAL_COMMANDS, confined_user, user_url
from tests.support.commands import commandstats, ran
from tests.support.near import tracking_clients
from tests.support.near_reader import define
from tests.support.polling import poll
from tests.support.versioned import item_readers
from tools.servers import SentinelSetup, Server, start_cluster

pytestmark = pytest.mark.deployments("redis")

#: How late another process may still return a value after the change that replaced it
#: returned: the message's delivery on loopback, generous for a loaded CI machine.
WINDOW = 1.0
TRACKER = frozenset({"info", "ping", "client|tracking", "hello"})
#: What the near cache adds to the minimal command list (the documented one).
NEAR_COMMANDS = ("+hello", "+client|tracking", "+ping", "+pttl")


class Reader:
    """A ``tests.support.near_reader`` process, its output lines read by a thread."""

    def __init__(self, url: str, prefix: str, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.near_reader", url, prefix, mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def ready(self) -> Reader:
        """Wait until it reads (its imports take a while on a loaded machine)."""
        assert self.next(20.0) == {"ready": True}
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.lines.get(timeout=timeout)

    def wait_for(self, wanted: dict[str, Any], timeout: float = 5.0) -> None:
        """Skip lines until ``wanted``; fail after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while (line := self.next(max(0.01, end - time.monotonic()))) != wanted:
            assert time.monotonic() < end, f"waited for {wanted}, last {line}"

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        while "reads" not in (line := self.next(20.0)):
            pass
        self.close()
        return line

    def close(self) -> None:
        """Wait for the process (killed unless it ended) and close its pipes."""
        if self.proc.poll() is None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    """Reader processes started by the test, killed after it if still running."""
    made: list[Reader] = []
    yield made
    for reader in made:
        if reader.proc.poll() is None:
            reader.proc.kill()
        reader.close()


def test_another_process_sees_every_kind_of_change(
        make_registry: Callable[..., Registry], redis_url: str, redis_client: redis.Redis,
        prefix: str, readers: list[Reader]) -> None:
    reg = make_registry(redis_url, near_cache=100, stats_interval=0)
    item = define(reg, redis_client, prefix)
    src = f"{prefix}-src:1"

    @write_through(item, registry=reg)
    def put(x: int) -> int:
        return int(redis_client.get(src) or 0)

    port = str(urlsplit(redis_url).port)
    cli = [sys.executable, "-m", "cachedeco", "invalidate-tags", "item:1",
           "--backend", redis_url, "--prefix", prefix]
    changes: list[tuple[str, Callable[[], Any]]] = [
        ("invalidate_tags", lambda: reg.invalidate_tags("item:1")),
        ("invalidate", lambda: item.invalidate(1)),
        ("write_through", lambda: put(1)),
        ("refresh", lambda: item.refresh(1)),
        ("set", lambda: item.set(int(redis_client.get(src) or 0), 1)),
        ("CLI invalidate-tags", lambda: subprocess.run(cli, check=True, capture_output=True)),
        ("redis-cli DEL", lambda: subprocess.run(
            ["redis-cli", "-p", port, "DEL", item.key(1)], check=True, capture_output=True)),
    ]
    redis_client.set(src, 0)
    reader = Reader(redis_url, prefix, "watch")
    readers.append(reader)
    reader.ready()
    reader.wait_for({"v": 0, "near": True}, timeout=10.0)
    for n, (name, change) in enumerate(changes, 1):
        poll(lambda n=n: bool(item(1) == n - 1 and item.stats().near_hits > 0))
        near_before = item.stats().near_hits
        assert item(1) == n - 1 and item.stats().near_hits == near_before + 1, name
        redis_client.set(src, n)
        change()
        assert item(1) == n, name  # the changing process: never the old value afterwards
        reader.wait_for({"v": n}, timeout=5.0)  # the other: within a bounded time
        reader.wait_for({"v": n, "near": True}, timeout=5.0)  # and near again
    assert reader.stop()["near_hits"] > 0


def test_readers_never_fall_behind_the_delivery_window(
        make_registry: Callable[..., Registry], redis_url: str, redis_client: redis.Redis,
        prefix: str, readers: list[Reader]) -> None:
    reg = make_registry(redis_url, near_cache=100, stats_interval=0)
    item = define(reg, redis_client, prefix)

    @write_through(item, registry=reg)
    def put(x: int) -> int:
        return int(redis_client.get(f"{prefix}-src:{x}") or 0)

    for x in range(4):
        redis_client.set(f"{prefix}-src:{x}", 0)
    readers.extend(Reader(redis_url, prefix, mode) for mode in ("stress", "stress",
                                                                "stress-many"))
    for reader in readers:
        reader.ready()
    writes: list[tuple[int, int, float]] = []  # (x, value, when its change returned)
    lock = threading.Lock()

    def writer(keys: tuple[int, ...], seed: int) -> None:
        rng = random.Random(seed)
        changes = [item.invalidate, lambda x: reg.invalidate_tags(f"item:{x}"), put,
                   item.refresh]
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            x = rng.choice(keys)
            value = int(redis_client.incr(f"{prefix}-src:{x}"))
            rng.choice(changes)(x)
            with lock:
                writes.append((x, value, time.time()))
            time.sleep(rng.random() * 0.004)

    threads = [threading.Thread(target=writer, args=((0, 1), 1)),
               threading.Thread(target=writer, args=((2, 3), 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(WINDOW + 0.5)  # past the window: every reader must have converged by now
    final = {x: int(redis_client.get(f"{prefix}-src:{x}") or 0) for x in range(4)}
    results = [reader.stop() for reader in readers]
    assert len(writes) > 100
    returned: dict[int, list[float]] = {x: [] for x in range(4)}  # when, in order
    highest: dict[int, list[int]] = {x: [] for x in range(4)}  # the highest value by then
    for x, value, at in sorted(writes, key=lambda w: w[2]):
        returned[x].append(at)
        highest[x].append(max(value, highest[x][-1] if highest[x] else 0))
    for result in results:
        reads = result["reads"]
        assert result["near_hits"] > len(reads) // 4  # the near cache served many reads
        last: dict[int, int] = {}
        for x, value, start in reads:
            done = bisect.bisect_left(returned[x], start - WINDOW)
            assert value >= (highest[x][done - 1] if done else 0), (x, value, start)
            last[x] = value
        assert last == final


def test_losing_the_stream_leaves_nothing_stale_and_recovers(
        make_registry: Callable[..., Registry], fresh_redis: Server) -> None:
    url = fresh_redis.url
    reg = make_registry(url, near_cache=100, stats_interval=0)
    other = make_registry(url, stats_interval=0)  # another client, no near cache
    admin = fresh_redis.processes[0].client()
    version = {"v": 0}

    @reg.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def f(x: int) -> int:
        return version["v"]

    def near_again() -> None:
        def near_hit() -> bool:
            before = f.stats().near_hits
            f(1)
            return f.stats().near_hits > before

        def twenty_without_a_command() -> bool:
            # A change reported late (this process's own store echoed back by the stream) may
            # still drop the value once after the first near hit: wait for a quiet streak.
            before, hits = commandstats(admin), f.stats().near_hits
            assert [f(1) for _ in range(20)] == [version["v"]] * 20
            quiet = ran(before, commandstats(admin), ignore=TRACKER) == {}
            return quiet and f.stats().near_hits - hits == 20

        poll(near_hit, timeout=10.0)
        poll(twenty_without_a_command, timeout=10.0)

    def never_old_again(old: int) -> None:
        poll(lambda: f(1) != old, timeout=5.0)
        assert all(f(1) == version["v"] for _ in range(50))

    near_again()
    for loss in ("client kill", "restart", "flushdb"):
        old = f(1)
        version["v"] += 1
        if loss == "client kill":
            (tracking,) = tracking_clients(admin)
            admin.client_kill_filter(_id=tracking["id"])
            other.invalidate_tags("item:1")  # while the stream may still be down
        elif loss == "restart":
            fresh_redis.restart()
            admin = fresh_redis.processes[0].client()
        else:
            subprocess.run(["redis-cli", "-p", str(fresh_redis.port), "FLUSHDB"], check=True,
                           capture_output=True)
        never_old_again(old)
        near_again()
    assert reg.slot("default")._tracker is not None
    assert reg.slot("default")._tracker.connects >= 3


def test_a_frozen_server_stops_near_hits_before_a_change_it_missed_returns(
        make_registry: Callable[..., Registry], fresh_redis: Server) -> None:
    """A change that cannot reach a frozen server (SIGSTOP) fails its call only after the
    socket timeout: by then another process serves nothing near any more (an answered ping
    vouches for its stream for 0.8 of that timeout), and near hits come back once it answers."""
    url = fresh_redis.url
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "stats_interval": 0}
    reader = make_registry(url, near_cache=100, **timeouts)
    writer = make_registry(url, **timeouts)
    db = {1: "v1"}

    @reader.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def get(x: int) -> str:
        return db[x]

    @writer.cached(ttl=60, key="item:{x}", tags=["item:{x}"])
    def wget(x: int) -> str:
        return db[x]

    @writer.write_through(wget)
    def put(x: int, value: str) -> str:
        db[x] = value
        return value

    def near_hit(value: str) -> bool:
        before = get.stats().near_hits
        return get(1) == value and get.stats().near_hits > before

    poll(lambda: near_hit("v1"), timeout=10.0)
    fresh_redis.pause()
    try:
        assert put(1, "v2") == "v2"  # the database's; the cache could not be reached
        hits = get.stats().near_hits
        assert get(1) == "v2"  # read through (it times out: the function), not "v1" near
        assert get.stats().near_hits == hits
    finally:
        fresh_redis.resume()
    poll(lambda: writer.stats().recoveries_pending == 0, timeout=5.0)
    poll(lambda: near_hit("v2"), timeout=10.0)

    # A miss looks for change messages when it takes its ticket, as hits do: that look must
    # not let the hits right after it skip the check of the stream's silence.
    tracker = reader.slot("default")._tracker
    assert tracker is not None
    store, right_after = tracker.store, []
    ticket = store.ticket

    def ticket_then_hit() -> Ticket | None:
        taken = ticket()
        store.ticket = ticket  # type: ignore[method-assign]
        before = get.stats().near_hits
        right_after.append((get(1), get.stats().near_hits - before))
        return taken

    db[2] = "other"
    fresh_redis.pause()
    try:
        poll(lambda: time.monotonic() >= store.quiet_after, timeout=5.0)  # silent, not lost
        store.ticket = ticket_then_hit  # type: ignore[method-assign]
        assert get(2) == "other"  # the miss (read through)
        assert right_after == [("v2", 0)]  # the hit at once after its ticket: read through
    finally:
        store.ticket = ticket  # type: ignore[method-assign]
        fresh_redis.resume()
    poll(lambda: near_hit("v2"), timeout=10.0)


@pytest.mark.parametrize("rules", [API_RULES, ("-@all", *MINIMAL_COMMANDS, *NEAR_COMMANDS)],
                         ids=["api", "minimal"])
def test_a_user_confined_to_the_prefix_runs_it(
        make_registry: Callable[..., Registry], redis_url: str, redis_client: redis.Redis,
        prefix: str, rules: tuple[str, ...]) -> None:
    with confined_user([redis_client], prefix, rules) as (name, password):
        _confined(make_registry, user_url(redis_url, name, password), redis_client, prefix)


def _confined(make_registry: Callable[..., Registry], confined_url: str,
              redis_client: redis.Redis, prefix: str) -> None:
    reg = make_registry(confined_url, near_cache=100, stats_interval=0, on_error="raise")
    other = make_registry(confined_url, stats_interval=0)
    item = define(reg, redis_client, prefix)
    define(other, redis_client, prefix)
    redis_client.set(f"{prefix}-src:1", 1)

    def near_hit() -> bool:
        before = item.stats().near_hits
        item(1)
        return item.stats().near_hits > before

    poll(near_hit, timeout=10.0)
    before = commandstats(redis_client)
    assert [item(1) for _ in range(20)] == [1] * 20
    assert ran(before, commandstats(redis_client), ignore=TRACKER) == {}
    redis_client.set(f"{prefix}-src:1", 2)
    other.invalidate_tags("item:1")
    poll(lambda: item(1) == 2, timeout=5.0)
    reg.close()  # before the user goes
    other.close()


def test_a_sentinel_failover_leaves_nothing_stale_and_recovers(
        make_registry: Callable[..., Registry], fresh_sentinel: SentinelSetup) -> None:
    setup = fresh_sentinel
    options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "breaker_cooldown": 0.3,
               "stats_interval": 0}
    reg = make_registry(setup.url, near_cache=100, **options)
    other = make_registry(setup.url, **options)  # another client, no near cache
    version = {"v": 0}

    f, g = item_readers(reg, other, version)

    def near_hit() -> bool:
        before = f.stats().near_hits
        return f(1) == version["v"] and f.stats().near_hits > before

    poll(near_hit, timeout=10.0)
    old = setup.kill_primary()
    new = setup.wait_for_failover(old, timeout=20)
    # on the new primary: a change by another client reaches this process, which serves
    # near hits again (the change stream followed the primary the sentinels name)
    version["v"] += 1

    def changed_and_seen() -> bool:
        g.invalidate(1)  # again until it lands: the first may meet the failover's errors
        return f(1) == version["v"]

    poll(changed_and_seen, timeout=15.0)
    poll(near_hit, timeout=15.0)
    version["v"] += 1
    other.invalidate_tags("item:1")
    poll(lambda: f(1) == version["v"], timeout=5.0)
    with redis.Redis(port=new, socket_timeout=5.0) as direct:
        poll(near_hit, timeout=10.0)

        def quiet() -> bool:  # what the failover left to redo (replayed releases) is done
            before = commandstats(direct)
            time.sleep(0.2)
            return ran(before, commandstats(direct), ignore=TRACKER) == {}

        poll(quiet, timeout=10.0)
        before = commandstats(direct)
        assert [f(1) for _ in range(20)] == [version["v"]] * 20
        assert ran(before, commandstats(direct), ignore=TRACKER) == {}


def test_a_cluster_primary_failover_leaves_nothing_stale_and_recovers(
        make_registry: Callable[..., Registry], prefix: str) -> None:
    options = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5, "breaker_cooldown": 0.3,
               "stats_interval": 0}
    with start_cluster(primaries=3, replicas=1, node_timeout=1000) as cluster:
        reg = make_registry(cluster.url, near_cache=100, **options)
        other = make_registry(cluster.url, **options)  # another client, no near cache
        version = {"v": 0}

        f, g = item_readers(reg, other, version)

        def all_near() -> bool:  # keys on every primary, each a near hit
            before = f.stats().near_hits
            return ([f(x) for x in range(12)] == [version["v"]] * 12
                    and f.stats().near_hits == before + 12)

        poll(all_near, timeout=10.0)
        cluster.kill_primary()
        cluster.wait_for_failover()
        version["v"] += 1

        def changed_and_seen() -> bool:
            for x in range(12):
                g.invalidate(x)  # again until they land: the first may meet the failover
            return [f(x) for x in range(12)] == [version["v"]] * 12

        poll(changed_and_seen, timeout=20.0)
        poll(all_near, timeout=15.0)  # tracking again on every primary, the promoted one too
        version["v"] += 1
        other.invalidate_tags(*[f"item:{x}" for x in range(12)])
        poll(lambda: [f(x) for x in range(12)] == [version["v"]] * 12, timeout=5.0)
        reg.close()  # before the cluster goes
        other.close()
