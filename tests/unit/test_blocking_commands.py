"""How long one blocking command (a lease's BLMOVE, write-behind's WAIT) may ask to block:
under the client's socket timeout by enough that a server answering its timeout up to 1/hz
late (100 ms at the default hz 10) is never read as a dead connection; WAIT goes in such
steps, which together wait as long as asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cachedeco.backends.redis.commands import MAX_BLOCK, MIN_BLOCK, OVERRUN, block_limit, waits


def _client(socket_timeout: float | None) -> SimpleNamespace:
    pool = SimpleNamespace(connection_kwargs={"socket_timeout": socket_timeout})
    return SimpleNamespace(connection_pool=pool)


@pytest.mark.parametrize(("timeout", "block"), [(1.0, 0.75), (0.3, 0.18), (0.25, 0.13),
                                                (0.1, MIN_BLOCK), (30.0, MAX_BLOCK),
                                                (None, MAX_BLOCK)])
def test_a_block_leaves_room_for_the_server_answering_late(timeout: float | None,
                                                           block: float) -> None:
    assert block_limit(_client(timeout)) == pytest.approx(block)
    if timeout is not None and timeout > 2 * OVERRUN:
        assert block_limit(_client(timeout)) + 0.1 < timeout  # answered 100 ms late: in time


def test_a_cluster_client_is_read_from_its_nodes_manager() -> None:
    nodes = SimpleNamespace(connection_kwargs={"socket_timeout": 0.25})
    assert block_limit(SimpleNamespace(nodes_manager=nodes)) == pytest.approx(0.13)


@pytest.mark.parametrize(("timeout", "asked", "steps"), [
    (1.0, 1000, [750, 250]), (1.0, 500, [500]), (0.25, 600, [130, 130, 130, 130, 80]),
    (1.0, 0, [1])])
def test_wait_goes_in_steps_that_add_up_to_the_time_asked(timeout: float, asked: int,
                                                          steps: list[int]) -> None:
    got = waits(_client(timeout), 2, asked)
    assert got == [("WAIT", 2, ms) for ms in steps]
