"""``lock=True`` after a miss: when another process stored the value and released its lease
between this caller's read and its acquire, the caller reads that value instead of loading a
second time (the acquire script looks at the entry in the same round trip).

Two ``@cached`` functions made by one factory share their key but not their in-process
flights, so within one test process they stand for two processes. A caller whose miss read
is older than the other's store is played by calling the load step with that older state.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from cachedeco.backends.contracts.leases import Busy
from cachedeco.flows._async import read as read_async
from cachedeco.flows._sync import read as read_sync
from cachedeco.flows.bound import Bound, Call, ReadState
from cachedeco.flows.spec import spec_of
from tests.support.deployments import SERVERS, Deployment

pytestmark = pytest.mark.deployments(*SERVERS)


class Runs:
    """Counts the runs of the twins' function (thread-safe)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self.count += 1
            return self.count


def twins(reg: Registry, runs: Runs, **options: Any) -> tuple[Any, Any]:
    """Two sync functions sharing one key (two "processes")."""

    def make() -> Any:
        @cachedeco.cached(ttl=60, registry=reg, lock=True, **options)
        def load(x: int) -> dict[str, int]:
            return {"x": x, "run": runs.next()}

        return load

    return make(), make()


def async_twins(reg: Registry, runs: Runs, **options: Any) -> tuple[Any, Any]:
    """The async form of :func:`twins`."""

    def make() -> Any:
        @cachedeco.cached(ttl=60, registry=reg, lock=True, **options)
        async def load(x: int) -> dict[str, int]:
            return {"x": x, "run": runs.next()}

        return load

    return make(), make()


def _late(fn: Any, x: int, marker: str = "") -> tuple[Bound, Call, ReadState]:
    """The bound function, the call and a miss state of ``fn(x)``: ``marker`` read in the
    entry, with the tags' tokens as they are now."""
    b = spec_of(fn).bound()
    args: tuple[Any, ...] = (x,)
    call = Call(spec_of(fn).func, args, {}, b.key(args, {}), b.tags(args, {}))
    _, tokens = b.slot.backend().read(call.key, call.tag_keys)
    return b, call, (marker, tokens)


def test_a_value_stored_after_the_miss_read_is_read_not_loaded_again(reg: Registry) -> None:
    runs = Runs()
    first, second = twins(reg, runs)
    assert first(1) == {"x": 1, "run": 1}  # the other process loaded, stored, released
    b, call, missed = _late(second, 1)  # this one read the entry before that store
    assert read_sync.load(b, call, missed, b.flights.landings) == {"x": 1, "run": 1}
    assert runs.count == 1
    assert second.stats().loads == 0


async def test_the_same_for_async_functions(reg: Registry) -> None:
    runs = Runs()
    first, second = async_twins(reg, runs)
    assert await first(1) == {"x": 1, "run": 1}
    b, call, missed = _late(second, 1)
    assert await read_async.load(b, call, missed, b.flights.landings) == {"x": 1, "run": 1}
    assert runs.count == 1


def test_a_tombstone_read_then_a_value_stored_is_read(reg: Registry) -> None:
    runs = Runs()
    first, second = twins(reg, runs)
    first(1)
    first.invalidate(1)  # a tombstone: the state a miss after the invalidation reads
    tombstone = reg_marker(first, 1)
    assert tombstone.startswith("cdT:")
    assert first(1) == {"x": 1, "run": 2}
    b, call, missed = _late(second, 1, tombstone)
    assert read_sync.load(b, call, missed, b.flights.landings) == {"x": 1, "run": 2}
    assert runs.count == 2


def test_a_landed_value_that_is_not_current_is_loaded_again(reg: Registry) -> None:
    runs = Runs()
    first, second = twins(reg, runs, tags=["t"])
    first(1)
    reg.invalidate_tags("t")  # the entry stays, its tag token moved on: not servable
    b, call, missed = _late(second, 1)
    assert read_sync.load(b, call, missed, b.flights.landings) == {"x": 1, "run": 2}
    assert runs.count == 2


def test_the_acquire_script_takes_the_lease_only_when_nothing_landed(
        reg: Registry, deployment: Deployment) -> None:
    runs = Runs()
    first, _ = twins(reg, runs)
    b = spec_of(first).bound()
    key = b.key((1,), {})
    name = b.keyspace.lease(key)
    assert name.entry == key  # the entry shares the lease's slot
    leases = b.slot.backend().leases()
    lease = leases.acquire(name, 5.0, "")  # nothing there yet: taken
    assert not isinstance(lease, Busy)
    assert lease.release()
    first(1)
    marker = reg_marker(first, 1)
    landed = leases.acquire(name, 5.0, "")  # a value other than the one read: not taken
    assert isinstance(landed, Busy) and landed.landed
    assert deployment.raw.exists(name.key) == 0
    own = leases.acquire(name, 5.0, marker)  # the value this caller read: taken
    assert not isinstance(own, Busy)
    held = leases.acquire(name, 5.0, "")  # held by someone: busy, whatever landed
    assert isinstance(held, Busy) and not held.landed and held.ms is not None and held.ms > 0
    assert own.release()
    plain = leases.acquire(name, 5.0)  # no state given: taken
    assert not isinstance(plain, Busy)
    assert plain.release()


def reg_marker(fn: Any, x: int) -> str:
    """The marker of the entry ``fn(x)`` holds in the backend (a value or a tombstone)."""
    b = spec_of(fn).bound()
    entry, _ = b.slot.backend().read(b.key((x,), {}), ())
    assert entry is not None
    return entry.marker

