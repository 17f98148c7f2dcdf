"""``ask_target``: the node an ``ASK`` redirect names, added to a cluster client's nodes when
redis-py does not know it (a new primary serving no slot yet), whichever way redis-py names
it: by host and port (8.2 on) or by node name ``host:port`` (before 8.2)."""

from __future__ import annotations

from typing import Any

import pytest

from cachedeco.backends.redis.asking import ask_target


class Adopter:
    """Records what it is asked to add and returns a stand-in node."""

    def __init__(self) -> None:
        self.adopted: list[tuple[str, int | str]] = []

    def __call__(self, host: str, port: int | str) -> Any:
        self.adopted.append((host, port))
        return ("node", host, str(port))


def test_a_known_node_is_returned_as_found() -> None:
    adopt = Adopter()
    assert ask_target("known", "127.0.0.1", 7000, adopt) == "known"
    assert ask_target("known", None, None, adopt, "127.0.0.1:7000") == "known"
    assert adopt.adopted == []


def test_an_unknown_target_by_host_and_port_is_adopted() -> None:
    adopt = Adopter()
    assert ask_target(None, "127.0.0.1", 7006, adopt) == ("node", "127.0.0.1", "7006")
    assert adopt.adopted == [("127.0.0.1", 7006)]


@pytest.mark.parametrize(("name", "host", "port"), [
    ("127.0.0.1:7006", "127.0.0.1", "7006"),
    ("redis-node-4.internal:6379", "redis-node-4.internal", "6379"),
    ("::1:7006", "::1", "7006"),
])
def test_an_unknown_target_by_node_name_is_adopted(name: str, host: str, port: str) -> None:
    adopt = Adopter()
    assert ask_target(None, None, None, adopt, name) == ("node", host, port)
    assert adopt.adopted == [(host, port)]


@pytest.mark.parametrize("name", [None, "", "nohost", ":7006", "127.0.0.1:", "127.0.0.1:x"])
def test_nothing_to_adopt_leaves_redis_py_its_answer(name: str | None) -> None:
    adopt = Adopter()
    assert ask_target(None, None, None, adopt, name) is None
    assert adopt.adopted == []
