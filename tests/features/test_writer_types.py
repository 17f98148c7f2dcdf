"""Values stored as a reader's entry by something else than its load: a writer that declares
another return type than its target's (a dict for a reader of dataclasses, as in the API's
write-behind example), an unannotated writer, ``f.set()``. On every backend the target's
readers get the target's type, and ``flush`` the records as the writer declared them (the
target's type when it declares none). (Redis decoded the entry as the target's type while
memory:// served the writer's dict, and Redis handed ``flush`` dataclasses where memory://
handed it dicts.)"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import cachedeco
from cachedeco import Registry
from tests.support.deployments import BACKENDS, Deployment

pytestmark = pytest.mark.deployments(*BACKENDS)

KEY = "k" * 32


@dataclass(frozen=True)
class Analysis:
    id: str
    status: str


def readers(reg: Registry) -> tuple[Callable[..., Any], list[str]]:
    """A @cached reader of Analysis values, and the log of its loads."""
    loads: list[str] = []

    @cachedeco.cached(ttl=60, registry=reg)
    def get_analysis(analysis_id: str) -> Analysis:
        loads.append(analysis_id)
        return Analysis(analysis_id, "db")

    return get_analysis, loads


def test_write_behind_readers_get_the_target_type_and_flush_the_writer_type(
        reg: Registry, caplog: pytest.LogCaptureFixture) -> None:
    get_analysis, loads = readers(reg)
    flushed: list[Any] = []

    @cachedeco.write_behind(get_analysis, flush=flushed.extend, registry=reg)
    def save_analysis(analysis_id: str, status: str) -> dict[str, Any]:
        return {"id": analysis_id, "status": status}

    with caplog.at_level(logging.WARNING, logger="cachedeco"):
        assert save_analysis("a1", "queued") == {"id": "a1", "status": "queued"}
        read = get_analysis("a1")
        reg.flush()
    assert read == Analysis("a1", "queued") and type(read) is Analysis
    assert loads == []  # the written entry, not a load
    assert flushed == [{"id": "a1", "status": "queued"}] and type(flushed[0]) is dict
    assert caplog.records == []  # the documented pattern warns of nothing


def test_write_behind_dead_letters_hold_the_writer_type(reg: Registry) -> None:
    get_analysis, _ = readers(reg)

    flushed: list[Any] = []

    def flush(records: list[Any]) -> None:
        if not flushed:
            flushed.append("refused")
            raise RuntimeError("the database is down")
        flushed.extend(records)

    @cachedeco.write_behind(get_analysis, flush=flush, max_retries=0, registry=reg)
    def save_analysis(analysis_id: str, status: str) -> dict[str, Any]:
        return {"id": analysis_id, "status": status}

    save_analysis("a2", "queued")
    reg.flush()
    letters = reg.dead_letters()
    assert [letter.record for letter in letters] == [{"id": "a2", "status": "queued"}]
    assert type(letters[0].record) is dict
    assert reg.replay_dead_letters() == 1  # (a dead letter left in memory warns at exit)
    reg.flush()
    assert flushed == ["refused", {"id": "a2", "status": "queued"}]


def test_write_through_readers_get_the_target_type(reg: Registry) -> None:
    get_analysis, loads = readers(reg)

    @cachedeco.write_through(get_analysis, registry=reg)
    def update_analysis(analysis_id: str, status: str) -> dict[str, Any]:
        return {"id": analysis_id, "status": status}

    get_analysis("a3")
    assert update_analysis("a3", "done") == {"id": "a3", "status": "done"}
    read = get_analysis("a3")
    assert read == Analysis("a3", "done") and type(read) is Analysis
    assert loads == ["a3"]  # the first read alone loaded


def test_a_result_the_target_type_cannot_hold_is_a_counted_miss(reg: Registry) -> None:
    """As on Redis, where it is stored and its readers fail to decode it: the reader loads."""
    get_analysis, loads = readers(reg)

    @cachedeco.write_through(get_analysis, registry=reg)
    def update_analysis(analysis_id: str, status: str) -> dict[str, Any]:
        return {"id": analysis_id}  # no status: not an Analysis

    update_analysis("a4", "done")
    assert get_analysis("a4") == Analysis("a4", "db")
    assert loads == ["a4"]
    assert reg.stats().decode_errors == 1


def test_a_writer_of_the_target_type_stores_its_result_as_it_is(
        reg: Registry, deployment: Deployment) -> None:
    get_analysis, loads = readers(reg)

    @cachedeco.write_through(get_analysis, registry=reg)
    def update_analysis(analysis_id: str, status: str) -> Analysis:
        return Analysis(analysis_id, status)

    written = update_analysis("a5", "done")
    read = get_analysis("a5")
    assert read == written and loads == []
    if not deployment.has_server:
        assert read is written  # memory:// keeps the object: nothing converted


def test_sensitive_write_behind_flushes_the_writer_type(make_registry: Callable[..., Registry],
                                                        deployment: Deployment) -> None:
    reg = make_registry(deployment.url, encryption_key=KEY)
    flushed: list[Any] = []

    @cachedeco.cached(ttl=60, sensitive=True, registry=reg)
    def get_analysis(analysis_id: str) -> Analysis:
        return Analysis(analysis_id, "db")

    @cachedeco.write_behind(get_analysis, flush=flushed.extend, sensitive=True, registry=reg)
    def save_analysis(analysis_id: str, status: str) -> dict[str, Any]:
        return {"id": analysis_id, "status": status}

    save_analysis("a6", "queued")
    assert get_analysis("a6") == Analysis("a6", "queued")
    reg.flush()
    assert flushed == [{"id": "a6", "status": "queued"}]


async def test_async_writers_alike(reg: Registry) -> None:
    flushed: list[Any] = []

    @cachedeco.cached(ttl=60, registry=reg)
    async def get_analysis(analysis_id: str) -> Analysis:
        return Analysis(analysis_id, "db")

    @cachedeco.write_behind(get_analysis, flush=flushed.extend, registry=reg)
    async def save_analysis(analysis_id: str, status: str) -> dict[str, Any]:
        return {"id": analysis_id, "status": status}

    @cachedeco.write_through(get_analysis, registry=reg)
    async def update_analysis(analysis_id: str, status: str) -> dict[str, Any]:
        return {"id": analysis_id, "status": status}

    await save_analysis("a7", "queued")
    await update_analysis("a8", "done")
    assert [await get_analysis("a7"), await get_analysis("a8")] == [
        Analysis("a7", "queued"), Analysis("a8", "done")]
    await reg.aflush()
    assert flushed == [{"id": "a7", "status": "queued"}] and type(flushed[0]) is dict


def test_an_unannotated_writer_stores_and_flushes_the_target_type(
        reg: Registry, caplog: pytest.LogCaptureFixture) -> None:
    """It declares no type: its entry and its records are the target's, on every backend;
    the warning that a hit returns another type than it returned names the writer."""
    caplog.set_level(logging.WARNING, logger="cachedeco")
    get_analysis, loads = readers(reg)
    flushed: list[Any] = []

    @cachedeco.write_through(get_analysis, registry=reg)
    def update_analysis(analysis_id, status):  # type: ignore[no-untyped-def]
        return {"id": analysis_id, "status": status}

    @cachedeco.write_behind(get_analysis, flush=flushed.extend, registry=reg)
    def save_analysis(analysis_id, status):  # type: ignore[no-untyped-def]
        return {"id": analysis_id, "status": status}

    update_analysis("b1", "done")
    save_analysis("b2", "queued")
    read = [get_analysis("b1"), get_analysis("b2")]
    assert read == [Analysis("b1", "done"), Analysis("b2", "queued")]
    assert all(type(r) is Analysis for r in read) and loads == []
    reg.flush()
    assert flushed == [Analysis("b2", "queued")] and type(flushed[0]) is Analysis
    warned = [r.getMessage() for r in caplog.records if "a cache hit returns" in r.getMessage()]
    assert len(warned) == 2 and "update_analysis returned a value of type dict" in warned[0]
    assert "save_analysis returned a value of type dict" in warned[1]


def test_set_stores_the_function_type(reg: Registry, deployment: Deployment) -> None:
    """f.set() stores as a write-through would: a dict for a function of dataclasses is read
    back as the dataclass, on memory:// as on Redis; a value of its type is kept as it is."""
    get_analysis, loads = readers(reg)
    get_analysis.set({"id": "c1", "status": "set"}, "c1")
    read = get_analysis("c1")
    assert read == Analysis("c1", "set") and type(read) is Analysis and loads == []
    mine = Analysis("c2", "set")
    get_analysis.set(mine, "c2")
    assert get_analysis("c2") == mine
    if not deployment.has_server:
        assert get_analysis("c2") is mine  # memory:// keeps the object: nothing converted


def test_set_on_a_function_of_plain_json_types_keeps_the_value(reg: Registry) -> None:
    @cachedeco.cached(ttl=60, registry=reg)
    def get_doc(doc_id: str) -> dict[str, Any]:
        return {}

    doc = {"id": "d1", "tags": ["a"]}
    get_doc.set(doc, "d1")
    assert get_doc("d1") == doc
