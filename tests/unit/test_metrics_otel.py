"""``cachedeco.metrics.instrument_otel`` with the OpenTelemetry SDK's in-memory metric reader
and span exporter: the same counts as ``Stats``, one ``cachedeco.load`` span per load with its
outcome, and never a key or an argument value in a span or a metric attribute."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cachedeco import Registry, Stats
from cachedeco.metrics import OtelInstrumentation, instrument_otel

MARKER = "m4rker-7f3a"  # in every argument and key: must show nowhere in telemetry
HERE = __name__


class Telemetry:
    """An SDK meter provider with an in-memory reader and a tracer provider with an
    in-memory span exporter."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))

    def instrument(self, reg: Registry) -> OtelInstrumentation:
        return instrument_otel(reg, meter_provider=self.meters, tracer_provider=self.tracers)

    def points(self) -> dict[str, list[Any]]:
        """Every data point by instrument name."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out

    def counts(self, function: str, points: dict[str, list[Any]] | None = None) -> dict[str, int]:
        """``cachedeco.<counter>`` -> value for one function (from ``points`` when given: an
        SDK as old as 1.20 reports a histogram's points only in the first collection after
        them)."""
        collected = self.points() if points is None else points
        return {name.removeprefix("cachedeco."): point.value
                for name, each in collected.items() if name != "cachedeco.load.duration"
                for point in each if point.attributes["cachedeco.function"] == function}

    def load_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == "cachedeco.load"]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    yield made
    made.meters.shutdown()
    made.tracers.shutdown()


@pytest.fixture
def reg() -> Iterator[Registry]:
    registry = Registry("memory://", prefix="otel", jitter=0)
    yield registry
    registry.close()


def test_instruments_report_the_stats_and_spans_the_loads(reg: Registry,
                                                         telemetry: Telemetry) -> None:
    telemetry.instrument(reg)

    @reg.cached(ttl=60, key="user:{email}", tags=["user:{email}"])
    def user(email: str) -> dict[str, str]:
        return {"email": email}

    @reg.cached(ttl=60)
    def broken(token: str) -> int:
        raise PermissionError(f"bad token {token}")

    for i in range(3):
        user(f"{i}-{MARKER}@example.org")
    user(f"0-{MARKER}@example.org")
    user.invalidate(f"1-{MARKER}@example.org")
    with pytest.raises(PermissionError):
        broken(f"secret-{MARKER}")

    name = f"{HERE}.test_instruments_report_the_stats_and_spans_the_loads.<locals>.user"
    failing = f"{HERE}.test_instruments_report_the_stats_and_spans_the_loads.<locals>.broken"
    collected = telemetry.points()
    for function, stats in ((name, user.stats()), (failing, broken.stats())):
        counts = telemetry.counts(function, collected)
        assert set(counts) == set(Stats.__dataclass_fields__)
        assert counts == {field: getattr(stats, field) for field in counts}
    assert telemetry.counts(name, collected)["hits"] == 1
    assert telemetry.counts(name, collected)["loads"] == 3
    assert telemetry.counts(name, collected)["invalidations"] == 1
    assert telemetry.counts(failing, collected)["load_errors"] == 1

    spans = telemetry.load_spans()
    assert [s.attributes["cachedeco.function"] for s in spans] == [name] * 3 + [failing]
    assert [s.attributes["cachedeco.outcome"] for s in spans] == ["ok"] * 3 + ["error"]
    assert spans[-1].status.status_code is StatusCode.ERROR
    assert spans[-1].attributes["error.type"] == "PermissionError"
    assert all(s.status.status_code is StatusCode.UNSET for s in spans[:3])
    durations = collected["cachedeco.load.duration"]
    assert sum(p.count for p in durations) == 4

    # no key, argument or exception message anywhere: span names, attributes, events,
    # status descriptions, links, and every metric point's attributes
    dumped = json.dumps([json.loads(s.to_json()) for s in telemetry.spans.get_finished_spans()])
    assert MARKER not in dumped
    for points in collected.values():
        for point in points:
            assert MARKER not in json.dumps(dict(point.attributes))


def test_the_load_span_is_current_while_the_function_runs(reg: Registry,
                                                         telemetry: Telemetry) -> None:
    telemetry.instrument(reg)
    tracer = telemetry.tracers.get_tracer("app")

    @reg.cached(ttl=60)
    def query(x: int) -> int:
        with tracer.start_as_current_span("db.query"):
            return x

    query(1)
    spans = {s.name: s for s in telemetry.spans.get_finished_spans()}
    inner, load = spans["db.query"], spans["cachedeco.load"]
    assert inner.parent is not None and load.context is not None
    assert inner.parent.span_id == load.context.span_id


async def test_async_loads_and_cancellations_are_spanned(reg: Registry,
                                                         telemetry: Telemetry) -> None:
    telemetry.instrument(reg)
    started = asyncio.Event()

    @reg.cached(ttl=60)
    async def slow(x: int) -> int:
        started.set()
        await asyncio.sleep(30)
        return x

    @reg.cached(ttl=60)
    async def fast(x: int) -> int:
        return x

    assert await fast(1) == 1
    task = asyncio.ensure_future(slow(1))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [s.attributes["cachedeco.outcome"] for s in telemetry.load_spans()] == [
        "ok", "cancelled"]
    assert slow.stats().load_errors == 0  # a cancellation is no load error


def test_instrumenting_twice_changes_nothing_and_uninstrument_stops(
        reg: Registry, telemetry: Telemetry) -> None:
    first = telemetry.instrument(reg)
    telemetry.instrument(reg)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    f(1)
    assert len(telemetry.load_spans()) == 1
    name = f"{HERE}.test_instrumenting_twice_changes_nothing_and_uninstrument_stops.<locals>.f"
    assert telemetry.counts(name)["misses"] == 1
    first.uninstrument()
    f(2)
    assert len(telemetry.load_spans()) == 1
    assert telemetry.counts(name) == {}


def test_two_registries_on_one_meter_provider_are_told_apart(telemetry: Telemetry) -> None:
    regs = [Registry("memory://", prefix=p) for p in ("red", "blue")]
    for reg in regs:
        telemetry.instrument(reg)

    def make(reg: Registry) -> Any:
        @reg.cached(ttl=60)
        def f(x: int) -> int:
            return x

        return f

    red, blue = make(regs[0]), make(regs[1])
    red(1), red(1), blue(1)
    hits = {point.attributes["cachedeco.prefix"]: point.value
            for point in telemetry.points()["cachedeco.hits"]
            if point.attributes["cachedeco.function"].endswith(".make.<locals>.f")}
    assert hits == {"red": 1, "blue": 0}
    for reg in regs:
        reg.close()


def test_the_default_registry_when_none_is_given(telemetry: Telemetry) -> None:
    import cachedeco

    done = instrument_otel(meter_provider=telemetry.meters, tracer_provider=telemetry.tracers)
    try:
        assert done.registry is cachedeco.registry
    finally:
        done.uninstrument()
