"""``cachedeco.metrics.PrometheusCollector`` on ``memory://``: the exposition after a known
sequence of calls, two registries, counters that never go down, and the hook a load gets
only while an exporter watches."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cachedeco import Registry, Stats
from cachedeco.flows import hot
from cachedeco.flows._sync import read as read_sync
from cachedeco.flows.spec import spec_of
from cachedeco.metrics import PrometheusCollector

COUNTERS = ("hits", "near_hits", "misses", "stale_hits", "loads", "load_errors",
            "backend_errors", "decode_errors", "singleflight_joins", "invalidations",
            "write_behind_flushed", "write_behind_dead")
HERE = __name__


def scrape(prom: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition by (name, sorted labels)."""
    text = generate_latest(prom).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[Any, float], name: str, prefix: str, function: str) -> float:
    return samples[name, (("function", function), ("prefix", prefix))]


@pytest.fixture
def reg() -> Iterator[Registry]:
    registry = Registry("memory://", prefix="shop", jitter=0)
    yield registry
    registry.close()


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Call ``later()`` and reads see the clock 5 s ahead (entries written before are stale)."""

    def ahead() -> None:
        clock = types.SimpleNamespace(time=lambda: time.time() + 5.0,
                                      perf_counter=time.perf_counter)
        monkeypatch.setattr(read_sync, "time", clock)
        monkeypatch.setattr(hot, "time", clock)  # the compiled memory:// hit's clock

    return ahead


def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_exposition_shows_exactly_what_happened(reg: Registry, later: Any) -> None:
    collector = PrometheusCollector(reg)
    prom = CollectorRegistry()
    prom.register(collector)

    @reg.cached(ttl=60, tags=["item:{x}"])
    def item(x: int) -> int:
        return x

    @reg.cached(ttl=60)
    def broken(x: int) -> int:
        raise LookupError(x)

    @reg.cached(ttl=1, stale_ttl=60)
    def price(x: int) -> int:
        return x * 10

    item(1), item(1), item(2), item(1)  # 2 misses (2 loads), 2 hits
    for _ in range(3):
        with pytest.raises(LookupError):
            broken(7)  # 3 misses, 3 load errors
    item.invalidate(1)  # an invalidation of item
    reg.invalidate_tags("item:2")  # a registry-wide one
    item(1), item(2)  # 2 misses, 2 loads
    price(1)  # a miss and a load
    later()
    assert price(1) == 10  # a stale hit, and a background refresh: one more load
    wait_for(lambda: price.stats().loads == 2)

    samples = scrape(prom)
    expect = {
        f"{HERE}.test_the_exposition_shows_exactly_what_happened.<locals>.item":
            {"hits": 2, "misses": 4, "loads": 4, "invalidations": 1},
        f"{HERE}.test_the_exposition_shows_exactly_what_happened.<locals>.broken":
            {"misses": 3, "load_errors": 3},
        f"{HERE}.test_the_exposition_shows_exactly_what_happened.<locals>.price":
            {"misses": 1, "stale_hits": 1, "loads": 2},
        "": {"invalidations": 1},
    }
    for function, counts in expect.items():
        for counter in COUNTERS:
            assert value(samples, f"cachedeco_{counter}_total", "shop", function) == (
                counts.get(counter, 0)), (function, counter)
        assert value(samples, "cachedeco_write_behind_pending", "shop", function) == 0
        if function:  # the histogram counts the loads that returned, and only those
            count = value(samples, "cachedeco_load_duration_seconds_count", "shop", function)
            assert count == counts.get("loads", 0)
    functions = {dict(labels)["function"] for (name, labels) in samples
                 if name == "cachedeco_hits_total"}
    assert functions == set(expect)


def test_every_counter_of_stats_is_exported(reg: Registry) -> None:
    prom = CollectorRegistry()
    prom.register(PrometheusCollector(reg))
    names = {name for name, _ in scrape(prom)}
    for field in Stats.__dataclass_fields__:
        gauge = field in ("write_behind_pending", "recoveries_pending")
        assert f"cachedeco_{field}{'' if gauge else '_total'}" in names


def test_write_behind_counters_are_per_writer(reg: Registry) -> None:
    prom = CollectorRegistry()
    prom.register(PrometheusCollector(reg))
    flushed: list[Any] = []

    @reg.cached(ttl=60)
    def load(x: int) -> dict[str, int]:
        return {"x": x}

    @reg.write_behind(load, flush=flushed.extend, batch_size=100, flush_interval=60)
    def save(x: int) -> dict[str, int]:
        return {"x": x}

    for x in range(3):
        save(x)
    writer = f"{HERE}.test_write_behind_counters_are_per_writer.<locals>.save"
    assert value(scrape(prom), "cachedeco_write_behind_pending", "shop", writer) == 3
    reg.flush()
    samples = scrape(prom)
    assert len(flushed) == 3
    assert value(samples, "cachedeco_write_behind_flushed_total", "shop", writer) == 3
    assert value(samples, "cachedeco_write_behind_pending", "shop", writer) == 0
    assert value(samples, "cachedeco_write_behind_dead_total", "shop", writer) == 0


def test_two_registries_are_told_apart_by_prefix_and_nothing_is_counted_twice() -> None:
    first, second = Registry("memory://", prefix="one"), Registry("memory://", prefix="two")
    everything, only_first = CollectorRegistry(), CollectorRegistry()
    everything.register(PrometheusCollector())  # every registry of the process
    only_first.register(PrometheusCollector(first))

    def make(reg: Registry) -> Any:
        @reg.cached(ttl=60)
        def shared_name(x: int) -> int:
            return x

        return shared_name

    one, two = make(first), make(second)
    one(1), one(1), two(1)
    name = f"{HERE}.test_two_registries_are_told_apart_by_prefix_and_nothing_is_counted_twice" \
           ".<locals>.make.<locals>.shared_name"
    samples = scrape(everything)
    assert value(samples, "cachedeco_hits_total", "one", name) == 1
    assert value(samples, "cachedeco_misses_total", "one", name) == 1
    assert value(samples, "cachedeco_hits_total", "two", name) == 0
    assert value(samples, "cachedeco_misses_total", "two", name) == 1
    for prefix in ("one", "two"):  # each load timed once, by each collector
        assert value(samples, "cachedeco_load_duration_seconds_count", prefix, name) == 1
    mine = scrape(only_first)
    assert value(mine, "cachedeco_misses_total", "one", name) == 1
    assert value(mine, "cachedeco_load_duration_seconds_count", "one", name) == 1
    assert not any(dict(labels).get("prefix") == "two" for _, labels in mine)
    first.close()
    second.close()


def test_counters_survive_configure_and_garbage_collection(reg: Registry) -> None:
    prom = CollectorRegistry()
    prom.register(PrometheusCollector(reg))

    def make() -> Any:
        @reg.cached(ttl=60)
        def gone(x: int) -> int:
            return x

        return gone

    gone = make()
    gone(1), gone(1), gone(2)
    name = f"{HERE}.test_counters_survive_configure_and_garbage_collection.<locals>.make" \
           ".<locals>.gone"
    reg.configure("memory://", prefix="shop", ttl=30)
    gone(1)  # a miss: configure() gave a new memory backend
    assert value(scrape(prom), "cachedeco_misses_total", "shop", name) == 3
    del gone
    gc.collect()
    samples = scrape(prom)
    assert value(samples, "cachedeco_hits_total", "shop", name) == 1
    assert value(samples, "cachedeco_misses_total", "shop", name) == 3
    assert value(samples, "cachedeco_loads_total", "shop", name) == 3
    assert (reg.stats().hits, reg.stats().misses, reg.stats().loads) == (1, 3, 3)
    again = make()  # the same name again: counts add up under it
    again(5)
    assert value(scrape(prom), "cachedeco_misses_total", "shop", name) == 4
    assert reg.stats().misses == 4


def test_configure_binds_no_function_under_the_old_prefix(reg: Registry) -> None:
    """configure() looks for records left in memory:// queues: it bound every write-behind
    function not used yet, under the old settings, so each showed a series of the old prefix
    for good (a collector made at import, configure() in the app's start-up)."""
    prom = CollectorRegistry()
    prom.register(PrometheusCollector(reg))

    @reg.write_behind(key="v:{i}", flush=lambda records: None)
    def record(i: int) -> dict[str, int]:
        return {"i": i}

    reg.configure("memory://", prefix="app")
    record(1)
    reg.flush()
    prefixes = {dict(labels).get("prefix") for _, labels in scrape(prom)}
    assert prefixes == {"app"}, prefixes


def test_a_new_prefix_counts_from_zero_and_the_old_keeps_its_counts(reg: Registry) -> None:
    """configure(prefix=...) moved the whole history to the new prefix's series (the old ones
    vanished), and in multiprocess mode, where both stayed, a sum over prefixes counted it
    twice. Counts made under a prefix stay under it; reg.stats() counts everything."""
    prom = CollectorRegistry()
    prom.register(PrometheusCollector(reg))

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    for _ in range(8):
        f(1)  # 1 miss, 7 hits under "shop"
    name = f"{HERE}.test_a_new_prefix_counts_from_zero_and_the_old_keeps_its_counts" \
           ".<locals>.f"
    reg.configure("memory://", prefix="app")
    f(1)  # a miss: a new backend
    f(1)
    samples = scrape(prom)
    assert value(samples, "cachedeco_hits_total", "shop", name) == 7
    assert value(samples, "cachedeco_misses_total", "shop", name) == 1
    assert value(samples, "cachedeco_hits_total", "app", name) == 1
    assert value(samples, "cachedeco_misses_total", "app", name) == 1
    assert (reg.stats().hits, reg.stats().misses) == (8, 2)
    reg.configure("memory://", prefix="shop")  # back: counted on from where it was
    f(1)
    samples = scrape(prom)
    assert value(samples, "cachedeco_misses_total", "shop", name) == 2
    assert value(samples, "cachedeco_misses_total", "app", name) == 1


def test_a_load_gets_a_hook_only_while_an_exporter_watches(reg: Registry) -> None:
    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    f(1)
    assert spec_of(f).bound().watch is None  # the usual case: nothing more on any call
    collector = PrometheusCollector(reg)
    f(2)
    assert spec_of(f).bound().watch is not None  # bound again, once
    collector.close()
    f(3)
    assert spec_of(f).bound().watch is None


def test_a_collector_of_every_registry_watches_registries_made_later() -> None:
    prom = CollectorRegistry()
    collector = PrometheusCollector()
    prom.register(collector)
    reg = Registry("memory://", prefix="later")

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    f(1)
    name = f"{HERE}.test_a_collector_of_every_registry_watches_registries_made_later" \
           ".<locals>.f"
    assert value(scrape(prom), "cachedeco_load_duration_seconds_count", "later", name) == 1
    collector.close()
    reg.close()


def test_importing_cachedeco_imports_no_exporter_package() -> None:
    # redis-py itself may import opentelemetry when it is installed: count only what
    # cachedeco adds to what its dependencies imported
    code = """
import sys
import orjson, redis, redis.asyncio
before = set(sys.modules)
import cachedeco, cachedeco.metrics
reg = cachedeco.configure("memory://", prefix="p")
@cachedeco.cached
def f(x):
    return x
f(1); f(1)
added = sorted(m for m in set(sys.modules) - before
               if m.split(".")[0] in ("prometheus_client", "opentelemetry"))
assert not added, added
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_a_missing_extra_is_a_configuration_error_naming_it() -> None:
    code = """
import sys
sys.modules["prometheus_client"] = None
sys.modules["opentelemetry"] = None
from cachedeco import ConfigurationError
from cachedeco.metrics import PrometheusCollector, instrument_otel
for make, extra in ((PrometheusCollector, "prometheus"), (instrument_otel, "otel")):
    try:
        make()
    except ConfigurationError as exc:
        assert f"cachedeco[{extra}]" in str(exc), exc
    else:
        raise AssertionError("no error")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
