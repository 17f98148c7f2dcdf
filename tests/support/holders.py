"""Two "processes" sharing one sync ``lock=True`` function (two registries on one prefix):
A's load of ``1`` holds its lease until the test lets it go, B calls meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import cachedeco
from cachedeco import Registry
from tests.support.polling import poll

__all__ = ["Holders"]


class Holders:
    """A's and B's function (``a``, ``b``) and the runs of both, in order."""

    def __init__(self, reg_a: Registry, reg_b: Registry) -> None:
        self.runs: list[str] = []
        self.gate, self.started = threading.Event(), threading.Event()
        self.a, self.b = self._make(reg_a, "A"), self._make(reg_b, "B")

    def _make(self, reg: Registry, who: str) -> Any:
        @cachedeco.cached(ttl=60, registry=reg, lock=True, lock_timeout=20)
        def load(x: int) -> dict[str, Any]:
            self.runs.append(who)
            if x == 1 and who == "A":
                self.started.set()
                self.gate.wait(20)
            return {"x": x, "by": who}

        return load

    def race(self, while_waiting: Callable[[], None]) -> dict[str, Any]:
        """A calls ``1`` and holds the lease; B calls ``1`` and waits; ``while_waiting`` runs
        0.3 s after B found the lease held (B still waiting is asserted first); then A
        finishes. Both results."""
        results: dict[str, Any] = {}
        holder = threading.Thread(target=lambda: results.update(a=self.a(1)))
        holder.start()
        assert self.started.wait(10)
        waits = self.b.stats().lock_waits
        waiter = threading.Thread(target=lambda: results.update(b=self.b(1)))
        waiter.start()
        poll(lambda: self.b.stats().lock_waits > waits, timeout=10.0)  # B found it held
        waiter.join(0.3)  # B waits a while
        assert waiter.is_alive()
        while_waiting()
        self.gate.set()
        holder.join(10)
        waiter.join(10)
        return results
