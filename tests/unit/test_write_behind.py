"""``@write_behind`` without a server: what is refused at decoration, what only the in-process
queue of ``memory://`` does (a held entry outlives its TTL until flushed, records left at exit
are reported, configure() will not strand them), and the pure delivery flow. (On every
deployment: tests/features/test_write_behind*.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cachedeco
from cachedeco import ConfigurationError, Registry
from cachedeco.backends.contracts.queues import Message, NotSettled
from cachedeco.core.stats import Stats
from cachedeco.flows.delivery import Ack, Bury, Flush, Job, Settings, deliver, describe
from tests.support.events import Events

pytestmark = pytest.mark.deployments("memory")


# --- refused at decoration -------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"batch_size": 0}, {"batch_size": 1.5}, {"batch_size": True}, {"batch_size": 10**6},
    {"flush_interval": 0}, {"flush_interval": float("nan")}, {"flush_interval": "5"},
    {"max_retries": -1}, {"max_retries": 2.0}, {"coalesce": 1}, {"claim_after": 0},
    {"retry_delay": -1}, {"ttl": 0}, {"tags": "t"}, {"backend": 3}, {"backend": "nope"},
    {"registry": object()}, {"flush": 42},
])
def test_bad_arguments_are_refused_at_decoration(reg: Registry, options: dict[str, Any]) -> None:
    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict[str, Any]:
        return {}

    options = {"flush": list.append, "registry": reg, **options}
    with pytest.raises(ConfigurationError):
        decorator = cachedeco.write_behind(key="e:{event_id}", **options)

        @decorator
        def record_event(event_id: str) -> dict[str, Any]:
            return {}


def test_target_and_key_are_exclusive_and_names_unique(reg: Registry) -> None:
    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict[str, Any]:
        return {}

    with pytest.raises(ConfigurationError):
        @cachedeco.write_behind(get_event, key="e:{event_id}", flush=print)
        def both(event_id: str) -> dict[str, Any]:
            return {}

    with pytest.raises(ConfigurationError):  # the target's parameter is missing
        @cachedeco.write_behind(get_event, flush=print)
        def unnamed(other: str) -> dict[str, Any]:
            return {}

    def twice() -> None:
        @cachedeco.write_behind(key="e:{event_id}", flush=print, registry=reg)
        def record(event_id: str) -> dict[str, Any]:
            return {}

    twice()
    with pytest.raises(ConfigurationError, match="already attached"):
        twice()


# --- the in-process queue of memory:// ------------------------------------------------------------


def test_a_pending_entry_does_not_expire_before_its_flush(reg: Registry,
                                                          events: Events) -> None:
    loads = []

    @cachedeco.cached(ttl=1, jitter=0, registry=reg)
    def get_event(event_id: str) -> dict[str, Any] | None:
        loads.append(event_id)
        return None

    @cachedeco.write_behind(get_event, flush=events.flush, flush_interval=3600)
    def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    record_event("a", 1)
    time.sleep(1.2)  # past the reader's TTL, but the record is not flushed yet
    assert get_event("a") == {"id": "a", "v": 1}
    reg.flush()
    time.sleep(1.2)  # flushed: the normal TTL applies again
    assert get_event("a") is None and loads == ["a"]


def test_exit_with_records_in_memory_logs_a_warning(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import cachedeco

        reg = cachedeco.Registry("memory://")

        @cachedeco.write_behind(key="e:{i}", flush=print, flush_interval=3600, registry=reg)
        def record(i: int) -> int:
            return i

        for i in range(3):
            record(i)
    """)
    path = tmp_path / "leave.py"
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=30, check=True)
    assert "3 write-behind record(s)" in done.stderr and "lost" in done.stderr


def test_configure_refuses_to_strand_records_waiting_in_memory(
        make_registry: Callable[..., Registry], events: Events) -> None:
    reg = make_registry("memory://", prefix="strand")

    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict[str, Any]:
        raise AssertionError("served from the cache")

    @cachedeco.write_behind(get_event, flush=events.flush, flush_interval=60, registry=reg)
    def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    record_event("e1", 1)
    with pytest.raises(ConfigurationError, match="flush"):
        reg.configure("memory://", prefix="strand")
    assert reg.prefix == "strand" and events.rows() == []
    reg.flush()
    reg.configure("memory://", prefix="other")
    assert events.rows() == [("e1", 1)]


# --- the flow itself (no queue) -------------------------------------------------------------------


def _ack_of(*, fail: bool, answer: int | BaseException = 0,
            unsettled: list[Any] | None = None) -> tuple[Ack, Job]:
    """Drive one batch of the pure flow: records k=A, k=B (newer), j=C; return its Ack (to
    which the queue answers ``answer``: a length, or an exception) and the job."""
    settings = Settings(name="f", batch_size=10, flush_interval=1.0, coalesce=True,
                        max_retries=0, claim_after=30.0, retry_delay=0.01)
    noted = [] if unsettled is None else unsettled
    job = Job(settings, Stats(), durable=False, decode=lambda r, key: r,
              expiry=lambda now, value: (now + 60, 60_000), tomb_px=70_000, stop=lambda: False,
              describe=describe, unsettled=lambda keys, exc: noted.append((keys, exc)))
    messages = [Message("1-0", {"v": 1}, "k", "cd1:" + "a" * 16),
                Message("2-0", {"v": 2}, "k", "cd1:" + "b" * 16),
                Message("3-0", {"v": 3}, "j", "cd1:" + "c" * 16)]
    flow = deliver(job, messages)
    op = next(flow)
    assert isinstance(op, Flush) and op.records == [{"v": 2}, {"v": 3}]  # coalesced
    if fail:
        op = flow.throw(RuntimeError("down"))
        assert isinstance(op, Bury) and op.ids == ("2-0", "3-0")
        op = flow.send(0)
    else:
        op = flow.send(None)
    assert isinstance(op, Ack)
    with pytest.raises(StopIteration):
        flow.throw(answer) if isinstance(answer, BaseException) else flow.send(answer)
    return op, job


def test_the_ack_settles_each_flushed_key_once_naming_the_records_it_superseded() -> None:
    """One settling per key: its newest record's marker, and the older records' markers (on
    Redis Cluster an older call's entry may land after a newer call's: it must give way, not
    stay held nor be served), each with a fresh marker and a tombstone of its own."""
    ack, _ = _ack_of(fail=False)
    assert set(ack.ids) == {"1-0", "2-0", "3-0"}
    assert sorted((r.key, r.marker[4], tuple(m[4] for m in r.older)) for r in ack.restores) == [
        ("j", "c", ()), ("k", "b", ("a",))]
    assert all(r.px == 60_000 for r in ack.restores)
    assert len({r.fresh for r in ack.restores} | {r.tomb for r in ack.restores}) == 4
    assert all(r.fresh.startswith("cd1:") and r.tomb.startswith("cdT:") for r in ack.restores)


def test_entries_an_ack_could_not_settle_are_handed_to_auto_recovery() -> None:
    """The queue acknowledged the records but could not settle their entries (a cluster node
    down): the flow goes on, counting the queue's length, and hands the keys over."""
    cause = ConnectionError("entry node down")
    refused = NotSettled(4, ("k", "j"))
    refused.__cause__ = cause
    noted: list[Any] = []
    _, job = _ack_of(fail=False, answer=refused, unsettled=noted)
    assert noted == [(("k", "j"), cause)]
    assert job.stats.write_behind_pending == 4 and job.stats.write_behind_flushed == 2


def test_a_buried_batch_restores_nothing() -> None:
    ack, _ = _ack_of(fail=True)
    assert ack.ids == ("1-0",)  # the superseded record is acked; its key was not delivered
    assert ack.restores == ()
