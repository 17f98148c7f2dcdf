"""What the scenarios cache: a realistic small record, and a seeded Zipf stream of keys."""

from __future__ import annotations

import bisect
import itertools
import random
from typing import Any

import orjson

__all__ = ["WARM_KEYS", "loads", "record", "zipf_keys"]

#: How many distinct arguments the hit scenarios cycle through (all warm).
WARM_KEYS = 100


def record(key: int) -> dict[str, Any]:
    """A JSON record of about 300 bytes, like a row of an API response."""
    return {
        "id": key,
        "name": f"analysis-{key}",
        "status": "done",
        "owner": {"id": key % 97, "email": f"user{key % 97}@example.com"},
        "score": key / 7,
        "labels": ["alpha", "beta", "gamma"],
        "created_at": "2024-05-01T12:00:00+00:00",
        "summary": "x" * 120,
    }


def loads(raw: object) -> Any:
    """What a raw-client baseline does with a GET reply: check it, ``orjson.loads`` it."""
    if not isinstance(raw, bytes):
        raise LookupError(f"expected a stored value, got {raw!r}")
    return orjson.loads(raw)


def zipf_keys(calls: int, keys: int, *, s: float = 1.1, seed: int = 6) -> list[int]:
    """``calls`` keys in ``[0, keys)`` drawn from a Zipf(s) law (rank 0 the most popular)."""
    weights = [1.0 / (rank + 1) ** s for rank in range(keys)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    rng = random.Random(seed)
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(calls)]
