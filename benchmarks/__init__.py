"""The cachedeco benchmark suite: ``python -m benchmarks`` (see ``benchmarks/README.md``).

Every scenario measures cachedeco side by side with a baseline measured in the same run (a
raw client, ``cachetools``, ``functools.lru_cache``) and, when installed, with peer libraries
(cashews, aiocache, dogpile.cache, cachetools). Rows of one scenario run interleaved, one batch
each per round, and the tables report medians over rounds, their spread and ratios to the
baseline. The package is not installed with cachedeco: run it from the repository root.
"""

from __future__ import annotations

__all__: list[str] = []
