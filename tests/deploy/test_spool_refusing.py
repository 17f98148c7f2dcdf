"""A spool that cannot keep a change (its file locked by another process for longer than a
writer waits, a full disk): a write-behind record is an error of its call, which raises
BackendError (the record was queued nowhere); a drop or a tag invalidation stays in memory
only, which is logged. Sync and asyncio alike (an event loop's changes go through the
spool's writer thread)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cachedeco import BackendError, Registry
from cachedeco.runtime import spool as spool_module
from tests.support.polling import apoll
from tests.support.spool_files import asaver, down, file_held, spooled


@pytest.fixture(autouse=True)
def _short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer gives up on a locked file after 0.2 s here (5 s by default)."""
    monkeypatch.setattr(spool_module, "_TIMEOUT", 0.2)


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cannot keep a change" in r.getMessage()]


def test_a_record_the_spool_cannot_keep_fails_its_call(
        make_registry: Callable[..., Registry], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="cachedeco")
    reg = down(make_registry, tmp_path)

    @reg.write_behind(key="event:{id}", flush=print, flush_interval=60)
    def save(id: str) -> dict[str, Any]:
        return {"id": id}

    @reg.cached(ttl=60, key="item:{x}")
    def item(x: int) -> int:
        return x

    with file_held(tmp_path / "spool.db"):
        with pytest.raises(BackendError, match="cannot keep a write-behind record") as raised:
            save("e1")
        assert item.invalidate(7) is False  # kept, in memory only
    assert raised.value.function is not None and raised.value.function.endswith("save")
    assert spooled(tmp_path / "spool.db") == []
    assert reg.stats().recoveries_pending == 1  # the drop; the record is nowhere
    assert len(_refusals(caplog)) == 1

    save("e2")  # the file free again: kept there
    assert len(spooled(tmp_path / "spool.db")) == 1


async def test_an_asyncio_record_the_spool_cannot_keep_fails_its_call(
        amake_registry: Callable[..., Registry], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="cachedeco")
    reg = down(amake_registry, tmp_path)
    save = asaver(reg)

    @reg.cached(ttl=60, key="item:{x}", tags=["items"])
    async def item(x: int) -> int:
        return x

    with file_held(tmp_path / "spool.db"):
        with pytest.raises(BackendError, match="cannot keep a write-behind record") as raised:
            await save("e1")
        assert await item.invalidate(7) is False  # kept, in memory only
        await reg.ainvalidate_tags("items")  # the same
    assert raised.value.function is not None and raised.value.function.endswith("save")
    assert spooled(tmp_path / "spool.db") == []
    assert reg.stats().recoveries_pending == 2  # the drop and the tag; the record is nowhere
    assert len(_refusals(caplog)) == 1  # rate-limited: one line for the outage

    assert await save("e2") == {"id": "e2"}  # the file free again: kept there
    assert len(spooled(tmp_path / "spool.db")) == 1


async def test_a_cancelled_call_whose_record_the_spool_cannot_keep_leaves_nothing(
        amake_registry: Callable[..., Registry], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    reg = down(amake_registry, tmp_path)
    save = asaver(reg)

    spool = reg.recovery.spool
    assert spool is not None
    with file_held(tmp_path / "spool.db"):
        call = asyncio.ensure_future(save("e1"))
        await apoll(lambda: spool._writing, timeout=10.0)  # its row waits for the file
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        assert call.cancelled()
        await apoll(lambda: not spool._writing, timeout=10.0)  # the write gave up
        await asyncio.sleep(0.05)  # its callbacks ran on the loop
    assert spooled(tmp_path / "spool.db") == []
    assert reg.stats().recoveries_pending == 0  # not queued in memory either
    assert caplog.records == []  # nor an error raised in a callback of the loop
