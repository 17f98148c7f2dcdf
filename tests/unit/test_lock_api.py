"""``Registry.lock`` and lease names without a server: refused settings, the default
registry's lock, and the lease key names (the lease of an entry shares the entry's cluster
slot)."""

from __future__ import annotations

import pytest
import redis.crc

import cachedeco
from cachedeco import ConfigurationError, LockTimeout, Registry
from cachedeco.core.keyspace import KeySpace, hash_tagged

KEYS = KeySpace("p")  # the key space of Registry(prefix="p")


@pytest.mark.parametrize("name", ["p:mod.f:'a'", "a{b", "x}y", "}", "a{}b", "{tag}rest", "t{a}{b}"])
def test_a_lease_and_its_wake_list_share_a_slot(name: str) -> None:
    lease = KEYS.lease(name)
    assert lease.key.startswith("p:~lease:") and lease.wake.startswith("p:~leasewake:")
    assert redis.crc.key_slot(lease.key.encode()) == redis.crc.key_slot(lease.wake.encode())


def test_the_lease_of_an_entry_sits_in_the_entrys_slot() -> None:
    for entry in ["p:mod.f:1", "p:analysis:'x'", "p:" + "a" * 240]:
        lease = KEYS.lease(entry)
        assert lease.key == "p:~lease:{" + entry + "}"
        assert redis.crc.key_slot(lease.key.encode()) == redis.crc.key_slot(entry.encode())


@pytest.mark.parametrize("name", ["p:mod.f:'a'", "a{b", "x}y", "}", "a{}b", "{tag}rest", "t{a}{b}"])
def test_a_lease_names_its_entry_only_when_they_share_a_slot(name: str) -> None:
    lease = KEYS.lease(name)
    if lease.entry:  # the acquire script then reads the entry: it must be in the same slot
        assert lease.entry == name
        assert redis.crc.key_slot(lease.key.encode()) == redis.crc.key_slot(name.encode())
    else:
        assert redis.crc.key_slot(lease.key.encode()) != redis.crc.key_slot(name.encode()) or (
            "}" in name)
    assert KEYS.lock(name).entry == ""  # a lock guards no entry


def test_names_that_differ_get_different_leases() -> None:
    names = ["a", "b", "a}", "b}", "{a}", "{a}x", "=a", "{=a}", "#{a}", "a{", "{a"]
    assert len({hash_tagged(n) for n in names}) == len(names)
    assert len({KEYS.lock(n).key for n in names}) == len(names)


def test_bad_settings_are_configuration_errors() -> None:
    registry = Registry()
    for kwargs in ({"ttl": 0}, {"ttl": -1.0}, {"timeout": -1}, {"ttl": float("inf")}):
        with pytest.raises(ConfigurationError):
            registry.lock("x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        registry.lock("")
    with pytest.raises(ConfigurationError), registry.lock("x", backend="nope"):
        pass


def test_the_default_registry_lock() -> None:
    with cachedeco.lock("default-job", ttl=1, timeout=0), pytest.raises(LockTimeout):
        cachedeco.lock("default-job", timeout=0).acquire()
