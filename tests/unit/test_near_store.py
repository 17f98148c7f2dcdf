"""The near cache's store, without a server: what is kept, what a change drops, and that a read
racing with a change, or with the loss of the change stream, never installs its value."""

from __future__ import annotations

import time

import pytest

from cachedeco import ConfigurationError, Registry, cached
from cachedeco.backends.near.store import CHANGED_LIMIT, LOOK_EVERY, Near, NearStore
from cachedeco.core.entry import Entry


def _near(value: object, tags: tuple[str, ...] = (), soft: float | None = None) -> Near:
    entry = Entry("cd1:" + "0" * 16, b"payload", soft or time.time() + 60, 0.0, ())
    return Near(entry, (), tags, value)


def _live(size: int = 10) -> NearStore:
    store = NearStore(size)
    store.up()
    return store


def test_an_installed_value_is_a_hit_for_the_same_tag_keys_only() -> None:
    store = _live()
    ticket = store.ticket()
    assert ticket is not None
    assert store.install(ticket, "p:k", _near(1, ("p:~tag:a",)))
    kept = store.hit("p:k", ("p:~tag:a",), None)
    assert kept is not None and kept.value == 1
    assert store.hit("p:k", (), None) is None
    assert store.hit("p:other", ("p:~tag:a",), None) is None


def test_a_value_past_its_soft_expiry_is_not_a_hit() -> None:
    store = _live()
    ticket = store.ticket()
    assert ticket is not None
    store.install(ticket, "p:k", _near(1, soft=time.time() - 1))
    assert store.hit("p:k", (), None) is None


def test_a_change_of_the_key_or_of_a_tag_key_drops_the_value() -> None:
    store = _live()
    for key in ("p:a", "p:b", "p:c"):
        ticket = store.ticket()
        assert ticket is not None
        store.install(ticket, key, _near(key, ("p:~tag:t",) if key != "p:c" else ()))
    store.changed(["p:~tag:t"])
    assert store.hit("p:a", ("p:~tag:t",), None) is None
    assert store.hit("p:b", ("p:~tag:t",), None) is None
    assert store.hit("p:c", (), None) is not None
    store.changed(["p:c"])
    assert store.hit("p:c", (), None) is None
    assert len(store) == 0


def test_a_read_racing_with_a_change_never_installs() -> None:
    store = _live()
    for changed in ("p:k", "p:~tag:t"):
        ticket = store.ticket()  # taken before the read is sent
        assert ticket is not None
        store.changed([changed])  # the change is reported while the read is in flight
        assert not store.install(ticket, "p:k", _near("old", ("p:~tag:t",)))
        assert store.hit("p:k", ("p:~tag:t",), None) is None
    ticket = store.ticket()
    store.changed(["p:unrelated"])
    assert ticket is not None and store.install(ticket, "p:k", _near("new", ("p:~tag:t",)))


def test_losing_the_stream_empties_and_bypasses_until_it_is_back() -> None:
    store = _live()
    before = store.ticket()
    assert before is not None
    store.install(before, "p:k", _near(1))
    store.lost()
    assert store.hit("p:k", (), None) is None
    assert store.ticket() is None  # nothing is installed while down
    store.up()
    assert not store.install(before, "p:k", _near(1))  # a read from before the loss
    after = store.ticket()
    assert after is not None and store.install(after, "p:k", _near(2))


def test_a_stream_that_has_not_answered_lately_serves_nothing_until_it_answers() -> None:
    store = _live()
    store.follow(lambda: None)  # the stream's catch-up: nothing arrived
    ticket = store.ticket()
    assert ticket is not None
    store.install(ticket, "p:k", _near(1))
    store.quiet_after = time.monotonic() + 60  # the last answered ping vouches until then
    kept = store.hit("p:k", (), None)
    assert kept is not None and kept.value == 1
    assert store.unchanged(ticket, "p:k", ())
    store.quiet_after = time.monotonic() - 0.001  # a frozen server: no answer since
    time.sleep(2 * LOOK_EVERY)  # hits look at most every LOOK_EVERY
    assert store.hit("p:k", (), None) is None
    assert store.hit("p:k", (), None) is None  # every hit looks again, not every LOOK_EVERY
    assert store.ticket() is not None  # a miss's read looks too (it reads through)...
    assert store.hit("p:k", (), None) is None  # ...which lets no hit right after it skip
    assert not store.unchanged(ticket, "p:k", ())  # nor may a caller join a read on its word
    store.quiet_after = time.monotonic() + 60  # it answered: what changed came before
    kept = store.hit("p:k", (), None)
    assert kept is not None and kept.value == 1  # the value stayed


def test_a_pause_keeps_what_is_kept_and_refuses_every_read_until_resumed() -> None:
    store = _live()
    before = store.ticket()
    assert before is not None
    store.install(before, "p:kept", _near("kept"))
    in_flight = store.ticket()
    assert in_flight is not None
    store.pause()  # a read is answered by a server the stream does not listen to
    assert store.ticket() is None
    assert not store.install(in_flight, "p:k", _near(1))
    assert not store.unchanged(in_flight, "p:k", ())
    kept = store.hit("p:kept", (), None)
    assert kept is not None and kept.value == "kept"  # its changes are still reported
    store.changed(["p:kept"])
    assert store.hit("p:kept", (), None) is None
    store.resume()
    ticket = store.ticket()
    assert ticket is not None and ticket != in_flight
    assert not store.install(in_flight, "p:k", _near(1))
    assert store.install(ticket, "p:k", _near(2))


def test_a_stream_lost_while_paused_stays_lost_when_resumed() -> None:
    store = _live()
    store.pause()
    store.lost()
    store.resume()
    assert store.ticket() is None
    store.up()
    store.resume()  # nothing paused: nothing changes
    assert store.ticket() is not None


def test_a_flush_drops_everything_and_refuses_reads_in_flight() -> None:
    store = _live()
    ticket = store.ticket()
    assert ticket is not None
    store.install(ticket, "p:k", _near(1))
    in_flight = store.ticket()
    store.flushed()
    assert store.hit("p:k", (), None) is None
    assert in_flight is not None and not store.install(in_flight, "p:j", _near(2))


def test_the_least_recently_used_value_goes_first() -> None:
    store = _live(size=2)
    for key in ("p:a", "p:b"):
        ticket = store.ticket()
        assert ticket is not None
        store.install(ticket, key, _near(key, ("p:~tag:t",)))
    store.hit("p:a", ("p:~tag:t",), None)
    ticket = store.ticket()
    assert ticket is not None
    store.install(ticket, "p:c", _near("p:c", ("p:~tag:t",)))
    assert store.hit("p:b", ("p:~tag:t",), None) is None
    assert store.hit("p:a", ("p:~tag:t",), None) is not None
    store.changed(["p:~tag:t"])  # the tag index forgot the evicted key with it
    assert len(store) == 0


def test_a_full_store_takes_a_key_read_again_recently() -> None:
    store = _live(size=2)

    def read(key: str) -> bool:  # as a call does: ask, and install only if admitted
        if not store.admits(key):
            return False
        ticket = store.ticket()
        assert ticket is not None
        return store.install(ticket, key, _near(key))

    assert read("p:a") and read("p:b")  # room: kept at once
    assert not read("p:c") and not read("p:d")  # full: remembered, not kept
    assert list(store.entries()) == ["p:a", "p:b"]
    assert store.admits("p:a")  # kept already: read again (say, past its soft expiry)
    assert read("p:c")  # read again while remembered: kept, the least recently used goes
    assert list(store.entries()) == ["p:b", "p:c"]
    assert not read("p:e") and not read("p:f")  # two more refused: p:d is forgotten
    assert not read("p:d")
    assert not read("p:a") and read("p:a")  # an evicted key starts over
    assert list(store.entries()) == ["p:c", "p:a"]
    store.changed(["p:c"])  # room again: kept at once
    assert read("p:g")
    assert list(store.entries()) == ["p:a", "p:g"]


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, None])
def test_near_cache_must_be_a_count(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="near_cache"):
        Registry("memory://", near_cache=bad)  # type: ignore[arg-type]


def test_near_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="near"):
        cached(near="no")  # type: ignore[call-overload]


def test_memory_has_no_near_cache() -> None:
    reg = Registry("memory://", near_cache=100)
    assert reg.slot("default").near is None
    assert Registry("redis://127.0.0.1:1/0", near_cache=0).slot("default").near is None
    assert Registry("redis://127.0.0.1:1/0", near_cache=5).slot("default").near is not None


def test_entries_is_the_same_dict_for_the_stores_life() -> None:
    # A compiled near hit keeps the dict entries() returns: every change is made in it.
    store = _live(size=2)
    entries = store.entries()

    def install(key: str, tags: tuple[str, ...] = ()) -> None:
        ticket = store.ticket()
        assert ticket is not None and store.install(ticket, key, _near(key, tags))

    install("p:a", ("p:~tag:t",))
    install("p:b")
    assert list(entries) == ["p:a", "p:b"]
    install("p:c")  # evicts p:a
    assert list(entries) == ["p:b", "p:c"]
    store.changed(["p:b"])
    assert list(entries) == ["p:c"]
    store.flushed()
    assert len(entries) == 0
    install("p:d")
    store.lost()
    assert len(entries) == 0
    store.up()
    install("p:e")
    for _ in range(3):  # enough changes to reset the memory of changed names
        store.changed(f"p:x{i}" for i in range(CHANGED_LIMIT // 2 + 1))
    install("p:f")
    assert store.entries() is entries
    assert list(entries) == ["p:e", "p:f"]
