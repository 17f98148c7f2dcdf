"""A registry's ledger: counts outlive their functions, and the live namesakes it reports."""

from __future__ import annotations

import gc

from cachedeco.core.stats import Stats
from cachedeco.runtime.ledger import Ledger


class Owner:
    """A stand-in for a decorated function (anything weakly referenced)."""


def test_namesakes_are_the_other_live_owners_of_a_name() -> None:
    ledger = Ledger(Stats(), "p")
    a, b, c = Owner(), Owner(), Owner()
    counts = [Stats() for _ in range(3)]
    ledger.track(a, "mod.f", counts[0])
    ledger.track(b, "mod.f", counts[1])
    ledger.track(c, "mod.g", counts[2])
    ledger.track(a, "mod.f", counts[0])  # once per owner
    assert ledger.namesakes(a, "mod.f") == [b]
    assert ledger.namesakes(c, "mod.g") == []
    assert ledger.namesakes(c, "mod.h") == []
    counts[1].hits += 2
    del b
    gc.collect()
    ledger.track(Owner(), "mod.k", Stats())  # folds the collected owner's counts
    assert ledger.namesakes(a, "mod.f") == []
    assert ledger.by_function()["mod.f"].hits == 2  # its counts outlive it
    d = Owner()
    ledger.track(d, "mod.f", Stats())
    assert ledger.namesakes(d, "mod.f") == [a]
