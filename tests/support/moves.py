"""A Sentinel primary's move, played by hand: the slots' move count is the test's, and the
lineage beats only when the test calls it (so a move's hold lasts until the test ends it)."""

from __future__ import annotations

import pytest

from cachedeco.backends.open import BackendSlot
from cachedeco.runtime.lineage import Lineage

__all__ = ["Epoch", "hand_moves"]


class Epoch:
    """The Sentinel watch's move count, as the slots see it."""

    def __init__(self) -> None:
        self.now = 0


def hand_moves(monkeypatch: pytest.MonkeyPatch) -> Epoch:
    """Every slot's move count is the returned ``Epoch``'s; the lineage runs but beats by
    hand only (``reg.lineage.moving(backend, epoch)`` then holds that backend's entries)."""
    moves = Epoch()
    monkeypatch.setattr(BackendSlot, "moves", property(lambda slot: moves.now))
    monkeypatch.setattr(Lineage, "ensure", lambda self: None)  # the test beats by hand
    monkeypatch.setattr(Lineage, "running", property(lambda self: True))
    return moves
