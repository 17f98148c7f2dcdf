"""The service-wide counters on real servers: every process adds its counts to
``prefix:~stats`` now and then (one command, off the call path; none on memory://), and the
operator's ``cachedeco stats`` shows hits, misses and the hit ratio per function from it;
run on Redis, Cluster and Sentinel."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from cachedeco import Registry
from tests.support.acl import MINIMAL_COMMANDS
from tests.support.commands import commandstats, ran
from tools.servers import Server

ROOT = Path(__file__).resolve().parents[2]
Make = Callable[..., Registry]

#: One process of the service: N calls over 5 keys, then it ends (argv[4]: "close" closes
#: the registry; "exit" leaves the last report to the exit).
WORKER = """
import sys
import cachedeco
url, prefix, calls, how = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
reg = cachedeco.Registry(url, prefix=prefix)

@reg.cached(ttl=60)
def product(x):
    return {"x": x}

for i in range(calls):
    product(i % 5)
print(product.stats().hits, product.stats().misses)
if how == "close":
    reg.close()
"""


@pytest.fixture(params=["redis", "cluster", "sentinel"])
def url(request: pytest.FixtureRequest, redis_url: str, cluster_url: str, sentinel_url: str,
        prefix: str) -> str:
    """The deployment under test (all are requested, so ``prefix`` is swept from each)."""
    return {"redis": redis_url, "cluster": cluster_url,
            "sentinel": sentinel_url}[request.param]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CACHEDECO_")}
    return subprocess.run([sys.executable, "-m", "cachedeco", *args], capture_output=True,
                          text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
                          env={**clean, **env, "PYTHONPATH": str(ROOT)})


def reported(reg: Registry) -> dict[str, int]:
    return reg.slot("default").backend().tally(reg.keyspace.stats).read()


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_process_adds_its_counts_and_the_cli_shows_them(url: str, prefix: str,
                                                              tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    runs = [("23", "close"), ("40", "exit"), ("17", "exit")]
    procs = [subprocess.Popen([sys.executable, str(worker), url, prefix, calls, how],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
             for calls, how in runs]
    hits = misses = 0
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        h, m = map(int, out.split())
        hits, misses = hits + h, misses + m
    assert hits + misses == 80

    done = cli("stats", "--backend", url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    shown = json.loads(done.stdout)
    assert shown["prefix"] == prefix and shown["service counters"] == 1
    assert shown["functions"] == {"__main__.product": {
        "hits": hits, "misses": misses, "hit_ratio": round(hits / 80, 4), "loads": misses}}


def test_a_report_is_one_command_sent_only_when_something_was_counted(
        redis_url: str, prefix: str, make_registry: Make, redis_client: redis.Redis) -> None:
    reg = make_registry(redis_url, prefix=prefix, stats_interval=3600)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    reg.slot("default").backend().tally(f"{prefix}:warm").add({"w|hits": 1})  # script loaded
    f(1), f(1), f(2)
    assert reported(reg) == {}  # nothing yet: not on the call path
    before = commandstats(redis_client)
    reg.close()  # the last report
    after = commandstats(redis_client)
    spent = ran(before, after)
    assert spent == {"evalsha": 1, "hincrby": 3}
    name = f"{__name__}.test_a_report_is_one_command_sent_only_when_something_was_counted" \
           ".<locals>.f"
    assert reported(reg) == {f"{name}|hits": 1, f"{name}|misses": 2, f"{name}|loads": 2}
    before = commandstats(redis_client)
    reg.close()  # nothing counted since: nothing sent
    assert commandstats(redis_client).get("evalsha") == before.get("evalsha")


def test_reports_come_every_interval_from_a_thread(redis_url: str, prefix: str,
                                                   make_registry: Make) -> None:
    reg = make_registry(redis_url, prefix=prefix, stats_interval=0.2)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    f(1)
    threads = [t for t in threading.enumerate() if t.name.startswith("cachedeco-report")]
    assert threads and all(t.daemon for t in threads)
    wait_for(lambda: sum(reported(reg).values()) == 2)  # a miss and a load, unclosed
    f(1)
    wait_for(lambda: sum(reported(reg).values()) == 3)


def test_a_registry_used_again_after_close_reports_again(redis_url: str, prefix: str,
                                                        make_registry: Make) -> None:
    reg = make_registry(redis_url, prefix=prefix, stats_interval=0.2)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    f(1)
    reg.close()  # reports what it counted, and stops its thread
    assert sum(reported(reg).values()) == 2
    f(1), f(2)  # used again: a hit, a miss and a load, reported by a thread started anew
    wait_for(lambda: sum(reported(reg).values()) == 5, timeout=10.0)


def test_nothing_is_reported_on_memory(make_registry: Make) -> None:
    before = {t.ident for t in threading.enumerate()}
    reg = make_registry("memory://", prefix="mem", stats_interval=0.1)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    f(1), f(1)
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert not [t for t in started if t.name.startswith("cachedeco-report")]
    assert reported(reg) == {}  # the memory tally was never written


def test_a_failed_report_is_sent_with_the_next(fresh_redis: Server,
                                               caplog: pytest.LogCaptureFixture) -> None:
    fresh_redis.kill()
    reg = Registry(fresh_redis.url, prefix="svc", stats_interval=0.2, socket_timeout=0.5,
                   socket_connect_timeout=0.5)

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    try:
        with caplog.at_level(logging.WARNING, logger="cachedeco"):
            for x in range(3):
                f(x)  # served uncached: the backend is down
            wait_for(lambda: "report the service-wide counters" in caplog.text)
        fresh_redis.restart()
        wait_for(lambda: f(9) == 9 and f.stats().hits > 0)  # the backend answers again
        stats = f.stats()
        name = f"{__name__}.test_a_failed_report_is_sent_with_the_next.<locals>.f"
        expect = {f"{name}|{field}": value for field, value in stats.counters() if value}
        wait_for(lambda: reported(reg) == expect)  # nothing lost, nothing twice
        assert stats.loads >= 4 and stats.backend_errors >= 3  # the outage is counted too
    finally:
        reg.close()


def test_a_minimal_acl_user_reports(redis_url: str, prefix: str,
                                    redis_client: redis.Redis, make_registry: Make) -> None:
    """The minimal command list of docs/concepts/acl.md covers the report (HINCRBY in a script)."""
    from urllib.parse import urlsplit

    name, password = f"cd-{prefix}", "pw-" + prefix
    admin: Any = redis_client
    admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}",
                          f"~{prefix}:*", f"&{prefix}:*", "-@all", *MINIMAL_COMMANDS)
    try:
        parts = urlsplit(redis_url)
        url = parts._replace(netloc=f"{name}:{password}@{parts.hostname}:{parts.port}").geturl()
        reg = make_registry(url, prefix=prefix, on_error="raise")

        @reg.cached(ttl=60)
        def f(x: int) -> int:
            return x

        f(1), f(1)
        reg.close()
        assert sorted(reported(make_registry(redis_url, prefix=prefix)).values()) == [1, 1, 1]
    finally:
        admin.execute_command("ACL", "DELUSER", name)


# --- the command line ---------------------------------------------------------------------


def test_inspect_names_the_tags_and_says_whether_the_entry_is_valid(
        url: str, prefix: str, make_registry: Make) -> None:
    reg = make_registry(url, prefix=prefix)

    @reg.cached(ttl=60, key="product:{pid}", tags=["product:{pid}", "catalog"])
    def product(pid: int) -> dict[str, int]:
        return {"id": pid}

    product(1), product(2)
    shown = json.loads(cli("inspect", "product:1", "--backend", url, "--prefix", prefix).stdout)
    assert shown["valid"] is True
    tags = [(t["kind"], t["name"], t["current"]) for t in shown["tags"]]
    assert sorted(tags) == [("function", "key=product:%7B%7D", True),
                            ("tag", "catalog", True), ("tag", "product:1", True)]

    refused = cli("invalidate-tags", "product:{pid}", "--backend", url, "--prefix", prefix)
    assert refused.returncode == 2 and "template" in refused.stderr
    assert json.loads(cli("inspect", "product:1", "--backend", url, "--prefix",
                          prefix).stdout)["valid"] is True  # nothing was invalidated

    done = cli("invalidate-tags", "catalog", "--backend", url, "--prefix", prefix)
    assert done.returncode == 0, done.stderr
    shown = json.loads(cli("inspect", "product:1", "--backend", url, "--prefix", prefix).stdout)
    assert shown["found"] is True and shown["valid"] is False
    # the invalidated tag's token is held by no tag key any more: its name is not known
    after = sorted((t["name"] or "", t["current"]) for t in shown["tags"])
    assert after == [("", False), ("key=product:%7B%7D", True), ("product:1", True)]
    product.invalidate(2)
    shown = json.loads(cli("inspect", "product:2", "--backend", url, "--prefix", prefix).stdout)
    assert shown["tombstone"] is True and shown["valid"] is False


def test_stats_without_a_prefix_says_which_it_read(redis_url: str) -> None:
    done = cli("stats", "--backend", redis_url)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["prefix"] == "cachedeco"
    assert done.stderr.strip() == (
        f"cachedeco: no --prefix given: read the default prefix 'cachedeco', which holds "
        f"{shown['keys']} key(s) (pass --prefix or set CACHEDECO_PREFIX)")
    chosen = cli("stats", "--backend", redis_url, CACHEDECO_PREFIX="elsewhere")
    assert chosen.returncode == 0 and chosen.stderr == ""
    assert json.loads(chosen.stdout)["prefix"] == "elsewhere"


@pytest.mark.parametrize("command", [["stats"], ["inspect", "k"], ["invalidate-tags", "t"],
                                     ["clear", "--yes"]])
def test_an_unreachable_backend_is_one_line(command: list[str], fresh_redis: Server) -> None:
    url = fresh_redis.url
    fresh_redis.kill()
    done = cli(*command, "--backend", url, "--prefix", "p")
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("cachedeco: ") and "Traceback" not in done.stderr
    assert str(fresh_redis.port) in done.stderr


async def test_an_asyncio_client_reports_from_a_task(redis_url: str, prefix: str) -> None:
    import redis.asyncio

    before = {t.ident for t in threading.enumerate()}
    client = redis.asyncio.Redis.from_url(redis_url)
    reg = Registry(client, prefix=prefix, stats_interval=0.2)

    @reg.cached(ttl=60)
    async def f(x: int) -> int:
        return x

    await f(1), await f(1)
    name = f"{__name__}.test_an_asyncio_client_reports_from_a_task.<locals>.f"
    tally = reg.slot("default").abackend().tally(reg.keyspace.stats)
    deadline = time.monotonic() + 60
    while await tally.read() != {f"{name}|hits": 1, f"{name}|misses": 1, f"{name}|loads": 1}:
        assert time.monotonic() < deadline, await tally.read()
        await asyncio.sleep(0.05)  # a task on this loop reports, no thread
    started = [t.name for t in threading.enumerate() if t.ident not in before]
    assert not [n for n in started if n.startswith("cachedeco-report")]  # a task, no thread
    await f(2)
    await reg.aclose()  # the last report, from the task, before the client closes
    with redis.Redis.from_url(redis_url) as sync:
        assert sync.hget(reg.keyspace.stats, f"{name}|misses") == b"2"


def test_a_call_while_the_interpreter_shuts_down_still_answers(
        redis_url: str, prefix: str, make_registry: Make, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    reg = make_registry(redis_url, prefix=prefix, stats_interval=0.2, spool=tmp_path / "s.db")

    @reg.cached(ttl=60)
    def f(x: int) -> int:
        return x

    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    # Python 3.12+ refuses new threads once it shuts down: a daemon thread's call after an
    # exit hook closed the registry binds again, and its reporter and spool worker cannot start
    monkeypatch.setattr(threading.Thread, "start", refused)
    assert f(1) == 1
    assert f(1) == 1 and f.stats().hits == 1
