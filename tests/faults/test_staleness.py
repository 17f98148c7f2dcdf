"""What the fault suite counts as a stale read, and what as a change still on its way to
another process (:mod:`tests.faults.staleness`), and how the catalogue records the writes."""

from __future__ import annotations

from pathlib import Path

from tests.faults.staleness import REACH, Ack, missed, within_reach
from tests.faults.workload import Catalogue

T = 1_000_000.0  # a wall-clock time


def test_missed_keeps_the_acknowledged_versions_between_the_read_and_the_newest() -> None:
    acks = [Ack(1, 0.0, -1), Ack(4, T, 1), Ack(2, T, 1), Ack(3, T, 1), Ack(5, T, 1)]
    assert [a.v for a in missed(acks, got=1, before=4)] == [2, 3, 4]
    assert missed(acks, got=4, before=4) == []


def test_a_near_hit_in_another_process_soon_after_the_write_is_within_reach() -> None:
    assert within_reach([Ack(2, T, writer=1)], T + 0.001, reader=0, near=True)
    assert within_reach([Ack(2, T, 1), Ack(3, T + 0.1, 2)], T + 0.15, reader=0, near=True)
    assert within_reach([Ack(2, T, 1)], T + REACH - 0.001, reader=0, near=True)


def test_a_read_that_went_to_redis_never_is() -> None:
    assert not within_reach([Ack(2, T, writer=1)], T + 0.001, reader=0, near=False)


def test_the_writers_own_process_never_is() -> None:
    assert not within_reach([Ack(2, T, writer=0)], T + 0.0001, reader=0, near=True)
    assert not within_reach([Ack(2, T, 1), Ack(3, T, 0)], T + 0.001, reader=0, near=True)


def test_every_missed_write_must_be_within_reach() -> None:
    assert not within_reach([Ack(2, T, 1)], T + REACH + 0.01, reader=0, near=True)
    assert not within_reach([Ack(2, T - 1.0, 1), Ack(3, T, 1)], T + 0.001, reader=0, near=True)
    assert within_reach([Ack(2, T - 1.0, 1)], T, reader=0, near=True, reach=1.5)


def test_nothing_missed_is_not_within_reach() -> None:
    assert not within_reach([], T, reader=0, near=True)


def test_the_catalogue_keeps_each_acknowledged_write(tmp_path: Path) -> None:
    catalogue = Catalogue.create(tmp_path / "c.db", keys=3)
    try:
        assert catalogue.acked(2) == 1
        for v, at in ((2, T), (3, T + 0.5)):
            assert catalogue.bump(2) == v
            catalogue.ack(2, v, at, writer=2)
        catalogue.ack(2, 3, T + 9, writer=2)  # once per version: the first return counts
        assert (catalogue.acked(2), catalogue.acked(1)) == (3, 1)
        assert catalogue.acks(2, newer=1) == [Ack(2, T, 2), Ack(3, T + 0.5, 2)]
        assert missed(catalogue.acks(2, 2), got=2, before=3) == [Ack(3, T + 0.5, 2)]
    finally:
        catalogue.close()
