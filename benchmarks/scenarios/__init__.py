"""The scenarios of ``python -m benchmarks``, in the order they run.

Every scenario is a module here exposing::

    run(redis_url: str | None, quick: bool) -> list[dict]

``redis_url`` is None when the run has no Redis (then only the ``memory://`` parts run; a
module may set ``NEEDS_REDIS = True`` to be skipped instead). ``quick`` asks for a run of a few
seconds (the CI smoke test): smaller sizes, fewer rounds, never timing assertions. Each returned
dict is one table row; the runner adds ``"scenario"``. Rows may hold any keys; these have a
meaning (and a formatting) in the tables and in ``--json``:

``group`` (sub-table, e.g. "sync"), ``row`` (its label), ``baseline`` (the row it is compared
with), ``median_us``/``p10_us``/``p90_us`` (wall time per operation), ``ratio`` with
``ratio_p10``/``ratio_p90`` (wall time over the baseline's, median of per-round ratios),
``cpu_us`` and ``cpu_over_base_us`` (process CPU per operation, and above the baseline's),
``cmds_per_op`` (Redis commands per operation from ``INFO commandstats``), ``ops_per_s``,
``target`` (text), ``met`` (bool), ``note``, and optionally ``verdict`` ("met", "not met" or
"within noise", from the p10-p90 of the measurement: :mod:`benchmarks.verdicts`; the harness
sets it for a ``Variant`` with a ``target``, else ``met`` decides) and ``result`` (what was
measured against the target, in words, for the list of targets). Unknown keys ending in
``_us``, ``_ms``, ``_s`` or ``_per_s`` are shown with their unit.

Scenarios report progress through :mod:`benchmarks.progress` (optional). A module that is not
there yet is listed as such; one that fails to import or raises is reported with its error, and
the other scenarios still run. A module here that :data:`DESCRIPTIONS` does not list runs after
the listed ones (``--only`` accepts it too), described by its docstring's first line; a
``run`` that takes a ``cluster_url`` keyword gets the runner's ``--cluster URL``.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path
from typing import Final

__all__ = ["DESCRIPTIONS", "NAMES", "describe", "names"]

#: Scenario module names, in running order, with what each measures.
DESCRIPTIONS: Final[dict[str, str]] = {
    "memory_hit": "memory:// hit, sync and async, vs cachetools.cached and functools.lru_cache",
    "redis_hit": "Redis hit (0 and 3 tags), sync and async, vs raw GET + orjson.loads",
    "concurrency": "100 concurrent async callers over 1,000 warm keys vs one raw GET per call",
    "miss_store": "miss + store vs raw GET + SET",
    "zipf": "Zipf workload: loads vs distinct keys, wall time vs peers",
    "invalidation": "tag invalidation time and Redis memory as tagged entries grow",
    "stampede": "1,000 callers over 4 processes on one cold key",
    "write_behind": "write-behind throughput into SQLite",
    "cached_many": "100 ids, 10 missing: one @cached_many call vs 100 @cached calls",
    "near": "near cache hits vs cachetools, commands per hit; a write-heavy mix near vs not",
    "near_procs": "near cache across processes: invalidation reach; Zipf on 4 processes",
    "soak": "10 min of mixed calls with key churn, nothing may grow (only with --only soak; "
            "--quick runs 20 s of it)",
}
NAMES: Final = tuple(DESCRIPTIONS)


def names() -> list[str]:
    """Every scenario: the listed ones in order, then any other module here, by name."""
    found = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    return [*NAMES, *(name for name in found if name not in DESCRIPTIONS)]


def describe(name: str) -> str:
    """What a scenario measures: listed, or its module docstring's first line (not imported)."""
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    try:
        tree = ast.parse((Path(__file__).parent / f"{name}.py").read_text())
    except (OSError, SyntaxError, ValueError):
        return ""
    doc = ast.get_docstring(tree) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
