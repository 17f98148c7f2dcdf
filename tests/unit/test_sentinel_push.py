"""The sentinels' ``+switch-master`` messages: each wakes the primary watch when it names its
service (and no other), a listener outlives a sentinel it cannot reach, and every listener
ends soon after its stop. Sentinels stand in as fakeredis servers (real ones publish the
message in tests/features/test_sentinel_switchover.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from cachedeco.backends.redis import sentinel_push
from cachedeco.backends.redis.sentinel_push import CHANNEL, listen_for_switches
from tests.support.calls import Calls
from tests.support.polling import poll


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def subscribed(sentinel: fakeredis.FakeRedis) -> bool:
    return bool(sentinel.pubsub_numsub(CHANNEL)[0][1])


def test_only_the_service_s_own_switch_wakes_the_watch(stop: threading.Event) -> None:
    sentinels = [fakeredis.FakeRedis(server=fakeredis.FakeServer()) for _ in range(2)]
    heard = Calls()
    listen_for_switches(sentinels, "mymaster", heard, stop)
    poll(lambda: all(subscribed(s) for s in sentinels))
    sentinels[0].publish(CHANNEL, "mymaster2 127.0.0.1 6379 127.0.0.1 6380")  # another
    sentinels[0].publish(CHANNEL, "other 127.0.0.1 6379 127.0.0.1 6380")
    sentinels[1].publish("+sdown", "master mymaster 127.0.0.1 6379")  # not a switch
    time.sleep(0.2)
    assert len(heard) == 0
    sentinels[1].publish(CHANNEL, "mymaster 127.0.0.1 6379 127.0.0.1 6380")
    poll(lambda: len(heard) == 1)
    sentinels[0].publish(CHANNEL, "mymaster 127.0.0.1 6379 127.0.0.1 6380")
    poll(lambda: len(heard) == 2)  # every sentinel's word: the watch asks, and decides


def test_a_sentinel_out_of_reach_is_tried_again_and_the_others_heard(
        stop: threading.Event, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentinel_push, "AGAIN", 0.05)
    down = redis.Redis(port=1, socket_connect_timeout=0.1)  # nothing listens there
    up = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    heard = Calls()
    threads = listen_for_switches([down, up], "mymaster", heard, stop)
    poll(lambda: subscribed(up))
    time.sleep(0.3)  # a few failed tries
    assert all(thread.is_alive() for thread in threads)
    up.publish(CHANNEL, "mymaster 127.0.0.1 6379 127.0.0.1 6380")
    poll(lambda: len(heard) == 1)


def test_every_listener_ends_soon_after_its_stop(stop: threading.Event) -> None:
    sentinel = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    threads = listen_for_switches([sentinel, sentinel], "mymaster", Calls(), stop)
    poll(lambda: sentinel.pubsub_numsub(CHANNEL)[0][1] == 2)
    stop.set()
    for thread in threads:
        thread.join(sentinel_push.WAIT + 1.0)
    assert not any(thread.is_alive() for thread in threads)
    poll(lambda: not subscribed(sentinel))  # each closed its own connection
