"""A change whose caller is cancelled on the way (its own timeout, ``asyncio.timeout`` around
the call) leaves nothing stale behind: a ``@write_through`` writer cancelled after its
database write committed (its reply lost, say) has the old entry dropped, since it cannot
know whether the write landed; an invalidation or a store cancelled before its command went
out is made again by auto-recovery, the entries not served meanwhile. A synchronous writer
interrupted after its commit (``KeyboardInterrupt``, a worker's ``SystemExit``) likewise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cachedeco import Registry, cached, write_through
from cachedeco.flows.spec import spec_of
from tests.support.deployments import BACKENDS, REDIS_BACKENDS, Deployment
from tests.support.leases import ACutOnce
from tests.support.polling import apoll, poll

pytestmark = pytest.mark.deployments(*BACKENDS)


def _catalogue(reg: Registry, db: dict[int, int], committed: asyncio.Event,
               invalidate: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """A reader over ``db`` and a writer that commits, sets ``committed``, then hangs (the
    database's reply on its way) until cancelled."""
    @cached(registry=reg, tags=["item:{x}"])
    async def get(x: int) -> int:
        return db[x]

    @write_through(get, registry=reg, invalidate=list(invalidate))
    async def put(x: int) -> int:
        db[x] += 1
        committed.set()
        await asyncio.Event().wait()
        return db[x]

    return get, put


async def _settled(reg: Registry, get: Any, value: int) -> None:
    """Auto-recovery has nothing left to make, and ``get(1)`` is ``value``, cached again."""
    await apoll(lambda: reg.stats().recoveries_pending == 0)
    assert await get(1) == value
    loads = get.stats().loads
    assert await get(1) == value
    assert get.stats().loads == loads


@pytest.mark.parametrize("invalidate", [(), ("item:{x}",)], ids=["store", "invalidate"])
async def test_a_writer_cancelled_after_its_commit_leaves_no_stale_entry(
        reg: Registry, invalidate: tuple[str, ...]) -> None:
    db = {1: 0}
    committed = asyncio.Event()
    get, put = _catalogue(reg, db, committed, invalidate)
    assert await get(1) == 0
    task = asyncio.create_task(put(1))
    await committed.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await get(1) == 1  # not the entry the write replaced
    await _settled(reg, get, 1)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("invalidate", [(), ("item:{x}",)], ids=["store", "invalidate"])
def test_a_sync_writer_interrupted_after_its_commit_leaves_no_stale_entry(
        deployment: Deployment, make_registry: Callable[..., Registry],
        invalidate: tuple[str, ...], interrupt: type[BaseException]) -> None:
    reg = make_registry(deployment.url)
    db = {1: 0}

    @cached(registry=reg, tags=["item:{x}"])
    def get(x: int) -> int:
        return db[x]

    @write_through(get, registry=reg, invalidate=list(invalidate))
    def put(x: int) -> int:
        db[x] += 1
        raise interrupt  # committed, then interrupted (Ctrl-C, a worker's shutdown)

    assert get(1) == 0
    with pytest.raises(interrupt):
        put(1)
    assert get(1) == 1  # not the entry the write replaced
    poll(lambda: reg.stats().recoveries_pending == 0)
    assert get(1) == 1
    loads = get.stats().loads
    assert get(1) == 1
    assert get.stats().loads == loads


@pytest.mark.deployments(*REDIS_BACKENDS)  # nothing interrupts in-process memory
@pytest.mark.parametrize("method", ["invalidate_tags", "invalidate"])
async def test_a_change_cancelled_before_it_went_out_is_made_again(
        reg: Registry, method: str) -> None:
    # the caller's own database write, then its invalidation (of the tag, or of the entry),
    # cancelled before its command went out
    db = {1: 0}
    get, _ = _catalogue(reg, db, asyncio.Event())
    assert await get(1) == 0
    backend = spec_of(get).bound().slot.abackend()
    cut = ACutOnce(getattr(backend, method), asyncio.CancelledError(), ran=False)
    setattr(backend, method, cut)
    db[1] = 5
    with pytest.raises(asyncio.CancelledError):
        await (reg.ainvalidate_tags("item:1") if method == "invalidate_tags"
               else get.invalidate(1))
    assert await get(1) == 5  # not served meanwhile
    await _settled(reg, get, 5)  # made by auto-recovery: else the old entry would be a hit
    assert cut.calls == 1
