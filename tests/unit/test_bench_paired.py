"""The sensitive rows' CPU over plain: back-to-back pairs in alternating order, and the
bootstrap interval of their median that the verdict is judged on."""

from __future__ import annotations

import statistics

from benchmarks.harness import Variant
from benchmarks.scenarios.redis_hit import _paired, median_interval


def test_pairs_run_back_to_back_in_alternating_order() -> None:
    calls: list[tuple[str, int]] = []
    mine = Variant("mine", lambda n: calls.append(("mine", n)))
    plain = Variant("plain", lambda n: calls.append(("plain", n)))
    diffs = _paired(mine, plain, 7, 4)
    assert len(diffs) == 4
    assert calls == [("mine", 7), ("plain", 7), ("plain", 7), ("mine", 7),
                     ("mine", 7), ("plain", 7), ("plain", 7), ("mine", 7)]


def test_the_median_interval_holds_the_median_and_is_reproducible() -> None:
    values = [float(v % 17) - 3.0 for v in range(101)]
    low, high = median_interval(values)
    assert low <= statistics.median(values) <= high
    assert (low, high) == median_interval(values)  # seeded
    assert median_interval([2.5] * 9) == (2.5, 2.5)


def test_the_median_interval_narrows_with_more_pairs() -> None:
    few = [float(v % 23) for v in range(23)]
    many = few * 20
    few_low, few_high = median_interval(few)
    many_low, many_high = median_interval(many)
    assert many_high - many_low < few_high - few_low
