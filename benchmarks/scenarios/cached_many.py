"""Loading 100 ids, 10 of them missing: one ``@cached_many`` call against 100 ``@cached``
calls, sync and async, on Redis.

Every operation asks for 100 ids: 90 warm ones and 10 never seen before, so each misses 10%.
``@cached_many`` reads all 100 entries in one round trip (one ``MGET``), calls the function
once with the 10 missing ids and stores them; the baseline, one ``@cached`` call per id
(the N+1 of repository code), makes 100 reads and 10 calls. Both functions are instant, so
the table shows cachedeco's own cost. Extra columns: ``reads/op`` (``MGET`` commands per
operation, from ``INFO commandstats``) and ``calls/op`` (function calls per operation).
Target: one read and one call per operation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import cachedeco
from benchmarks.harness import Plan, Variant, measure, rows_for
from benchmarks.rig import Rig
from benchmarks.servers import command_count
from benchmarks.workload import record

__all__ = ["NEEDS_REDIS", "run"]

NEEDS_REDIS = True
IDS, MISSING = 100, 10
WARM = list(range(IDS - MISSING))
Ids = Callable[[], list[int]]


def _ids() -> Ids:
    """Each call: the warm ids, then ``MISSING`` ids never asked for before."""
    fresh: Iterator[int] = itertools.count(1_000_000)

    def next_ids() -> list[int]:
        return WARM + list(itertools.islice(fresh, MISSING))

    return next_ids


class _Counted:
    """The functions of one row, counting their calls."""

    def __init__(self) -> None:
        self.calls = 0

    def many(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        self.calls += 1
        return {i: record(i) for i in ids}

    async def amany(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        return self.many(ids)

    def one(self, user_id: int) -> dict[str, Any]:
        self.calls += 1
        return record(user_id)

    async def aone(self, user_id: int) -> dict[str, Any]:
        return self.one(user_id)


def _rows(rig: Rig, flavour: str) -> list[tuple[Variant, _Counted]]:
    """The baseline (100 @cached calls) and the @cached_many row of one flavour."""
    per_id, batched = _Counted(), _Counted()
    # apart: with one template, each row would find the entries the other just filled
    key, key_one = f"many-{flavour}:{{id}}", f"one-{flavour}:{{user_id}}"
    if flavour == "sync":
        one = cachedeco.cached(ttl=3600, key=key_one, registry=rig.reg)(per_id.one)
        many = cachedeco.cached_many(ttl=3600, key=key, registry=rig.reg)(batched.many)
        base_batch = _batch(_ids(), lambda ids: [one(i) for i in ids])
        many_batch = _batch(_ids(), many)
    else:
        aone = cachedeco.cached(ttl=3600, key=key_one, registry=rig.reg)(per_id.aone)
        amany = cachedeco.cached_many(ttl=3600, key=key, registry=rig.reg)(batched.amany)

        async def each(ids: list[int]) -> None:
            for i in ids:
                await aone(i)

        base_batch = _abatch(rig, _ids(), each)
        many_batch = _abatch(rig, _ids(), amany)
    base = Variant(f"{IDS} x @cached", base_batch, group=flavour)
    row = Variant("@cached_many", many_batch, group=flavour, baseline=base,
                  target_text="1 read, 1 call per op")
    return [(base, per_id), (row, batched)]


def _batch(next_ids: Ids, call: Callable[[list[int]], object]) -> Callable[[int], None]:
    def batch(n: int) -> None:
        for _ in range(n):
            call(next_ids())

    return batch


def _abatch(rig: Rig, next_ids: Ids, call: Callable[[list[int]], Any]) -> Callable[[int], None]:
    async def run(n: int) -> None:
        for _ in range(n):
            await call(next_ids())

    def batch(n: int) -> None:
        rig.loop.run_until_complete(run(n))

    return batch


def _counts(rig: Rig, variant: Variant, counted: _Counted, n: int) -> dict[str, float]:
    """Reads (``MGET``) and function calls per operation over ``n`` operations."""
    before, calls = command_count(rig.client, "mget"), counted.calls
    variant.batch(n)
    return {"reads/op": (command_count(rig.client, "mget") - before) / n,
            "calls/op": (counted.calls - calls) / n}


def run(redis_url: str | None, quick: bool) -> list[dict[str, Any]]:
    """Measure both rows of both flavours, interleaved; see the module docstring."""
    if redis_url is None:
        return []
    with Rig(redis_url, "cached_many") as rig:
        pairs = [*_rows(rig, "sync"), *_rows(rig, "async")]
        variants = [variant for variant, _ in pairs]
        samples = measure(variants, Plan.for_mode(quick), "batches", warmup=1, max_n=2_000)
        rows = rows_for(variants, samples)
        for (variant, counted), row in zip(pairs, rows, strict=True):
            row.update(_counts(rig, variant, counted, 5 if quick else 20))
            if variant.baseline is not None:
                row["target"] = variant.target_text
                row["met"] = row["reads/op"] == 1.0 and row["calls/op"] == 1.0
        return rows
