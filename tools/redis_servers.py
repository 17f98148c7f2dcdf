"""Private Redis deployments for the tests: a single server, a Cluster and a Sentinel setup.

Every process is a plain child (never daemonized) of ``redis-server``: it listens on
127.0.0.1 only, on a free port, in a temporary directory of its own, with persistence off
(``--save "" --appendonly no``). ``stop()`` shuts it down (SHUTDOWN NOSAVE NOW, then SIGTERM,
then SIGKILL) and removes the directory; processes still running when the interpreter exits
are stopped too, except those the command line hands over to its state file.

Library use (the test fixtures in ``tests/conftest.py``)::

    server = start_single()      # server.url == "redis://127.0.0.1:PORT/0"
    cluster = start_cluster()    # "redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
    setup = start_sentinel()     # "redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster/0"
    setup.kill_primary(); setup.wait_for_failover()
    for deployment in (server, cluster, setup):
        deployment.stop()

Command line (what ``scripts/test`` runs)::

    python -m tools.redis_servers up --env-file PATH    # start all three, write PATH
    python -m tools.redis_servers down --env-file PATH  # stop what `up` started, remove PATH

Needs ``redis-server`` (7.0+) and, for the cluster, ``redis-cli`` on PATH; Python side, only
the standard library and redis-py.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

__all__ = [
    "ENV_CLUSTER_URL",
    "ENV_REDIS_URL",
    "ENV_SENTINEL_PRIMARY_PORT",
    "ENV_SENTINEL_REPLICA_PORT",
    "ENV_SENTINEL_URL",
    "HOST",
    "SERVICE_NAME",
    "Cluster",
    "RedisProcess",
    "RedisStartError",
    "SentinelSetup",
    "Server",
    "acommandstats",
    "cluster_hosts",
    "commandstats",
    "free_port",
    "main",
    "parse_hostports",
    "sentinel_hosts",
    "start_cluster",
    "start_sentinel",
    "start_single",
    "sweep_prefix",
]

HOST = "127.0.0.1"
SERVICE_NAME = "mymaster"

ENV_REDIS_URL = "CACHEDECO_TEST_REDIS_URL"
ENV_CLUSTER_URL = "CACHEDECO_TEST_CLUSTER_URL"
ENV_SENTINEL_URL = "CACHEDECO_TEST_SENTINEL_URL"
ENV_SENTINEL_PRIMARY_PORT = "CACHEDECO_TEST_SENTINEL_PRIMARY_PORT"
ENV_SENTINEL_REPLICA_PORT = "CACHEDECO_TEST_SENTINEL_REPLICA_PORT"

_START_ATTEMPTS = 5  # fresh ports per attempt when a port was taken meanwhile
_READY_TIMEOUT = 10.0  # seconds for one process to answer PING
_SETTLE_TIMEOUT = 20.0  # seconds for a cluster or sentinel setup to settle
_STOP_TIMEOUT = 5.0  # seconds per shutdown step (SHUTDOWN, SIGTERM, SIGKILL)
_POLL = 0.02


class RedisStartError(RuntimeError):
    """A Redis process or deployment did not come up (binary missing, crash, timeout)."""


# --- ports -----------------------------------------------------------------------------------

_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """A loopback port that was free a moment ago and that this process has not handed out."""
    with _ports_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise RedisStartError("no free loopback port found")


# --- processes -------------------------------------------------------------------------------

_owned_lock = threading.RLock()
_owned: list[RedisProcess] = []
_owned_listeners: list[Callable[[list[RedisProcess]], None]] = []


def _own(process: RedisProcess, owned: bool) -> None:
    """Add or drop a process from the set stopped at exit, and tell the listeners."""
    with _owned_lock:
        if owned and process not in _owned:
            _owned.append(process)
        elif not owned and process in _owned:
            _owned.remove(process)
        else:
            return
        for listener in _owned_listeners:
            listener(list(_owned))


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RedisStartError(
            f"{name} not found on PATH: install it (Debian: apt-get install redis-server "
            "redis-tools) or run scripts/test, which does"
        )
    return path


def _client(port: int, timeout: float = 1.0) -> redis.Redis:
    """A decoding client for probes and admin commands, without retries."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


def _dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RedisStartError(f"unexpected reply {value!r}")
    return {str(k): v for k, v in value.items()}


def _parse_info(text: object) -> dict[str, str]:
    """``key:value`` lines (CLUSTER INFO, INFO replication) as a dict."""
    if isinstance(text, bytes):
        text = text.decode()
    fields: dict[str, str] = {}
    for line in str(text).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


class _PortTakenError(Exception):
    """The process exited because one of its ports was taken in the meantime."""


@dataclass(eq=False)
class RedisProcess:
    """One ``redis-server`` (or sentinel) child process running in its own directory."""

    role: str
    port: int
    directory: Path
    argv: list[str]
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        """A new decoding client (``decode_responses=True``) for this process; close it."""
        return _client(self.port, timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        """Wait until this very process (checked by pid) answers on its port."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                log = self.log_tail()
                if "Address already in use" in log:
                    raise _PortTakenError(log)
                raise RedisStartError(f"{self.role} :{self.port} exited with {code}:\n{log}")
            with contextlib.suppress(redis.RedisError), self.client(0.5) as probe:
                if int(_dict(probe.info("server"))["process_id"]) == self.pid:
                    return
            if time.monotonic() > deadline:
                raise RedisStartError(
                    f"{self.role} :{self.port} did not answer in {timeout:.0f}s:\n"
                    + self.log_tail()
                )
            time.sleep(_POLL)

    def kill(self) -> None:
        """SIGKILL, like a crash: no shutdown, the directory stays (see ``restart``)."""
        if self.is_running():
            self.process.kill()
        self.process.wait()

    def halt(self) -> None:
        """Shut the process down cleanly if possible, forcibly if not; keep the directory."""
        if self.is_running():
            with contextlib.suppress(redis.RedisError), self.client(1.0) as admin:
                admin.shutdown(nosave=True, now=True)
            for step in (None, self.process.terminate, self.process.kill):
                if step is not None:
                    step()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(_STOP_TIMEOUT)
                    break
        self.process.wait()

    def restart(self) -> None:
        """Start the process again, same port and arguments (after ``kill`` or ``halt``)."""
        self.halt()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = _popen(self.argv, self.directory)
        _own(self, owned=True)
        try:
            self.wait_ready()
        except _PortTakenError as exc:
            self.stop()
            raise RedisStartError(f"{self.role}: port {self.port} was taken") from exc
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Shut down and remove the directory. Idempotent."""
        self.halt()
        _own(self, owned=False)
        shutil.rmtree(self.directory, ignore_errors=True)


def _popen(argv: list[str], directory: Path) -> subprocess.Popen[bytes]:
    with (directory / "redis.log").open("ab") as log:
        # Own session: a Ctrl-C on the terminal reaches the test runner, which stops us.
        return subprocess.Popen(
            argv,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _server_args(port: int, directory: Path) -> list[str]:
    return [
        _binary("redis-server"),
        "--port", str(port),
        "--bind", HOST,
        "--protected-mode", "no",
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--logfile", "",
        "--enable-debug-command", "local",  # DEBUG SLEEP for timeout tests
        "--repl-diskless-sync-delay", "0",  # a replica syncs at once, not after 5 s
    ]  # fmt: skip


def _launch(
    role: str, build: Callable[[list[int], Path], list[str]], ports: int = 1
) -> RedisProcess:
    """Start one process on fresh ports (``build(ports, directory) -> argv``) and wait for it.

    A port taken between our probe and the server's bind makes the server exit at once with
    "Address already in use": then try again with other ports.
    """
    directory = Path(tempfile.mkdtemp(prefix=f"cachedeco-redis-{role}-"))
    try:
        for _ in range(_START_ATTEMPTS):
            chosen = [free_port() for _ in range(ports)]
            for leftover in directory.iterdir():  # of an attempt whose port was taken
                leftover.unlink()
            argv = build(chosen, directory)
            proc = RedisProcess(role, chosen[0], directory, argv, _popen(argv, directory))
            _own(proc, owned=True)
            try:
                proc.wait_ready()
            except _PortTakenError:
                proc.halt()
                _own(proc, owned=False)
                continue
            except BaseException:
                proc.halt()
                _own(proc, owned=False)
                raise
            return proc
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)
    raise RedisStartError(f"{role}: ports kept being taken ({_START_ATTEMPTS} attempts)")


def _wait_until(what: str, check: Callable[[], bool], timeout: float = _SETTLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RedisStartError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def _stop_all(processes: Sequence[RedisProcess]) -> None:
    """Stop in reverse start order (sentinels before the servers they watch)."""
    for proc in reversed(processes):
        proc.stop()


class _Deployment:
    """Common behaviour: ``stop()``, context manager, ``processes``."""

    @property
    def processes(self) -> list[RedisProcess]:
        raise NotImplementedError

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        _stop_all(self.processes)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- single server ---------------------------------------------------------------------------


@dataclass(eq=False)
class Server(_Deployment):
    """A single redis-server: ``url`` is ``redis://127.0.0.1:PORT/0``."""

    process: RedisProcess
    host: str = HOST

    @property
    def processes(self) -> list[RedisProcess]:
        return [self.process]

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def kill(self) -> None:
        """Crash the server (SIGKILL); ``restart()`` brings it back on the same port."""
        self.process.kill()

    def restart(self) -> None:
        self.process.restart()


def start_single() -> Server:
    """Start one redis-server on a free port and wait until it answers."""
    return Server(_launch("single", lambda ports, d: _server_args(ports[0], d)))


# --- cluster ---------------------------------------------------------------------------------


@dataclass(eq=False)
class Cluster(_Deployment):
    """A Redis Cluster of primaries without replicas, all 16384 slots assigned."""

    nodes: list[RedisProcess]
    host: str = HOST

    @property
    def processes(self) -> list[RedisProcess]:
        return list(self.nodes)

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(self.host, port) for port in self.ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)


def _cluster_node_args(ports: list[int], directory: Path) -> list[str]:
    return [
        *_server_args(ports[0], directory),
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(directory / "nodes.conf"),
        "--cluster-port", str(ports[1]),  # the bus port, chosen free too (not port + 10000)
        "--cluster-node-timeout", "5000",
    ]  # fmt: skip


def _cluster_ok(node: RedisProcess, size: int) -> bool:
    with node.client() as probe:
        info = _parse_info(probe.execute_command("CLUSTER", "INFO"))
    return (
        info.get("cluster_state") == "ok"
        and info.get("cluster_slots_assigned") == "16384"
        and info.get("cluster_known_nodes") == str(size)
    )


def start_cluster(primaries: int = 3) -> Cluster:
    """Start ``primaries`` (at least 3) cluster nodes, create the cluster, wait for state ok."""
    if primaries < 3:
        raise ValueError("a Redis Cluster needs at least 3 primaries")
    cli = _binary("redis-cli")
    nodes: list[RedisProcess] = []
    try:
        for i in range(primaries):
            nodes.append(_launch(f"cluster{i + 1}", _cluster_node_args, ports=2))
        addresses = [f"{HOST}:{n.port}" for n in nodes]
        create = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_SETTLE_TIMEOUT,
            check=False,
        )
        if create.returncode != 0:
            raise RedisStartError(
                f"redis-cli --cluster create failed ({create.returncode}):\n"
                + create.stdout[-2000:]
                + create.stderr[-2000:]
            )
        for node in nodes:
            _wait_until(f"cluster_state:ok on :{node.port}", partial(_cluster_ok, node, primaries))
    except BaseException:
        _stop_all(nodes)
        raise
    return Cluster(nodes)


# --- sentinel --------------------------------------------------------------------------------


@dataclass(eq=False)
class SentinelSetup(_Deployment):
    """A primary, a replica and sentinels watching them as ``service_name``.

    ``primary_port`` and ``replica_port`` are the ports as started; after a failover
    (``kill_primary()`` then ``wait_for_failover()``) ask ``discover_primary()``.
    """

    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]
    service_name: str = SERVICE_NAME
    db: int = 0
    host: str = HOST
    killed: list[RedisProcess] = field(default_factory=list)

    @property
    def processes(self) -> list[RedisProcess]:
        return [self.primary, self.replica, *self.sentinels]

    @property
    def primary_port(self) -> int:
        return self.primary.port

    @property
    def replica_port(self) -> int:
        return self.replica.port

    @property
    def sentinel_ports(self) -> list[int]:
        return [s.port for s in self.sentinels]

    @property
    def url(self) -> str:
        nodes = ",".join(f"{self.host}:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{nodes}/{self.service_name}/{self.db}"

    def discover_primary(self) -> tuple[str, int]:
        """The primary's address as the first answering sentinel reports it."""
        errors: list[str] = []
        for sentinel in self.sentinels:
            try:
                return self._reported_primary(sentinel)
            except (redis.RedisError, RedisStartError) as exc:
                errors.append(f":{sentinel.port}: {exc}")
        raise RedisStartError("no sentinel reports a primary: " + "; ".join(errors))

    def _reported_primary(self, sentinel: RedisProcess) -> tuple[str, int]:
        with sentinel.client() as probe:
            reply = probe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            raise RedisStartError(f"no primary known to sentinel :{sentinel.port}")
        return str(reply[0]), int(reply[1])

    def kill_primary(self) -> int:
        """SIGKILL the current primary (a crash); returns its port. Sentinels fail over."""
        _, port = self.discover_primary()
        for proc in (self.primary, self.replica):
            if proc.port == port:
                proc.kill()
                self.killed.append(proc)
                return port
        raise RedisStartError(f"the primary :{port} is not part of this setup")

    def wait_for_failover(self, old_port: int | None = None, timeout: float = 30.0) -> int:
        """Wait until every sentinel names a new, answering primary; returns its port."""
        old = old_port if old_port is not None else self.killed[-1].port

        def promoted() -> bool:
            ports = {self._reported_primary(s)[1] for s in self.sentinels}
            if len(ports) != 1 or old in ports:
                return False
            with _client(ports.pop()) as probe:
                return _dict(probe.info("replication")).get("role") == "master"

        _wait_until(f"a failover away from :{old}", promoted, timeout)
        return self.discover_primary()[1]


def _sentinel_args(primary_port: int) -> Callable[[list[int], Path], list[str]]:
    def build(ports: list[int], directory: Path) -> list[str]:
        conf = directory / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {ports[0]}",
                    f"bind {HOST}",
                    "protected-mode no",
                    "daemonize no",
                    f"dir {directory}",
                    'logfile ""',
                    "sentinel resolve-hostnames no",
                    f"sentinel monitor {SERVICE_NAME} {HOST} {primary_port} 2",
                    f"sentinel down-after-milliseconds {SERVICE_NAME} 1000",
                    f"sentinel failover-timeout {SERVICE_NAME} 5000",
                    "",
                ]
            )
        )
        return [_binary("redis-server"), str(conf), "--sentinel"]

    return build


def _replica_linked(primary: RedisProcess, replica: RedisProcess) -> bool:
    with replica.client() as probe:
        if _dict(probe.info("replication")).get("master_link_status") != "up":
            return False
    with primary.client() as probe:
        info = _dict(probe.info("replication"))
    return any(
        isinstance(v, dict) and int(v.get("port", 0)) == replica.port and v.get("state") == "online"
        for k, v in info.items()
        if k.startswith("slave")
    )


def _sentinel_settled(sentinel: RedisProcess, setup: SentinelSetup) -> bool:
    """The sentinel names the primary, sees the replica up and knows the other sentinels."""
    with sentinel.client() as probe:
        primary = _pairs(probe.execute_command("SENTINEL", "MASTER", setup.service_name))
        replicas = probe.execute_command("SENTINEL", "REPLICAS", setup.service_name)
    healthy = {
        int(r["port"])
        for r in map(_pairs, replicas)
        if not {"s_down", "o_down", "disconnected"} & set(r.get("flags", "").split(","))
    }
    return (
        int(primary.get("port", 0)) == setup.primary_port
        and primary.get("flags") == "master"
        and int(primary.get("num-other-sentinels", 0)) == len(setup.sentinels) - 1
        and setup.replica_port in healthy
    )


def _pairs(reply: object) -> dict[str, str]:
    """A flat ``[k1, v1, k2, v2, ...]`` reply (or a dict) as a dict of strings."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    if not isinstance(reply, list):
        raise RedisStartError(f"unexpected reply {reply!r}")
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def start_sentinel(sentinels: int = 3) -> SentinelSetup:
    """Start a primary, a replica of it and ``sentinels`` sentinels (quorum 2); wait until
    every sentinel reports the primary and knows the replica and the other sentinels."""
    started: list[RedisProcess] = []
    try:
        primary = _launch("primary", lambda ports, d: _server_args(ports[0], d))
        started.append(primary)
        replica = _launch(
            "replica",
            lambda ports, d: [*_server_args(ports[0], d), "--replicaof", HOST, str(primary.port)],
        )
        started.append(replica)
        # Link first: a sentinel finds replicas in the primary's INFO, asked every 10 s.
        _wait_until("the replica to link", lambda: _replica_linked(primary, replica))
        for i in range(sentinels):
            started.append(_launch(f"sentinel{i + 1}", _sentinel_args(primary.port)))
        setup = SentinelSetup(primary, replica, started[2:])
        for sentinel in setup.sentinels:
            _wait_until(
                f"sentinel :{sentinel.port} to settle",
                partial(_sentinel_settled, sentinel, setup),
            )
    except BaseException:
        _stop_all(started)
        raise
    return setup


# --- URLs and keys ---------------------------------------------------------------------------


def parse_hostports(netloc: str) -> list[tuple[str, int]]:
    """``"h1:p1,h2:p2"`` as ``[("h1", p1), ("h2", p2)]``."""
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host, int(port)))
    return hosts


def cluster_hosts(url: str) -> list[tuple[str, int]]:
    """The nodes of ``redis+cluster://h1:p1,h2:p2,...``."""
    return parse_hostports(urlsplit(url).netloc)


def sentinel_hosts(url: str) -> tuple[list[tuple[str, int]], str, int]:
    """``(sentinels, service, db)`` of ``redis+sentinel://h1:p1,.../service[/db]``."""
    parts = urlsplit(url)
    service, _, db = parts.path.strip("/").partition("/")
    return parse_hostports(parts.netloc), service, int(db or 0)


def sweep_prefix(client: Any, prefix: str) -> int:
    """UNLINK the keys ``prefix*`` and ``{prefix}*`` (SCAN, never KEYS); returns how many.

    ``client`` is a sync ``redis.Redis`` or ``RedisCluster`` (whose SCAN covers every primary;
    its keys are unlinked one at a time, as they may lie in different slots).
    """
    deleted = 0
    one_by_one = isinstance(client, RedisCluster)
    for pattern in (f"{prefix}*", f"{{{prefix}}}*"):
        batch: list[Any] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if one_by_one or len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    return deleted


# --- command statistics ----------------------------------------------------------------------


def _calls(info: Mapping[str, Any]) -> dict[str, int]:
    """``{"get": 10, ...}`` from a parsed ``INFO commandstats`` (one node or many summed)."""
    calls: dict[str, int] = {}
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            name = key.removeprefix("cmdstat_")
            calls[name] = calls.get(name, 0) + int(value["calls"])
        elif isinstance(value, dict):  # a cluster client's reply: one info dict per node
            for name, count in _calls(value).items():
                calls[name] = calls.get(name, 0) + count
    return calls


def commandstats(client: Any) -> dict[str, int]:
    """Calls per command since start (``INFO commandstats``), e.g. ``{"get": 10, "mget": 3}``.

    Works with ``redis.Redis`` and ``redis.cluster.RedisCluster`` (summed over every
    primary). Counts are server-wide: compare two snapshots taken around the code under test.
    Subcommands appear as ``"client|setinfo"``.
    """
    if hasattr(client, "get_primaries"):
        return _calls(_dict(client.info("commandstats", target_nodes=client.PRIMARIES)))
    return _calls(_dict(client.info("commandstats")))


async def acommandstats(client: Any) -> dict[str, int]:
    """``commandstats`` for ``redis.asyncio.Redis`` / ``RedisCluster`` (every primary)."""
    if hasattr(client, "get_primaries"):
        return _calls(_dict(await client.info("commandstats", target_nodes=client.PRIMARIES)))
    return _calls(_dict(await client.info("commandstats")))


# --- command line ----------------------------------------------------------------------------

_STOP_ORDER = ("sentinel", "replica")  # stopped first; the rest afterwards


@dataclass
class _StateFile:
    """The processes the CLI owns, rewritten (atomically) whenever one starts or stops."""

    path: Path

    def write(self, processes: list[RedisProcess]) -> None:
        entries = [
            {"role": p.role, "pid": p.pid, "port": p.port, "directory": str(p.directory)}
            for p in processes
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"processes": entries}, indent=1) + "\n")
        os.replace(tmp, self.path)

    def read(self) -> list[dict[str, Any]]:
        entries = json.loads(self.path.read_text()).get("processes", [])
        if not isinstance(entries, list):
            raise ValueError(f"{self.path}: malformed state file")
        return [_dict(e) for e in entries]


def _env_lines(single: Server, cluster: Cluster, sentinel: SentinelSetup) -> str:
    env = {
        ENV_REDIS_URL: single.url,
        ENV_CLUSTER_URL: cluster.url,
        ENV_SENTINEL_URL: sentinel.url,
        ENV_SENTINEL_PRIMARY_PORT: str(sentinel.primary_port),
        ENV_SENTINEL_REPLICA_PORT: str(sentinel.replica_port),
    }
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def _raise_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _recording(state: _StateFile) -> Iterator[None]:
    with _owned_lock:
        _owned_listeners.append(state.write)
    try:
        yield
    finally:
        with _owned_lock:
            _owned_listeners.remove(state.write)


def _up(env_file: Path, state: _StateFile) -> int:
    if state.path.exists():
        print(f"{state.path} exists: run `down` first", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, _raise_on_signal)
    env_file.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        # The cluster (redis-cli waits ~2 s for the join) and the sentinels (~2 s to hear
        # each other) settle in parallel; on any failure every process started is stopped.
        with _recording(state), ThreadPoolExecutor(max_workers=2) as pool:
            cluster_started = pool.submit(start_cluster)
            sentinel_started = pool.submit(start_sentinel)
            single = start_single()
            cluster = cluster_started.result()
            sentinel = sentinel_started.result()
            env_file.write_text(_env_lines(single, cluster, sentinel))
    except BaseException as exc:
        _stop_all(list(_owned))
        env_file.unlink(missing_ok=True)
        state.path.unlink(missing_ok=True)
        print(f"redis servers: start failed: {exc!r}", file=sys.stderr)
        return exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
    with _owned_lock:
        _owned.clear()  # handed over to the state file and `down`: not stopped at exit
    print(
        f"redis servers up in {time.monotonic() - began:.1f}s: single :{single.port}, "
        f"cluster {cluster.ports}, sentinel {sentinel.sentinel_ports} -> "
        f"primary :{sentinel.primary_port} replica :{sentinel.replica_port}",
        file=sys.stderr,
    )
    return 0


def _process_dir(pid: int) -> Path | None:
    """The working directory of a live (non-zombie) process, or None."""
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except (OSError, IndexError):
        return None


def _stop_recorded(pid: int, port: int, directory: Path) -> None:
    """Stop a process `up` started, if it is still that process (same working directory)."""
    if _process_dir(pid) == directory.resolve():
        with contextlib.suppress(redis.RedisError, RedisStartError), _client(port) as admin:
            if int(_dict(admin.info("server"))["process_id"]) == pid:
                admin.shutdown(nosave=True, now=True)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and _process_dir(pid) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while _process_dir(pid) is not None and time.monotonic() < deadline:
                time.sleep(_POLL)
            if _process_dir(pid) is None:
                break
    shutil.rmtree(directory, ignore_errors=True)


def _down(env_file: Path, state: _StateFile) -> int:
    env_file.unlink(missing_ok=True)
    if not state.path.exists():
        print("redis servers: nothing to stop", file=sys.stderr)
        return 0
    entries = state.read()
    entries.sort(key=lambda e: next((i for i, r in enumerate(_STOP_ORDER) if r in e["role"]), 9))
    for entry in entries:
        _stop_recorded(int(entry["pid"]), int(entry["port"]), Path(entry["directory"]))
    state.path.unlink(missing_ok=True)
    print(f"redis servers: stopped {len(entries)} processes", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.redis_servers",
        description="Start or stop private Redis servers (single, cluster, sentinel) for tests.",
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--env-file", type=Path, required=True, help="shell file of exports")
    parser.add_argument(
        "--state-file", type=Path, help="pids and directories (default: ENV_FILE.state.json)"
    )
    args = parser.parse_args(argv)
    env_file: Path = args.env_file.absolute()
    state = _StateFile(args.state_file or env_file.with_name(env_file.name + ".state.json"))
    return _up(env_file, state) if args.command == "up" else _down(env_file, state)


atexit.register(lambda: _stop_all(list(_owned)))

if __name__ == "__main__":
    sys.exit(main())
