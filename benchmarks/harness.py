"""Interleaved timing: the rows of a scenario and their baselines, measured in the same rounds.

A :class:`Variant` is one row: a ``batch(n)`` callable that performs ``n`` operations. Each
variant is first calibrated (the batch size that takes about ``batch_seconds``), then every
round runs one batch of every variant, in an order rotated by one each round (A B C, B C A,
…), so slow drifts of a noisy machine hit all rows alike. Per round we record the wall time
(``perf_counter``) and the process CPU time (``process_time``, which leaves out the Redis
server) per operation.

Reported per row: the median wall time per operation over rounds, its p10-p90 spread, the
*ratio* to the baseline (the median of the per-round ratios, with its own p10-p90) and the CPU
time per operation above the baseline's (the median of per-round differences), which shows
our own overhead where the network round trip dominates the wall time. A row with a target
gets a ``verdict`` from the p10-p90 of its per-round ratios (or differences), see
:mod:`benchmarks.verdicts`; ``met`` keeps the median's plain answer.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import cycle, islice
from typing import Any

from benchmarks import progress, verdicts

__all__ = [
    "Plan",
    "Samples",
    "Variant",
    "async_batch",
    "measure",
    "met",
    "quantiles",
    "rows_for",
    "sync_batch",
]

Row = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """How long to measure: rounds and the wall time one batch should take."""

    rounds: int
    batch_seconds: float

    @classmethod
    def for_mode(cls, quick: bool, *, rounds: int = 31, batch_seconds: float = 0.03) -> Plan:
        """The full plan, or a much shorter one for ``--quick``."""
        if quick:
            return cls(rounds=5, batch_seconds=batch_seconds / 5)
        return cls(rounds=rounds, batch_seconds=batch_seconds)


@dataclass(eq=False)
class Variant:
    """One row of a scenario: ``batch(n)`` runs ``n`` operations of it."""

    name: str
    batch: Callable[[int], object]
    group: str = ""
    baseline: Variant | None = None  # the row this one is compared with
    target: float | None = None  # the row meets its target when ratio <= target
    max_over_us: float | None = None  # ... or when it takes at most this much more per op
    target_text: str = ""
    note: str = ""
    extra: Row = field(default_factory=dict)  # more columns, copied into the row


@dataclass
class Samples:
    """Per-round wall and CPU seconds per operation of one variant, and its batch size."""

    n: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def sync_batch(call: Callable[[Any], object], args: Sequence[Any]) -> Callable[[int], None]:
    """A batch of ``n`` calls of ``call`` over ``args`` in turn."""

    def batch(n: int) -> None:
        for arg in islice(cycle(args), n):
            call(arg)

    return batch


def async_batch(loop: asyncio.AbstractEventLoop, call: Callable[[Any], Awaitable[object]],
                args: Sequence[Any]) -> Callable[[int], None]:
    """A batch of ``n`` awaited calls of ``call`` over ``args``, run on ``loop``."""

    async def run(n: int) -> None:
        for arg in islice(cycle(args), n):
            await call(arg)

    def batch(n: int) -> None:
        loop.run_until_complete(run(n))

    return batch


def _time(batch: Callable[[int], object], n: int) -> tuple[float, float]:
    """Wall and CPU seconds of one batch of ``n``."""
    cpu0 = time.process_time_ns()
    wall0 = time.perf_counter_ns()
    batch(n)
    wall = time.perf_counter_ns() - wall0
    cpu = time.process_time_ns() - cpu0
    return wall / 1e9, cpu / 1e9


def _calibrate(variant: Variant, seconds: float, min_n: int, max_n: int) -> int:
    """The batch size that takes about ``seconds`` (after a warm-up batch), in min_n..max_n."""
    n = min_n
    variant.batch(n)
    while True:
        wall, _ = _time(variant.batch, n)
        if wall >= seconds / 3 or n >= max_n:
            break
        n = min(max_n, n * 10 if wall < seconds / 100 else n * 3)
    return max(min_n, min(max_n, round(n * seconds / max(wall, 1e-9))))


def measure(variants: Sequence[Variant], plan: Plan, label: str, *, warmup: int = 0,
            min_n: int = 1, max_n: int = 1_000_000) -> dict[Variant, Samples]:
    """Warm every variant up with ``warmup`` operations (a batch of ``warmup`` calls cycles
    through every argument once), calibrate it, then run ``plan.rounds`` interleaved rounds."""
    progress.task(label, len(variants) + plan.rounds)
    samples: dict[Variant, Samples] = {}
    for variant in variants:
        if warmup:
            variant.batch(warmup)
        samples[variant] = Samples(_calibrate(variant, plan.batch_seconds, min_n, max_n))
        progress.advance()
    for round_ in range(plan.rounds):
        shift = round_ % len(variants)
        gc.collect()
        for variant in [*variants[shift:], *variants[:shift]]:
            sample = samples[variant]
            wall, cpu = _time(variant.batch, sample.n)
            sample.wall.append(wall / sample.n)
            sample.cpu.append(cpu / sample.n)
        progress.advance()
    return samples


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """p10, median and p90 of ``values`` (inclusive method; one value gives itself thrice)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], statistics.median(values), deciles[8]


def met(ratio: float | None, target: float | None) -> bool | None:
    """Whether a ratio meets its target (None when there is no target or no ratio)."""
    if ratio is None or target is None:
        return None
    return ratio <= target


def _row(variant: Variant, sample: Samples, base: Samples | None) -> Row:
    """One variant's table row from its samples (and its baseline's, for the ratios)."""
    p10, median, p90 = quantiles(sample.wall)
    row: Row = {
        "group": variant.group,
        "row": variant.name,
        "baseline": variant.baseline.name if variant.baseline else "",
        "median_us": median * 1e6,
        "p10_us": p10 * 1e6,
        "p90_us": p90 * 1e6,
        "cpu_us": statistics.median(sample.cpu) * 1e6,
        "rounds": len(sample.wall),
        "batch": sample.n,
    }
    if base is not None:
        ratios = [a / b for a, b in zip(sample.wall, base.wall, strict=True) if b > 0]
        r10, ratio, r90 = quantiles(ratios)
        extra_cpu = [a - b for a, b in zip(sample.cpu, base.cpu, strict=True)]
        row.update(ratio=ratio, ratio_p10=r10, ratio_p90=r90,
                   cpu_over_base_us=statistics.median(extra_cpu) * 1e6)
        if variant.max_over_us is not None:  # judged on the median per-round difference
            extra_wall = [a - b for a, b in zip(sample.wall, base.wall, strict=True)]
            o10, over, o90 = (v * 1e6 for v in quantiles(extra_wall))
            row.update(wall_over_base_us=over, over_p10_us=o10, over_p90_us=o90,
                       target=variant.target_text or f"<= +{variant.max_over_us} µs",
                       target_over_us=variant.max_over_us, met=over <= variant.max_over_us,
                       verdict=verdicts.judge(o10, o90, variant.max_over_us))
    if variant.target is not None:
        row["target"] = variant.target_text or f"<= {variant.target:.2f}x"
        row["target_ratio"] = variant.target
        row["met"] = met(row.get("ratio"), variant.target)
        if "ratio_p10" in row:
            row["verdict"] = verdicts.judge(row["ratio_p10"], row["ratio_p90"], variant.target)
    if variant.note:
        row["note"] = variant.note
    row.update(variant.extra)
    return row


def rows_for(variants: Iterable[Variant], samples: dict[Variant, Samples]) -> list[Row]:
    """One table row per variant, with ratios to its baseline."""
    variants = list(variants)
    baselines = {v.baseline for v in variants if v.baseline is not None}
    rows = []
    for variant in variants:
        base = samples.get(variant.baseline) if variant.baseline else None
        row = _row(variant, samples[variant], base)
        if variant in baselines and variant.baseline is None:  # compared with none
            row.update(baseline="(baseline)", ratio=1.0, cpu_over_base_us=0.0)
        rows.append(row)
    return rows
