"""``cachedeco.lock`` on a real redis-server and on ``memory://``: mutual exclusion, the TTL,
owner-only release, ``LockTimeout``, ``async with``, and waiters woken by the release itself.
Also the lease key names (pure): the lease of an entry shares the entry's cluster slot."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
import redis.asyncio
import redis.crc

import cachedeco
from cachedeco import CacheError, ConfigurationError, LockTimeout, Registry
from cachedeco.core.keyspace import KeySpace, hash_tagged
from cachedeco.errors import LockNotOwned

PROMPT = 0.05  # a woken waiter acquires within this of the release (no poll interval)


KEYS = KeySpace("p")  # the key space of Registry(prefix="p")


@pytest.fixture(params=["redis", "memory"])
def reg(request: pytest.FixtureRequest, prefix: str) -> Iterator[Registry]:
    """A registry on each backend."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    registry = Registry(url, prefix=prefix)
    yield registry
    registry.close()


@pytest.fixture(params=["redis", "memory"])
async def areg(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Registry]:
    """An asyncio registry on each backend."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "memory://"
    registry = Registry(url, prefix=prefix)
    yield registry
    await registry.aclose()


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


# --- names (pure) ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["p:mod.f:'a'", "a{b", "x}y", "}", "a{}b", "{tag}rest", "t{a}{b}"])
def test_a_lease_and_its_wake_list_share_a_slot(name: str) -> None:
    lease = KEYS.lease(name)
    assert lease.key.startswith("p:~lease:") and lease.wake.startswith("p:~leasewake:")
    assert redis.crc.key_slot(lease.key.encode()) == redis.crc.key_slot(lease.wake.encode())


def test_the_lease_of_an_entry_sits_in_the_entrys_slot() -> None:
    for entry in ["p:mod.f:1", "p:analysis:'x'", "p:" + "a" * 240]:
        lease = KEYS.lease(entry)
        assert lease.key == "p:~lease:{" + entry + "}"
        assert redis.crc.key_slot(lease.key.encode()) == redis.crc.key_slot(entry.encode())


def test_names_that_differ_get_different_leases() -> None:
    names = ["a", "b", "a}", "b}", "{a}", "{a}x", "=a", "{=a}", "#{a}", "a{", "{a"]
    assert len({hash_tagged(n) for n in names}) == len(names)
    assert len({KEYS.lock(n).key for n in names}) == len(names)


# --- with --------------------------------------------------------------------------------------


def test_with_holds_the_lock_under_the_prefix_with_a_ttl(
        redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    registry = Registry(redis_url, prefix=prefix)
    with registry.lock("job", ttl=5):
        key = f"{prefix}:~lock:{{job}}"
        assert redis_client.exists(key) == 1
        assert 4000 < redis_client.pttl(key) <= 5000
    assert redis_client.exists(key) == 0
    registry.close()


def test_a_held_lock_excludes_others_until_released(reg: Registry) -> None:
    inside: list[int] = []
    overlap: list[bool] = []

    def worker(i: int) -> None:
        with reg.lock("shared", ttl=5, timeout=5):
            inside.append(i)
            overlap.append(len(inside) > 1)
            time.sleep(0.02)
            inside.remove(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlap == [False] * 6


def test_lock_timeout_zero_tries_once_and_a_timeout_waits(reg: Registry) -> None:
    with reg.lock("busy", ttl=5):
        started = time.perf_counter()
        with pytest.raises(LockTimeout), reg.lock("busy", timeout=0):
            pass
        assert time.perf_counter() - started < 0.05

        def wait() -> None:
            with pytest.raises(LockTimeout, match="busy"), reg.lock("busy", timeout=0.2):
                pass

        started = time.perf_counter()
        in_thread(wait).join()
        assert 0.2 <= time.perf_counter() - started < 0.2 + 0.3


def test_release_after_expiry_never_frees_the_next_owner(reg: Registry) -> None:
    first = reg.lock("job", ttl=0.1)
    first.acquire()
    time.sleep(0.15)  # expired
    second = reg.lock("job", ttl=5, timeout=0)
    second.acquire()
    with pytest.raises(LockNotOwned, match="expired"):
        first.release()
    with pytest.raises(LockTimeout):  # the second owner still holds it
        reg.lock("job", timeout=0).acquire()
    second.release()
    with reg.lock("job", timeout=0):
        pass


def test_a_lost_lock_does_not_hide_the_bodys_exception(
        reg: Registry, caplog: pytest.LogCaptureFixture) -> None:
    with (caplog.at_level(logging.WARNING, logger="cachedeco"), pytest.raises(ValueError),
          reg.lock("job", ttl=0.05)):
        time.sleep(0.1)
        raise ValueError("the body failed")
    assert "expired" in caplog.text


def test_a_lost_lock_raises_on_a_clean_exit(reg: Registry) -> None:
    with pytest.raises(LockNotOwned), reg.lock("job", ttl=0.05):
        time.sleep(0.1)


def test_an_expired_holder_is_replaced_after_its_ttl(reg: Registry) -> None:
    reg.lock("job", ttl=0.3).acquire()  # never released: its owner "died"
    started = time.perf_counter()
    with reg.lock("job", timeout=3):
        took = time.perf_counter() - started
    assert 0.25 <= took < 0.3 + 0.2


def test_a_waiter_acquires_promptly_after_the_release(reg: Registry) -> None:
    lock = reg.lock("job", ttl=5)
    released = acquired = 0.0
    lock.acquire()

    def wait() -> None:
        nonlocal acquired
        with reg.lock("job", timeout=5):
            acquired = time.perf_counter()

    waiter = in_thread(wait)
    time.sleep(0.3)
    released = time.perf_counter()
    lock.release()
    waiter.join()
    assert 0 <= acquired - released < PROMPT


def test_the_lock_is_not_reentrant(reg: Registry) -> None:
    lock = reg.lock("job", timeout=0)
    with lock, pytest.raises(CacheError, match="reentrant"):
        lock.acquire()


def test_one_lock_object_shared_by_threads(reg: Registry) -> None:
    lock = reg.lock("job", ttl=5, timeout=5)
    order: list[str] = []

    def work(name: str) -> None:
        with lock:
            order.extend([name, name])
            time.sleep(0.02)

    threads = [threading.Thread(target=work, args=(n,)) for n in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(order) == ["a", "a", "b", "b", "c", "c"]
    assert all(order[i] == order[i + 1] for i in range(0, 6, 2))


def test_bad_settings_are_configuration_errors() -> None:
    registry = Registry()
    for kwargs in ({"ttl": 0}, {"ttl": -1.0}, {"timeout": -1}, {"ttl": float("inf")}):
        with pytest.raises(ConfigurationError):
            registry.lock("x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        registry.lock("")
    with pytest.raises(ConfigurationError), registry.lock("x", backend="nope"):
        pass


def test_a_lock_made_before_configure_uses_the_configured_backend(
        redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    registry = Registry()
    lock = registry.lock("job", ttl=5)
    registry.configure(redis_url, prefix=prefix)
    with lock:
        assert redis_client.exists(f"{prefix}:~lock:{{job}}") == 1
    registry.close()


def test_the_default_registry_lock() -> None:
    with cachedeco.lock("default-job", ttl=1, timeout=0), pytest.raises(LockTimeout):
        cachedeco.lock("default-job", timeout=0).acquire()


def test_an_unreachable_backend_is_a_backend_error() -> None:
    registry = Registry("redis://127.0.0.1:1/0")
    with pytest.raises(cachedeco.BackendError, match="acquire"), registry.lock("job"):
        pass
    registry.close()


# --- async with --------------------------------------------------------------------------------


async def test_async_with_excludes_other_tasks(areg: Registry) -> None:
    lock = areg.lock("job", ttl=5, timeout=5)
    inside = 0
    most = 0

    async def work() -> None:
        nonlocal inside, most
        async with lock:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(work() for _ in range(10)))
    assert most == 1


async def test_async_lock_timeout(areg: Registry) -> None:
    async with areg.lock("job", ttl=5):
        started = time.perf_counter()
        with pytest.raises(LockTimeout):
            async with areg.lock("job", timeout=0.2):
                pass
        assert 0.2 <= time.perf_counter() - started < 0.2 + 0.3


async def test_an_async_waiter_acquires_promptly_after_the_release(areg: Registry) -> None:
    holder = areg.lock("job", ttl=5)
    await holder.aacquire()
    acquired = 0.0

    async def wait() -> None:
        nonlocal acquired
        async with areg.lock("job", timeout=5):
            acquired = time.perf_counter()

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.3)
    released = time.perf_counter()
    await holder.arelease()
    await task
    assert 0 <= acquired - released < PROMPT


async def test_async_release_after_expiry_raises_and_spares_the_next_owner(
        areg: Registry) -> None:
    first = areg.lock("job", ttl=0.1)
    await first.aacquire()
    await asyncio.sleep(0.15)
    async with areg.lock("job", timeout=0):
        with pytest.raises(LockNotOwned):
            await first.arelease()
        with pytest.raises(LockTimeout):
            await areg.lock("job", timeout=0).aacquire()


# --- Redis Cluster -----------------------------------------------------------------------------


def test_a_lock_on_redis_cluster(cluster_url: str, prefix: str) -> None:
    registry = Registry(cluster_url, prefix=prefix)
    lock = registry.lock("job", ttl=5)
    acquired = 0.0
    lock.acquire()

    def wait() -> None:
        nonlocal acquired
        with registry.lock("job", timeout=5):
            acquired = time.perf_counter()

    waiter = in_thread(wait)
    time.sleep(0.2)
    released = time.perf_counter()
    lock.release()
    waiter.join()
    assert 0 <= acquired - released < PROMPT
    registry.close()
