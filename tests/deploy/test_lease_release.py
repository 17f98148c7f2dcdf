"""A lease release lost to a cut connection (``lock=True``, ``cachedeco.lock``) is sent once
more, so the lease's waiters are woken instead of waiting until it expires; a release that
timed out is not (the command may still reach a slow server). An acquire cut off from its
reply releases what it may have taken, and nothing another holder took; one that timed out
has what it may take later released in the background."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
import redis.asyncio

from cachedeco import Registry
from cachedeco.backends.contracts.leases import Busy
from cachedeco.backends.redis._async.leases import AsyncRedisLeases
from cachedeco.backends.redis._sync.leases import RedisLeases
from cachedeco.backends.redis.commands import MovingSlots
from cachedeco.core.keyspace import KeySpace, LeaseName
from cachedeco.flows.spec import spec_of
from tests.support.leases import ACutOnce, CutOnce
from tests.support.polling import apoll, poll
from tools.servers import Server

CUT = redis.exceptions.ConnectionError("Connection closed by server.")


def _released(raw: redis.Redis, name: LeaseName) -> bool:
    """The lease is gone and its waiters were woken (one element on the wake list: the
    tests mark, as a waiter about to block does, that someone waits)."""
    return raw.exists(name.key, name.mark) == 0 and raw.llen(name.wake) == 1


@pytest.mark.parametrize("ran", [False, True], ids=["lost-before", "reply-lost"])
def test_a_release_cut_once_is_sent_again(raw: redis.Redis, redis_url: str, name: LeaseName,
                                          ran: bool) -> None:
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        cut = CutOnce(leases.release_script, CUT, ran=ran)
        leases.release_script = cut
        lease = leases.acquire(name, 30.0)
        assert not isinstance(lease, Busy)
        assert raw.exists(name.key) == 1
        raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
        assert lease.release() is True
        assert cut.calls == 2
        assert _released(raw, name)


def test_a_release_that_timed_out_is_not_sent_again(raw: redis.Redis, redis_url: str,
                                                    name: LeaseName) -> None:
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        cut = CutOnce(leases.release_script, redis.exceptions.TimeoutError("Timeout"))
        leases.release_script = cut
        lease = leases.acquire(name, 30.0)
        assert not isinstance(lease, Busy)
        with pytest.raises(redis.exceptions.TimeoutError):
            lease.release()
        assert cut.calls == 1
        assert raw.exists(name.key) == 1  # left to expire (the waiters fall back on that)


@pytest.mark.parametrize("ran", [False, True], ids=["lost-before", "reply-lost"])
async def test_an_asyncio_release_cut_once_is_sent_again(
        raw: redis.Redis, aleases: AsyncRedisLeases, name: LeaseName, ran: bool) -> None:
    cut = ACutOnce(aleases.release_script, CUT, ran=ran)
    aleases.release_script = cut
    lease = await aleases.acquire(name, 30.0)
    assert not isinstance(lease, Busy)
    raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
    assert await lease.release() is True
    assert cut.calls == 2
    assert _released(raw, name)


@pytest.mark.parametrize("ran", [False, True], ids=["lost-before", "reply-lost"])
def test_an_acquire_cut_off_from_its_reply_leaves_no_lease(raw: redis.Redis, redis_url: str,
                                                           name: LeaseName, ran: bool) -> None:
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
        cut = CutOnce(leases.acquire_script, CUT, ran=ran)
        leases.acquire_script = cut
        with pytest.raises(redis.exceptions.ConnectionError):
            leases.acquire(name, 30.0)
        assert raw.exists(name.key) == 0
        # what it took is released, its waiters woken; nothing to wake when it took nothing
        assert raw.llen(name.wake) == (1 if ran else 0)
        taken = leases.acquire(name, 30.0)  # the next caller takes the lease at once
        assert not isinstance(taken, Busy)
        assert taken.release() is True


async def test_an_asyncio_acquire_cut_off_from_its_reply_leaves_no_lease(
        raw: redis.Redis, aleases: AsyncRedisLeases, name: LeaseName) -> None:
    raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
    aleases.acquire_script = ACutOnce(aleases.acquire_script, CUT, ran=True)
    with pytest.raises(redis.exceptions.ConnectionError):
        await aleases.acquire(name, 30.0)
    assert raw.exists(name.key) == 0 and raw.llen(name.wake) == 1


def test_a_cut_acquire_leaves_another_holders_lease_alone(raw: redis.Redis, redis_url: str,
                                                          name: LeaseName) -> None:
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        held = leases.acquire(name, 30.0)
        assert not isinstance(held, Busy)
        leases.acquire_script = CutOnce(leases.acquire_script, CUT, ran=True)
        with pytest.raises(redis.exceptions.ConnectionError):
            leases.acquire(name, 30.0)  # it ran and found the lease held: took nothing
        assert raw.exists(name.key) == 1 and raw.llen(name.wake) == 0
        assert held.release() is True


TIMEOUT = redis.exceptions.TimeoutError("Timeout reading from socket")


def test_a_lease_an_acquire_took_after_it_timed_out_is_released_by_the_next_acquire(
        raw: redis.Redis, redis_url: str, name: LeaseName, prefix: str) -> None:
    other = KeySpace(prefix).lease(f"{prefix}:item:2")
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
        leases.acquire_script = CutOnce(leases.acquire_script, TIMEOUT, ran=True)
        with pytest.raises(redis.exceptions.TimeoutError):
            leases.acquire(name, 30.0)
        assert raw.exists(name.key) == 1  # not released at once: it might not have run yet
        taken = leases.acquire(other, 30.0)  # any acquire of this client releases it first
        assert not isinstance(taken, Busy) and taken.release() is True
        assert _released(raw, name) and not leases.unsure


def test_an_acquire_that_timed_out_and_lands_late_is_released_all_the_same(
        raw: redis.Redis, redis_url: str, name: LeaseName, prefix: str) -> None:
    other = KeySpace(prefix).lease(f"{prefix}:item:2")
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        leases.acquire_script = CutOnce(leases.acquire_script, TIMEOUT, ran=False)
        with pytest.raises(redis.exceptions.TimeoutError):
            leases.acquire(name, 30.0)
        (unsure,) = leases.unsure
        assert raw.exists(name.key) == 0
        first = leases.acquire(other, 30.0)  # finds nothing to release: keeps looking
        assert not isinstance(first, Busy) and first.release() is True
        assert len(leases.unsure) == 1
        raw.set(name.key, unsure[3], px=30_000)  # the late script takes the lease
        time.sleep(0.25)  # the sweep runs at most every 0.2 s
        second = leases.acquire(other, 30.0)
        assert not isinstance(second, Busy) and second.release() is True
        assert raw.exists(name.key) == 0 and not leases.unsure


def test_a_lease_an_acquire_took_after_it_timed_out_is_released_without_another_acquire(
        raw: redis.Redis, redis_url: str, name: LeaseName) -> None:
    # (the process may make no acquire for a while: its circuit breaker open, say)
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
        leases.acquire_script = CutOnce(leases.acquire_script, TIMEOUT, ran=True)
        with pytest.raises(redis.exceptions.TimeoutError):
            leases.acquire(name, 30.0)
        poll(lambda: _released(raw, name), timeout=5.0)
        poll(lambda: not leases.unsure, timeout=5.0)


def test_a_timed_out_acquire_that_never_ran_is_given_up(raw: redis.Redis, redis_url: str,
                                                        name: LeaseName) -> None:
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        leases.acquire_script = CutOnce(leases.acquire_script, TIMEOUT, ran=False)
        with pytest.raises(redis.exceptions.TimeoutError):
            leases.acquire(name, 30.0)
        assert len(leases.unsure) == 1
        # looked for a second (SETTLE_FOR) after the server first answered, then dropped
        poll(lambda: not leases.unsure, timeout=5.0)
        assert raw.exists(name.key) == 0 and raw.llen(name.wake) == 0


async def test_an_asyncio_acquire_that_timed_out_is_released_without_another_acquire(
        raw: redis.Redis, aleases: AsyncRedisLeases, name: LeaseName) -> None:
    raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
    aleases.acquire_script = ACutOnce(aleases.acquire_script, TIMEOUT, ran=True)
    with pytest.raises(redis.exceptions.TimeoutError):
        await aleases.acquire(name, 30.0)
    await apoll(lambda: _released(raw, name), timeout=5.0)


async def test_an_asyncio_acquire_that_timed_out_is_released_by_the_next_acquire(
        raw: redis.Redis, aleases: AsyncRedisLeases, name: LeaseName, prefix: str) -> None:
    other = KeySpace(prefix).lease(f"{prefix}:item:2")
    raw.set(name.mark, "1", px=30_000)  # a waiter blocks on the wake list
    aleases.acquire_script = ACutOnce(aleases.acquire_script, TIMEOUT, ran=True)
    with pytest.raises(redis.exceptions.TimeoutError):
        await aleases.acquire(name, 30.0)
    assert raw.exists(name.key) == 1
    taken = await aleases.acquire(other, 30.0)
    assert not isinstance(taken, Busy) and await taken.release() is True
    assert _released(raw, name)


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("closed_first", [False, True], ids=["fresh", "used-after-close"])
async def test_a_release_lost_to_a_dead_server_lands_once_it_is_back(
        amake_registry: Callable[..., Registry], fresh_redis: Server, flavour: str,
        closed_first: bool) -> None:
    # The AOF brings the lease back with the server: were its release given up, the key's
    # callers in other processes would wait for it to expire (lock_timeout / 2 = 10 s here).
    # used-after-close: the registry was closed and is used again (its retries run again)
    fresh_redis.restart(appendonly=True)
    reg = amake_registry(fresh_redis.url, lock_timeout=20.0, socket_timeout=0.5,
                         socket_connect_timeout=0.5)

    def crash(x: int) -> int:
        if x:
            fresh_redis.kill()  # while the load holds its lease: store and release fail
        return x

    if flavour == "sync":
        f = reg.cached(ttl=60, lock=True)(crash)
        if closed_first:
            assert f(0) == 0
            reg.close()
        assert f(1) == 1
    else:
        @reg.cached(ttl=60, lock=True)
        async def f(x: int) -> int:
            return crash(x)

        if closed_first:
            assert await f(0) == 0
            await reg.aclose()
        assert await f(1) == 1
    b = spec_of(f).bound()
    name = b.keyspace.lease(b.key((1,), {}))
    fresh_redis.restart()
    with redis.Redis.from_url(fresh_redis.url) as raw:
        await apoll(lambda: raw.exists(name.key) == 0, timeout=5.0)  # not after its 10 s


def test_only_a_moving_slot_has_the_lease_taken_and_released_by_its_key_alone(
        raw: redis.Redis, redis_url: str, name: LeaseName) -> None:
    """The fallback of a Cluster slot that moves (TRYAGAIN, or redis-py's "TTL exhausted"
    after retrying it) is not taken for a cluster that is down: its commands would only
    wait as long again before failing the same way."""
    with redis.Redis.from_url(redis_url) as client:
        leases = RedisLeases(client)
        script = leases.acquire_script
        for error in (redis.exceptions.TryAgainError("TRYAGAIN"),
                      redis.exceptions.ClusterError("TTL exhausted.")):
            leases.moving = MovingSlots()  # no move seen yet
            cut = CutOnce(script, error)
            leases.acquire_script = cut
            lease = leases.acquire(name, 30.0, "")
            assert not isinstance(lease, Busy) and cut.calls == 1
            assert raw.exists(name.key) == 1  # taken by SET NX PX GET
            busy = leases.acquire(name, 30.0, "")
            assert isinstance(busy, Busy) and busy.ms == 200  # asks again soon
            assert cut.calls == 1  # straight to the plain commands while the slot moves
            leases.release_script = CutOnce(leases.release_script, error)
            assert lease.release() is True
            assert raw.exists(name.key) == 0
        down = redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")
        leases.moving = MovingSlots()
        leases.acquire_script = CutOnce(script, down)
        with pytest.raises(redis.exceptions.ClusterDownError):
            leases.acquire(name, 30.0, "")
        assert raw.exists(name.key) == 0  # no plain SET sent
        lease = leases.acquire(name, 30.0)
        assert not isinstance(lease, Busy)
        leases.release_script = CutOnce(leases.release_script, down)
        with pytest.raises(redis.exceptions.ClusterDownError):
            lease.release()
        assert raw.exists(name.key) == 1  # not released by its key alone
