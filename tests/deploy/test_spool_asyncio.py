"""The spool under an asyncio service: a change that goes to the spool (a write-behind
record, a drop, a tag invalidation the backend could not take) is written from a thread, so
the event loop runs on while the spool waits for the file or syncs it, and the changes of
the loop's tasks at that time go in one transaction together. That thread is the spool's
own: the loop's executor may be full of the application's blocking calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cachedeco import Registry
from tests.support.polling import apoll
from tests.support.spool_files import asaver, down, file_held, spooled


def _transactions_adding(statements: list[str]) -> list[int]:
    """How many rows each committed transaction of ``statements`` added (those adding any:
    not the heartbeats of the recovery's worker)."""
    added, counts = 0, []
    for statement in statements:
        if statement.startswith("INSERT INTO changes"):
            added += 1
        elif statement == "COMMIT":
            counts += [added] if added else []
            added = 0
    return counts


async def test_the_loop_runs_on_while_a_write_behind_call_waits_for_the_spool(
        amake_registry: Callable[..., Registry], tmp_path: Path) -> None:
    reg = down(amake_registry, tmp_path)
    save = asaver(reg)

    with file_held(tmp_path / "spool.db") as release:
        call = asyncio.ensure_future(save("e1"))
        await asyncio.sleep(0.3)  # the loop runs: the call waits for the file in a thread
        waiting = not call.done()
        release()
        assert await call == {"id": "e1"}
    assert waiting
    assert len(spooled(tmp_path / "spool.db")) == 1


async def test_the_loops_tasks_changes_go_to_the_spool_in_one_transaction(
        amake_registry: Callable[..., Registry], tmp_path: Path) -> None:
    reg = down(amake_registry, tmp_path)
    save = asaver(reg)

    @reg.cached(ttl=60, key="item:{x}", tags=["items"])
    async def item(x: int) -> int:
        return x

    spool = reg.recovery.spool
    assert spool is not None
    statements: list[str] = []
    spool.connection().set_trace_callback(statements.append)
    with file_held(tmp_path / "spool.db") as release:
        calls = [asyncio.ensure_future(save(f"e{n}")) for n in range(16)]
        calls.append(asyncio.ensure_future(item.invalidate(7)))  # a drop
        calls.append(asyncio.ensure_future(reg.ainvalidate_tags("items")))  # a tag's
        # the first change leads a transaction; the others wait in the next one
        await apoll(lambda: spool._filling is not None and len(spool._filling.rows) == 17,
                    timeout=10.0)
        release()
        results = await asyncio.gather(*calls)
    assert results[:16] == [{"id": f"e{n}"} for n in range(16)]
    assert results[16] is False  # the drop was kept for auto-recovery
    assert _transactions_adding(statements) == [1, 17]  # the leader's, then the others'

    assert len(spooled(tmp_path / "spool.db")) == 18
    assert reg.stats().recoveries_pending == 18


async def test_a_call_cancelled_while_its_record_is_written_leaves_it_kept(
        amake_registry: Callable[..., Registry], tmp_path: Path) -> None:
    reg = down(amake_registry, tmp_path)
    save = asaver(reg)

    spool = reg.recovery.spool
    assert spool is not None
    with file_held(tmp_path / "spool.db") as release:
        call = asyncio.ensure_future(save("e1"))
        await apoll(lambda: spool._writing, timeout=10.0)  # its row waits for the file
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert call.cancelled()
        release()
        # the write goes on: once it is done the record waits in memory too, as a
        # returned call's does (delivered by this process when the server is back)
        await apoll(lambda: reg.stats().recoveries_pending == 1, timeout=10.0)
    assert len(spooled(tmp_path / "spool.db")) == 1


async def test_a_call_does_not_wait_for_the_loops_executor(
        amake_registry: Callable[..., Registry], tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(1))
    gate = threading.Event()
    busy = loop.run_in_executor(None, gate.wait, 30.0)  # an application's blocking call
    try:
        reg = down(amake_registry, tmp_path)
        save = asaver(reg)
        assert await asyncio.wait_for(save("e1"), timeout=10.0) == {"id": "e1"}
        assert not busy.done()  # the executor was busy all along
    finally:
        gate.set()
        await busy
    assert len(spooled(tmp_path / "spool.db")) == 1
    writers = [t for t in threading.enumerate() if t.name.startswith("cachedeco-spool")]
    assert len(writers) == 1
    reg.close()
    assert not any(t.is_alive() for t in writers)  # closing the registry stops it
