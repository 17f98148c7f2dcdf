"""A log line says whose it is: one about a registry names its prefix, in the text and on the
record (two registries whose backends share a name, "default", are told apart in one
service's log), and one about a write-behind batch names its function."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import fakeredis
import pytest

from cachedeco import Registry
from cachedeco.core.logs import PREFIX_FIELD
from cachedeco.flows._sync.deliver import _keeping
from cachedeco.flows.delivery import Settings
from tools.servers.process import free_port


@pytest.fixture
def two_down(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[Registry, Registry]]:
    """Two registries on one server that refuses connections, each under its own prefix."""
    caplog.set_level(logging.WARNING, logger="cachedeco")
    url = f"redis://127.0.0.1:{free_port()}/0"
    regs = (Registry(url, prefix="shop", stats_interval=0),
            Registry(url, prefix="billing", stats_interval=0))
    yield regs
    for reg in regs:
        reg.close()


def _said(caplog: pytest.LogCaptureFixture, part: str) -> list[tuple[str, object]]:
    """The lines that contain ``part``, each with the prefix its record carries."""
    return [(r.getMessage(), getattr(r, PREFIX_FIELD, None)) for r in caplog.records
            if r.name == "cachedeco" and part in r.getMessage()]


def test_a_failed_read_names_the_registry(two_down: tuple[Registry, Registry],
                                          caplog: pytest.LogCaptureFixture) -> None:
    shop, billing = two_down
    for reg in (shop, billing):
        @reg.cached(ttl=60)
        def price(item: int) -> int:
            return item * 2

        assert price(3) == 6  # served by the function (fail open)
    lines = _said(caplog, "failed to")
    assert [(text.split(":")[0], field) for text, field in lines] == [
        ("cachedeco[shop]", "shop"), ("cachedeco[billing]", "billing")]
    assert all(text.split(": ", 1)[1].startswith("backend 'default' failed to ")
               for text, _ in lines), lines


def test_an_outage_begins_in_the_log_of_its_registry(two_down: tuple[Registry, Registry],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    shop, billing = two_down
    shop.invalidate_tags("product:1")  # kept by auto-recovery: its outage is said
    lines = _said(caplog, "is unreachable")
    assert [field for _, field in lines] == ["shop"]
    assert lines[0][0].startswith("cachedeco[shop]: backend 'default' is unreachable "
                                  "(ConnectionError: "), lines
    assert billing.stats().recoveries_pending == 0


def test_a_failed_flush_names_the_registry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cachedeco")
    written: list[dict[str, int]] = []
    with Registry("memory://", prefix="shop", stats_interval=0) as reg:
        def flush(records: list[dict[str, int]]) -> None:
            if not written:
                written.append({})  # the database is down once
                raise RuntimeError("database down")
            written.extend(records)

        @reg.write_behind(key="event:{i}", flush=flush, max_retries=0)
        def record(i: int) -> dict[str, int]:
            return {"i": i}

        record(1)
        reg.flush()
        assert len(reg.dead_letters()) == 1
        assert reg.replay_dead_letters() == 1
        reg.flush()  # delivered now: nothing is left in memory at exit
    assert written == [{}, {"i": 1}]
    assert [field for _, field in _said(caplog, "moved to the dead letters")] == ["shop"]


class _Unreachable:
    """A durable queue whose server stopped answering: a batch's lease cannot be renewed."""

    durable = True

    def renew(self, consumer: str, ids: tuple[str, ...]) -> object:
        raise ConnectionError("Connection refused")


def test_a_lease_that_cannot_be_renewed_names_its_function(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cachedeco")
    settings = Settings(name="shop.record_view", batch_size=10, flush_interval=1.0,
                        coalesce=True, max_retries=0, claim_after=0.03, retry_delay=0.01)
    with _keeping(_Unreachable(), "me", ("1-0",), settings):
        time.sleep(0.1)  # renewed every claim_after / 3: a few failures, one line
    assert [text for text, _ in _said(caplog, "renew")] == [
        "cachedeco: cannot renew the lease on a write-behind batch of shop.record_view "
        "(Connection refused)"]


def test_every_line_carries_the_field_so_a_format_may_name_it(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cachedeco")
    with Registry(fakeredis.FakeRedis(), prefix="shop", stats_interval=0) as reg:
        @reg.cached(ttl=60)
        def pair(item):  # type: ignore[no-untyped-def]  # JSON reads a tuple back as a list
            return (item, item)

        assert pair(1) == (1, 1)  # a line about the function's values: no registry's
    with Registry(f"redis://127.0.0.1:{free_port()}/0", prefix="shop",
                  stats_interval=0) as down:
        @down.cached(ttl=60)
        def cost(item: int) -> int:
            return item

        assert cost(1) == 1  # a line about the registry's backend
    line = logging.Formatter("%(cachedeco_prefix)s | %(message)s")
    formatted = [line.format(r) for r in caplog.records if r.name == "cachedeco"]
    assert [f.split(" | ")[0] for f in formatted] == ["None", "shop"], formatted
    assert formatted[0].startswith("None | cachedeco: ") and "returned a value of type tuple" in (
        formatted[0])
    assert formatted[1].startswith("shop | cachedeco[shop]: backend 'default' failed to read")
