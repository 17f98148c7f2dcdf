"""A test that leaves a cachedeco thread running fails: a registry it did not close keeps
working in the background (a near cache's tracking connection, a write-behind worker, the
lineage beats), and its commands would land in a later test's command counts
(``INFO commandstats``). A module or session fixture that keeps a registry for later tests
names the threads it may leave by overriding :func:`shared_threads`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

__all__ = ["no_leaked_threads", "shared_threads"]

GRACE = 5.0  # seconds a thread of a closed registry may take to end


def _ours(shared: frozenset[str]) -> set[threading.Thread]:
    return {t for t in threading.enumerate()
            if t.name.startswith("cachedeco-") and t.name not in shared and t.is_alive()}


@pytest.fixture
def shared_threads() -> frozenset[str]:
    """Names of the cachedeco threads a test may leave running: those of a registry that a
    module or session fixture keeps for later tests (none unless overridden)."""
    return frozenset()


@pytest.fixture(autouse=True)
def no_leaked_threads(request: pytest.FixtureRequest,
                      shared_threads: frozenset[str]) -> Iterator[None]:
    """Fail the test after which a cachedeco thread it started still runs."""
    before = _ours(shared_threads)
    yield
    deadline = time.monotonic() + GRACE
    while (left := _ours(shared_threads) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        names = sorted(t.name for t in left)
        pytest.fail(f"{request.node.nodeid} left cachedeco threads running: {names} "
                    "(close the registries it made)", pytrace=False)
