"""The operator's command line, run as a subprocess against the test server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis

from cachedeco import Registry, cached, write_behind
from tests.support.acl import API_RULES, MINIMAL_COMMANDS, confined_user, user_url
from tests.support.commands import commandstats, ran
from tests.support.operator_cli import cli

#: What the operator commands run beyond the minimal ACL's first line (docs/concepts/acl.md).
CLI_COMMANDS = ("+hgetall", "+pttl")


def fill(redis_url: str, prefix: str) -> Registry:
    reg = Registry(redis_url, prefix=prefix)

    @cached(registry=reg, key="user:{uid}", tags=["users"])
    def user(uid: int) -> dict[str, int]:
        return {"id": uid}

    for uid in range(3):
        user(uid)
    user.invalidate(2)  # a tombstone
    return reg


def test_stats_counts_entries_tombstones_and_tags(redis_url: str, prefix: str) -> None:
    fill(redis_url, prefix).close()
    done = cli("stats", "--backend", redis_url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["entries"], out["tombstones"], out["tag keys"]) == (2, 1, 1)
    assert out["function tags"] == 1


def test_inspect_shows_the_envelope_and_value(redis_url: str, prefix: str) -> None:
    fill(redis_url, prefix).close()
    done = cli("inspect", "user:1", "--backend", redis_url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["found"] is True and out["key"] == f"{prefix}:user:1"
    assert out["value"] == '{"id":1}'
    assert out["marker"].startswith("cd1:") and 0 < out["pttl_ms"] <= 3_960_000
    assert len(out["tag_tokens"]) == 2 and out["load_ms"] >= 0 and "held" not in out
    missing = json.loads(cli("inspect", "nope", "--backend", redis_url,
                             "--prefix", prefix).stdout)
    assert missing == {"key": f"{prefix}:nope", "found": False}


def test_inspect_says_a_write_behind_entry_is_held_until_its_flush(redis_url: str,
                                                                   prefix: str) -> None:
    reg = Registry(redis_url, prefix=prefix)

    @cached(registry=reg, key="user:{uid}")
    def user(uid: int) -> dict[str, int]:
        return {"id": uid}

    @write_behind(user, flush=lambda records: None, flush_interval=3600)
    def save(uid: int) -> dict[str, int]:
        return {"id": uid, "saved": 1}

    save(1)
    held = json.loads(cli("inspect", "user:1", "--backend", redis_url, "--prefix",
                          prefix).stdout)
    assert held["held"] is True and "load_ms" not in held and held["valid"] is True
    reg.close()  # flushed
    done = json.loads(cli("inspect", "user:1", "--backend", redis_url, "--prefix",
                          prefix).stdout)
    assert "held" not in done and done["load_ms"] == 0 and done["marker"] != held["marker"]
    assert done["value"] == held["value"] == '{"id":1,"saved":1}'


def test_inspect_shows_bytes_as_bytes_and_a_pickle_by_its_size(redis_url: str,
                                                               prefix: str) -> None:
    reg = Registry(redis_url, prefix=prefix, secret=b"s" * 32)

    @cached(registry=reg, key="thumb:{n}")
    def thumb(n: int) -> bytes | None:
        return b"\x89PNG\r\n" + bytes([n]) if n else None

    @cached(registry=reg, key="obj:{n}", serializer="pickle")
    def obj(n: int) -> set[int]:
        return {n}

    thumb(1), thumb(0), obj(1)
    reg.close()
    shown = {}
    for key in ("thumb:1", "thumb:0", "obj:1"):
        done = cli("inspect", key, "--backend", redis_url, "--prefix", prefix)
        assert done.returncode == 0, done.stderr
        shown[key] = json.loads(done.stdout)["value"]
    assert shown["thumb:1"] == "b'\\x89PNG\\r\\n\\x01'"  # as Python writes the bytes
    assert shown["thumb:0"] == "None"
    assert shown["obj:1"].endswith("bytes, signed pickle>")  # never unpickled by the CLI


def test_invalidate_tags_makes_entries_miss(redis_url: str, prefix: str) -> None:
    reg = fill(redis_url, prefix)
    calls = []

    @cached(registry=reg, key="user:{uid}", tags=["users"])
    def user(uid: int) -> dict[str, int]:
        calls.append(uid)
        return {"id": uid}

    user(0)
    assert calls == []
    done = cli("invalidate-tags", "users", "--backend", redis_url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    user(0)
    assert calls == [0]
    reg.close()


def test_clear_needs_confirmation_and_spares_foreign_keys(redis_url: str, prefix: str,
                                                          redis_client: redis.Redis) -> None:
    fill(redis_url, prefix).close()
    redis_client.set(f"{prefix}x:foreign", b"1", px=60_000)
    refused = cli("clear", "--backend", redis_url, "--prefix", prefix)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert redis_client.exists(f"{prefix}:user:0") == 1
    done = cli("clear", "--yes", "--backend", redis_url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"deleted": 3}
    assert redis_client.exists(f"{prefix}:user:0", f"{prefix}:user:1") == 0
    assert redis_client.get(f"{prefix}x:foreign") == b"1"
    assert any(redis_client.scan_iter(match=f"{prefix}:~tag:*"))  # its own keys stay
    helped = cli("clear", "--help")
    assert "every entry" in helped.stdout and "own keys stay" in helped.stdout


def test_usage_errors() -> None:
    assert cli("stats").returncode == 2  # no --backend and no $CACHEDECO_BACKEND
    bad = cli("stats", "--backend", "nope://x")
    assert bad.returncode == 1 and "unknown scheme" in bad.stderr
    url = "redis://127.0.0.1:1/0"
    for option, says in [("ssl", "give NAME=VALUE"), ("=1", "give NAME=VALUE"),
                         ("prefix=x", "not a backend option")]:
        bad = cli("stats", "--backend", url, "--option", option)
        assert bad.returncode == 2 and says in bad.stderr, bad.stderr
    bad = cli("stats", "--backend", url, "--option", "socket_timeout=-1")
    assert bad.returncode == 1 and "socket_timeout" in bad.stderr  # checked by the registry


def test_options_reach_the_connections(redis_url: str, prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as admin:
        before = commandstats(admin)
        done = cli("stats", "--backend", redis_url, "--prefix", prefix,
                   "--option", "client_name=ops", "--option", "socket_timeout=2.5")
        assert done.returncode == 0, done.stderr
        assert ran(before, commandstats(admin)).get("client|setname", 0) >= 1


def test_a_reader_that_stops_reading_ends_the_command_quietly(redis_url: str,
                                                              prefix: str) -> None:
    fill(redis_url, prefix).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDECO_")}
    # `cachedeco stats | head -0`: the pipe is closed before the command prints
    proc = subprocess.Popen([sys.executable, "-m", "cachedeco", "stats", "--backend", redis_url,
                             "--prefix", prefix], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait(60) == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("rules", [API_RULES, ("-@all", *MINIMAL_COMMANDS, *CLI_COMMANDS)],
                         ids=["api", "minimal"])
def test_the_commands_work_for_a_user_confined_to_the_prefix(
        redis_url: str, prefix: str, rules: tuple[str, ...]) -> None:
    """`stats` leaves out the server's memory where INFO (in @dangerous) is refused, instead
    of failing as a whole; with the minimal ACL the commands need `+hgetall` and `+pttl`."""
    with redis.Redis.from_url(redis_url) as admin, \
            confined_user([admin], prefix, rules) as (name, password):
        url = user_url(redis_url, name, password)
        fill(url, prefix).close()
        base = ("--backend", url, "--prefix", prefix)
        done = cli("stats", *base)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert (out["entries"], out["tombstones"], out["used_memory"]) == (2, 1, None)
        inspected = json.loads(cli("inspect", "user:1", *base).stdout)
        assert inspected["found"] is True and inspected["value"] == '{"id":1}'
        assert cli("invalidate-tags", "users", *base).returncode == 0
        assert cli("clear", "--yes", *base).returncode == 0
        after = json.loads(cli("stats", *base).stdout)
        assert (after.get("entries", 0), after.get("tombstones", 0)) == (0, 0)


def test_invalidate_tags_accepts_yes(redis_url: str, prefix: str) -> None:
    fill(redis_url, prefix).close()
    done = cli("invalidate-tags", "users", "--yes", "--backend", redis_url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["invalidated"] == ["users"]
