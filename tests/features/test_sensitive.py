"""``sensitive=True`` on real servers (Redis, Cluster, Sentinel): what Redis holds under the
prefix (every key name, entry, queued record and dead letter) is free of the arguments and
results, and so are ``inspect``/``stats`` and the logs; processes with one key share entries,
a process with another key recomputes; a tampered value is a counted miss, overwritten; a key
rotation keeps the entries of the older key."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.sentinel import Sentinel

import cachedeco
from cachedeco import Registry, cli
from cachedeco.core.codec.crypto import MAGIC
from tests.support.commands import commandstats, sweep_prefix
from tests.support.deployments import cluster_client, hosts

OLD = "old-key-" + "o" * 32
NEW = "new-key-" + "n" * 32
MARK = b"MARKER"  # in every argument and result below; never in Redis, output or logs
EMAIL = "alice.MARKER@example.com"


@dataclass
class Deployment:
    """One Redis deployment: its URL, a client to look at what it holds, and registries on it
    that are closed before its keys are swept."""

    kind: str
    url: str
    client: Any
    prefix: str
    made: list[Registry] = field(default_factory=list)

    def registry(self, **settings: Any) -> Registry:
        self.made.append(Registry(self.url, prefix=self.prefix, **settings))
        return self.made[-1]

    def holdings(self) -> list[tuple[bytes, bytes]]:
        """Every key under the prefix and everything it holds, as bytes."""
        out = []
        for key in self.client.scan_iter(match=self.prefix + "*", count=1000):
            kind = self.client.type(key)
            if kind == b"string":
                values = [self.client.get(key) or b""]
            elif kind == b"stream":
                values = [b"%s=%s" % (f, v) for _, fields in self.client.xrange(key)
                          for f, v in fields.items()]
            elif kind == b"list":
                values = self.client.lrange(key, 0, -1)
            elif kind == b"hash":
                values = [b"%s=%s" % item for item in self.client.hgetall(key).items()]
            else:
                values = [repr(kind).encode()]
            out += [(key, value) for value in values]
        return out

    def assert_no_plaintext(self) -> list[tuple[bytes, bytes]]:
        held = self.holdings()
        leaks = [(key, value[:80]) for key, value in held if MARK in key or MARK in value]
        assert not leaks, leaks
        return held


def _client(kind: str, url: str) -> Any:
    if kind == "redis":
        return redis.Redis.from_url(url, socket_timeout=5)
    if kind == "cluster":
        return cluster_client(url)
    service, _, db = urlsplit(url).path.strip("/").partition("/")
    sentinel = Sentinel(hosts(url), socket_timeout=5)  # type: ignore[no-untyped-call]
    return sentinel.master_for(  # type: ignore[no-untyped-call]
        service, db=int(db or 0), socket_timeout=5)


@pytest.fixture
def deploy(request: pytest.FixtureRequest, prefix: str) -> Iterator[Deployment]:
    kind = getattr(request, "param", "redis")
    url = request.getfixturevalue(f"{kind}_url")
    client = _client(kind, url)
    deployment = Deployment(kind, url, client, prefix)
    try:
        yield deployment
    finally:
        for reg in deployment.made:
            reg.close()
        sweep_prefix(client, prefix)
        client.close()


every_deployment = pytest.mark.parametrize("deploy", ["redis", "cluster", "sentinel"],
                                           indirect=True)


def _profile(calls: list[str]) -> Callable[[str], dict[str, str]]:
    def get_profile(email: str) -> dict[str, str]:
        calls.append(email)
        return {"email": email, "note": "MARKER-result"}
    return get_profile


# --- nothing in clear --------------------------------------------------------------------------


@every_deployment
def test_redis_holds_no_argument_or_result_in_clear(deploy: Deployment) -> None:
    reg = deploy.registry(encryption_key=OLD)
    calls: list[str] = []
    get_profile = reg.cached(ttl=60, sensitive=True, tags=["profiles"], lock=True)(
        _profile(calls))

    @reg.write_through(get_profile)
    def update_profile(email: str, note: str) -> dict[str, str]:
        return {"email": email, "note": note}

    flushed: list[list[dict[str, str]]] = []
    broken = [True]

    def flush(records: list[dict[str, str]]) -> None:
        flushed.append(records)
        if broken[0]:
            raise RuntimeError(f"cannot store {records!r}")  # quotes the records

    @reg.write_behind(key="audit:{email}", flush=flush, sensitive=True, max_retries=0,
                      flush_interval=3600)
    def audit(email: str, event: str) -> dict[str, str]:
        return {"email": email, "event": event}

    assert get_profile(EMAIL) == get_profile(EMAIL) and calls == [EMAIL]
    update_profile("bob.MARKER@example.com", "MARKER-written")
    audit("carol.MARKER@example.com", "MARKER-event")
    held = deploy.assert_no_plaintext()
    entries = [v for k, v in held if b":~" not in k and v.startswith(b"cd1:")]
    assert len(entries) == 3 and all(v.split(b"\n", 1)[1].startswith(MAGIC) for v in entries)
    queued = [v for k, v in held if b":~wb:" in k and v.startswith(b"r=")]
    assert len(queued) == 1 and queued[0].startswith(b"r=" + MAGIC)

    reg.flush()  # fails: the record goes to the dead letters
    assert flushed == [[{"email": "carol.MARKER@example.com", "event": "MARKER-event"}]]
    held = deploy.assert_no_plaintext()
    dead = [v for k, v in held if k.endswith(b":dead") and v.startswith(b"r=")]
    assert len(dead) == 1 and dead[0].startswith(b"r=" + MAGIC)
    (letter,) = reg.dead_letters()
    assert letter.record == {"email": "carol.MARKER@example.com", "event": "MARKER-event"}
    assert letter.error.startswith("RuntimeError") and "MARKER" not in letter.error
    broken[0] = False
    assert reg.replay_dead_letters() == 1
    reg.flush()
    assert flushed[-1] == [letter.record] and reg.dead_letters() == []
    deploy.assert_no_plaintext()


def test_inspect_stats_and_logs_never_show_them(
        deploy: Deployment, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    reg = deploy.registry(encryption_key=OLD)
    calls: list[str] = []
    get_profile = reg.cached(ttl=60, sensitive=True)(_profile(calls))

    def flush(records: list[dict[str, str]]) -> None:
        raise RuntimeError(f"cannot store {records!r}")

    @reg.write_behind(key="audit:{email}", flush=flush, sensitive=True, max_retries=1,
                      retry_delay=0.01, flush_interval=3600)
    def audit(email: str) -> dict[str, str]:
        return {"email": email}

    with caplog.at_level(logging.DEBUG):
        get_profile(EMAIL)
        key = get_profile.key(EMAIL)
        raw = deploy.client.get(key)
        deploy.client.set(key, raw[:-1] + bytes([raw[-1] ^ 1]), keepttl=True)
        get_profile(EMAIL)  # a decode error: logged
        audit(EMAIL)
        reg.flush()  # a retry and a dead letter: logged
    messages = [record.getMessage() for record in caplog.records]
    assert any("cannot decode" in m for m in messages)
    assert any("dead letters" in m and "withheld" in m for m in messages)
    assert not [m for m in messages if "MARKER" in m]
    for argv in (["inspect", key], ["stats"]):
        assert cli.main([*argv, "--backend", deploy.url, "--prefix", deploy.prefix]) == 0
    out = capsys.readouterr().out
    assert "encrypted" in out and '"entries": 2' in out and "MARKER" not in out


# --- processes and keys ------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import dataclasses, json, sys
    import cachedeco

    url, prefix, key = sys.argv[1:4]
    reg = cachedeco.Registry(url, prefix=prefix, encryption_key=key)

    @reg.cached(key="profile:{email}", ttl=60, sensitive=True)
    def get_profile(email: str) -> dict:
        return {"from": "child"}

    value = get_profile("alice.MARKER@example.com")
    print(json.dumps({"value": value, "stats": dataclasses.asdict(reg.stats())}))
""")


def _child(deploy: Deployment, key: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, deploy.url, deploy.prefix, key],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_processes_with_the_key_share_entries_and_others_recompute(deploy: Deployment) -> None:
    reg = deploy.registry(encryption_key=OLD)

    @reg.cached(key="profile:{email}", ttl=60, sensitive=True)
    def get_profile(email: str) -> dict[str, str]:
        return {"from": "parent"}

    get_profile(EMAIL)
    shared = _child(deploy, OLD)
    assert shared["value"] == {"from": "parent"} and shared["stats"]["hits"] == 1
    other = _child(deploy, "another-key-" + "x" * 32)
    assert other["value"] == {"from": "child"}
    assert other["stats"]["misses"] == 1 and other["stats"]["decode_errors"] == 0
    assert get_profile(EMAIL) == {"from": "parent"}  # its entry is still there


@pytest.mark.parametrize("deploy", ["redis", "cluster"], indirect=True)
def test_a_flipped_byte_is_a_counted_miss_and_is_overwritten(deploy: Deployment) -> None:
    reg = deploy.registry(encryption_key=OLD)
    calls: list[str] = []
    get_profile = reg.cached(ttl=60, sensitive=True)(_profile(calls))
    value = get_profile(EMAIL)
    key = get_profile.key(EMAIL)
    raw = deploy.client.get(key)
    flipped = raw[:-5] + bytes([raw[-5] ^ 0x40]) + raw[-4:]
    deploy.client.set(key, flipped, keepttl=True)
    assert get_profile(EMAIL) == value and len(calls) == 2  # a miss, never a wrong value
    assert get_profile.stats().decode_errors == 1
    assert deploy.client.get(key) not in (flipped, raw)  # overwritten
    assert get_profile(EMAIL) == value and len(calls) == 2


# --- rotation ----------------------------------------------------------------------------------


@every_deployment
def test_rotation_reads_the_older_keys_entries_and_invalidates_them(
        deploy: Deployment) -> None:
    calls: list[str] = []
    old = deploy.registry(encryption_key=OLD).cached(ttl=60, sensitive=True)(_profile(calls))
    rotated_reg = deploy.registry(encryption_key=[NEW, OLD])
    rotated = rotated_reg.cached(ttl=60, sensitive=True)(_profile(calls))
    new_only = deploy.registry(encryption_key=NEW).cached(ttl=60, sensitive=True)(
        _profile(calls))
    value = old(EMAIL)
    assert rotated(EMAIL) == value and calls == [EMAIL]  # a hit under the older key's name
    assert rotated.stats().hits == 1 and rotated.stats().misses == 0
    assert new_only(EMAIL) == value and calls == [EMAIL, EMAIL]  # OLD is not listed: a miss
    assert new_only.stats().decode_errors == 0
    assert rotated(EMAIL) == value and len(calls) == 2  # now under the current key's name
    assert rotated.invalidate(EMAIL)  # reaches the older name too
    assert deploy.client.get(old.key(EMAIL)).startswith(b"cdT:")
    old(EMAIL)

    @rotated_reg.write_through(rotated)
    def update(email: str) -> dict[str, str]:
        return {"email": email, "note": "updated"}

    update(EMAIL)  # stores under the current name, drops the older one
    assert deploy.client.get(old.key(EMAIL)).startswith(b"cdT:")
    assert rotated(EMAIL)["note"] == "updated"
    deploy.assert_no_plaintext()


@every_deployment
def test_a_rolling_rotation_through_old_then_new_serves_nothing_stale(
        deploy: Deployment) -> None:
    """The documented rollout: every process on [old, new] before any on [new, old]. A
    process on [old, new] still writes under the old name but updates and invalidates the
    name a [new, old] process stored under (one on the old key alone could not: its write
    left the new name's entry, stale, to every [new, old] process)."""
    db = {"note": "v0"}

    def load(email: str) -> dict[str, str]:
        return {"email": email, "note": db["note"]}

    first = deploy.registry(encryption_key=[OLD, NEW])
    reader = first.cached(ttl=60, sensitive=True, key="p:{email}")(load)

    @first.write_through(reader)
    def update(email: str) -> dict[str, str]:
        db["note"] = "v1"
        return {"email": email, "note": "v1"}

    rolled = deploy.registry(encryption_key=[NEW, OLD]).cached(
        ttl=60, sensitive=True, key="p:{email}")(load)
    assert rolled(EMAIL)["note"] == "v0"  # stored under the new name
    update(EMAIL)
    assert rolled(EMAIL)["note"] == "v1"
    db["note"] = "v2"
    reader.invalidate(EMAIL)
    assert rolled(EMAIL)["note"] == "v2"
    deploy.assert_no_plaintext()


@pytest.mark.parametrize("deploy", ["redis", "cluster"], indirect=True)
async def test_a_write_behind_after_a_rotation_drops_the_older_keys_copy(
        deploy: Deployment) -> None:
    """A process still on the older key alone reads the entry under its older name: the
    write must not leave it there (sync and asyncio writers)."""
    calls: list[str] = []
    old_reg = deploy.registry(encryption_key=OLD)
    old = old_reg.cached(ttl=60, sensitive=True)(_profile(calls))
    rotated_reg = deploy.registry(encryption_key=[NEW, OLD])
    rotated = rotated_reg.cached(ttl=60, sensitive=True)(_profile(calls))
    flushed: list[dict[str, str]] = []

    @rotated_reg.write_behind(rotated, flush=flushed.extend, sensitive=True,
                              flush_interval=3600)
    def update(email: str) -> dict[str, str]:
        return {"email": email, "note": "MARKER-behind"}

    async def aprofile(email: str) -> dict[str, str]:
        calls.append(email)
        return {"email": email, "note": "MARKER-result"}

    arotated = rotated_reg.cached(ttl=60, sensitive=True, key="aprofile:{email}")(aprofile)

    @rotated_reg.write_behind(arotated, flush=flushed.extend, sensitive=True,
                              flush_interval=3600)
    async def aupdate(email: str) -> dict[str, str]:
        return {"email": email, "note": "MARKER-abehind"}

    aold = old_reg.cached(ttl=60, sensitive=True, key="aprofile:{email}")(aprofile)
    assert old(EMAIL)["note"] == (await aold(EMAIL))["note"] == "MARKER-result"
    update(EMAIL)
    await aupdate(EMAIL)
    for older in (old.key(EMAIL), aold.key(EMAIL)):
        assert deploy.client.get(older).startswith(b"cdT:")  # a tombstone, not the value
    assert old(EMAIL)["note"] == (await aold(EMAIL))["note"] == "MARKER-result"  # loaded
    assert len(calls) == 4
    assert rotated(EMAIL)["note"] == "MARKER-behind"
    assert (await arotated(EMAIL))["note"] == "MARKER-abehind" and len(calls) == 4
    await rotated_reg.aflush()
    assert sorted(r["note"] for r in flushed) == ["MARKER-abehind", "MARKER-behind"]
    deploy.assert_no_plaintext()

def test_a_rotated_read_costs_one_more_read_on_a_miss_only(deploy: Deployment) -> None:
    calls: list[str] = []
    old = deploy.registry(encryption_key=OLD).cached(ttl=60, sensitive=True)(_profile(calls))
    rotated = deploy.registry(encryption_key=[NEW, OLD]).cached(ttl=60, sensitive=True)(
        _profile(calls))
    old(EMAIL)

    def commands(call: Callable[[], object]) -> int:
        before = commandstats(deploy.client)
        call()
        after = commandstats(deploy.client)
        return sum(after.values()) - sum(before.values()) - 1  # less the INFO itself

    rotated("warm-up")  # the connection is open: only the reads are counted below
    under_old = commands(lambda: rotated(EMAIL))
    rotated.refresh(EMAIL)  # now under the current name
    under_current = commands(lambda: rotated(EMAIL))
    assert len(calls) == 3 and under_current >= 1 and under_old == 2 * under_current


# --- cluster leases, async ---------------------------------------------------------------------


@pytest.mark.parametrize("deploy", ["cluster", "sentinel"], indirect=True)
def test_lock_true_single_flight_across_registries_with_hashed_keys(
        deploy: Deployment) -> None:
    calls: list[str] = []
    started = threading.Event()

    def slow(email: str) -> dict[str, str]:
        started.set()
        time.sleep(0.3)
        calls.append(email)
        return {"email": email}

    functions = [deploy.registry(encryption_key=OLD).cached(
        ttl=60, sensitive=True, lock=True, lock_timeout=30)(slow) for _ in range(2)]
    results: list[object] = []
    threads = [threading.Thread(target=lambda f=f: results.append(f(EMAIL)))
               for f in functions * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [{"email": EMAIL}] * 6 and calls == [EMAIL]
    deploy.assert_no_plaintext()


async def test_async_sensitive_functions_rotate_too(deploy: Deployment) -> None:
    calls: list[str] = []

    async def get_profile(email: str) -> dict[str, str]:
        calls.append(email)
        return {"email": email, "note": "MARKER-result"}

    old_reg = deploy.registry(encryption_key=OLD)
    old = cachedeco.cached(ttl=60, sensitive=True, registry=old_reg)(get_profile)
    rotated_reg = deploy.registry(encryption_key=[NEW, OLD])
    rotated = cachedeco.cached(ttl=60, sensitive=True, registry=rotated_reg)(get_profile)

    @rotated_reg.write_through(rotated)
    async def update(email: str) -> dict[str, str]:
        return {"email": email, "note": "MARKER-updated"}

    value = await old(EMAIL)
    assert await rotated(EMAIL) == value and calls == [EMAIL]
    await update(EMAIL)
    assert deploy.client.get(old.key(EMAIL)).startswith(b"cdT:")
    assert (await rotated(EMAIL))["note"] == "MARKER-updated" and calls == [EMAIL]
    assert await rotated.invalidate(EMAIL) and await old(EMAIL) == value
    deploy.assert_no_plaintext()
    for reg in (old_reg, rotated_reg):
        await reg.aclose()
