"""``Registry.lock`` on every deployment: mutual exclusion, the TTL, owner-only release,
``LockTimeout``, ``async with``, and waiters woken by the release itself (no poll interval)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest

from cachedeco import CacheError, LockTimeout, Registry
from cachedeco.errors import LockNotOwned
from tests.support.deployments import BACKENDS, SERVERS, Deployment

pytestmark = pytest.mark.deployments(*BACKENDS)
#: A woken waiter acquires within this of the release (no poll interval). A waiter left to
#: its block would come only at the block's end: on a server, 0.75 s after it began with the
#: default 1 s socket timeout, so at least 0.45 s after the release in the tests below (which
#: release 0.3 s after the waiter started); in memory, when the holder's 5 s TTL runs out.
PROMPT = 0.2


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target)
    thread.start()
    return thread


# --- with -----------------------------------------------------------------------------------------


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


@pytest.mark.deployments(*SERVERS)
def test_with_holds_the_lock_under_the_prefix_with_a_ttl(reg: Registry, deployment: Deployment,
                                                         prefix: str) -> None:
    raw = deployment.raw
    with reg.lock("job", ttl=5):
        key = f"{prefix}:~lock:{{job}}"
        assert raw.exists(key) == 1
        assert 4000 < raw.pttl(key) <= 5000
    assert raw.exists(key) == 0


@pytest.mark.deployments(*SERVERS)
def test_a_lock_made_before_configure_uses_the_configured_backend(
        make_registry: Callable[..., Registry], deployment: Deployment, prefix: str) -> None:
    registry = make_registry()
    lock = registry.lock("job", ttl=5)
    registry.configure(deployment.url, prefix=prefix)
    with lock:
        assert deployment.raw.exists(f"{prefix}:~lock:{{job}}") == 1


# --- async with --------------------------------------------------------------------------------


async def test_async_with_excludes_other_tasks(reg: Registry) -> None:
    lock = reg.lock("job", ttl=5, timeout=5)
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


async def test_async_lock_timeout(reg: Registry) -> None:
    async with reg.lock("job", ttl=5):
        started = time.perf_counter()
        with pytest.raises(LockTimeout):
            async with reg.lock("job", timeout=0.2):
                pass
        assert 0.2 <= time.perf_counter() - started < 0.2 + 0.3


async def test_an_async_waiter_acquires_promptly_after_the_release(reg: Registry) -> None:
    holder = reg.lock("job", ttl=5)
    await holder.aacquire()
    acquired = 0.0

    async def wait() -> None:
        nonlocal acquired
        async with reg.lock("job", timeout=5):
            acquired = time.perf_counter()

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.3)
    released = time.perf_counter()
    await holder.arelease()
    await task
    assert 0 <= acquired - released < PROMPT


async def test_async_release_after_expiry_raises_and_spares_the_next_owner(
        reg: Registry) -> None:
    first = reg.lock("job", ttl=0.1)
    await first.aacquire()
    await asyncio.sleep(0.15)
    async with reg.lock("job", timeout=0):
        with pytest.raises(LockNotOwned):
            await first.arelease()
        with pytest.raises(LockTimeout):
            await reg.lock("job", timeout=0).aacquire()


async def test_an_async_lost_lock_does_not_hide_the_bodys_exception(
        reg: Registry, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cachedeco"), pytest.raises(ValueError):
        async with reg.lock("job", ttl=0.05):
            await asyncio.sleep(0.1)
            raise ValueError("the body failed")
    assert "expired" in caplog.text


async def test_an_async_lost_lock_raises_on_a_clean_exit(reg: Registry) -> None:
    with pytest.raises(LockNotOwned):
        async with reg.lock("job", ttl=0.05):
            await asyncio.sleep(0.1)


async def test_the_async_lock_is_not_reentrant_and_only_its_owner_releases(
        reg: Registry) -> None:
    lock = reg.lock("job", timeout=0)
    async with lock:
        with pytest.raises(CacheError, match="reentrant"):
            await lock.aacquire()
        other = asyncio.create_task(lock.arelease())  # another task: not its owner
        with pytest.raises(LockNotOwned, match="not held by this owner"):
            await other
    with pytest.raises(LockNotOwned, match="not held by this owner"):
        await lock.arelease()  # released already
