"""Redis for the benchmarks: a private server when none is given, and the server's counters.

``start_private()`` uses ``tools.servers.start_single`` (the test suite's launcher) when
the repository has it, else a small local equivalent: ``redis-server`` on a free loopback port,
no persistence, stopped at exit. Keys of a run start with a unique prefix (:func:`new_prefix`),
so that clean-up (the registry's ``clear()``, SCAN within the prefix) never touches anything
else on a shared server.
"""

from __future__ import annotations

import atexit
import importlib
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import redis

__all__ = [
    "RUN_ID",
    "PrivateServer",
    "Where",
    "command_calls",
    "command_count",
    "commands_per_op",
    "memory_usage",
    "new_prefix",
    "ping",
    "server_version",
    "start_private",
    "sweep",
    "used_memory",
]

#: Unique per run: every key the suite writes starts with ``RUN_ID + ":"``.
RUN_ID = f"cdbench-{os.getpid()}-{secrets.token_hex(3)}"
_READY_TIMEOUT = 10.0


def new_prefix(scenario: str) -> str:
    """A registry prefix for one scenario of this run."""
    return f"{RUN_ID}:{scenario}"


class PrivateServer(Protocol):
    """What the runner needs of a server it started."""

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        ...

    @property
    def port(self) -> int:
        """The loopback port it listens on."""
        ...

    def stop(self) -> None:
        """Shut it down and remove its files."""
        ...


@dataclass(frozen=True)
class Where:
    """A Redis URL split for clients that want host, port and db (aiocache)."""

    host: str
    port: int
    db: int

    @classmethod
    def of(cls, url: str) -> Where:
        """Split ``redis://host:port/db``."""
        parts = urlsplit(url)
        db = parts.path.strip("/")
        return cls(parts.hostname or "127.0.0.1", parts.port or 6379, int(db) if db else 0)


def _free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _LocalServer:
    """A ``redis-server`` child on a free loopback port without persistence, stopped at exit."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self._dir = tempfile.mkdtemp(prefix="cachedeco-bench-redis-")
        self._port = _free_port()
        self._proc = subprocess.Popen(
            [binary, "--port", str(self._port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir, "--logfile", ""],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        atexit.register(self.stop)
        deadline = time.monotonic() + _READY_TIMEOUT
        while not ping(self.url, timeout=0.2):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self._port} did not start")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def port(self) -> int:
        """The loopback port."""
        return self._port

    def stop(self) -> None:
        """Terminate the server (then kill it) and remove its directory; idempotent."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def start_private() -> tuple[PrivateServer, str]:
    """Start a private redis-server; returns it and which launcher started it."""
    try:
        tools = importlib.import_module("tools.servers")
    except ImportError:
        return _LocalServer(), "benchmarks.servers (tools/servers/ not found)"
    server: PrivateServer = tools.start_single()
    return server, "tools.servers.start_single"


def _client(url: str, timeout: float = 2.0) -> redis.Redis:
    """An admin client with short timeouts."""
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def ping(url: str, timeout: float = 2.0) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    client = _client(url, timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _info(client: redis.Redis, section: str) -> Mapping[str, Any]:
    """One parsed ``INFO`` section."""
    info = client.info(section)
    if not isinstance(info, Mapping):
        raise TypeError(f"unexpected INFO reply {info!r}")
    return info


def server_version(url: str) -> str:
    """The ``redis_version`` of the server at ``url``."""
    client = _client(url)
    try:
        return str(_info(client, "server").get("redis_version", "?"))
    finally:
        client.close()


#: Not counted per operation: INFO (the count itself) and INCR (each process's lineage beat,
#: one a second whatever the calls: cachedeco sends INCR for nothing else).
UNCOUNTED: Final = frozenset({"cmdstat_info", "cmdstat_incr"})


def command_calls(client: redis.Redis) -> int:
    """Commands the server has run since start (``INFO commandstats``), :data:`UNCOUNTED`
    excluded."""
    total = 0
    for key, value in _info(client, "commandstats").items():
        if key.startswith("cmdstat_") and key not in UNCOUNTED and isinstance(value, Mapping):
            total += int(value["calls"])
    return total


def command_count(client: redis.Redis, command: str) -> int:
    """Calls of one command (``"mget"``) since the server started (``INFO commandstats``)."""
    value = _info(client, "commandstats").get(f"cmdstat_{command}")
    return int(value["calls"]) if isinstance(value, Mapping) else 0


def used_memory(client: redis.Redis) -> int:
    """``used_memory`` from ``INFO memory``, in bytes (it includes client buffers, which come
    and go with connections: see :func:`memory_usage` for what keys hold)."""
    return int(_info(client, "memory")["used_memory"])


def commands_per_op(client: redis.Redis, batch: Callable[[int], object], n: int,
                    tries: int = 3) -> float:
    """Redis commands per operation over ``n`` operations of ``batch``: the fewest of
    ``tries`` batches. The counts are server-wide, so a command of the process's own
    background work (a stats report, a renewal scan) can land in a batch: a command per
    operation shows in every batch, such a stray one in one batch at most."""
    counts = []
    for _ in range(tries):
        before = command_calls(client)
        batch(n)
        counts.append(command_calls(client) - before)
    return min(counts) / n


def _glob_escape(text: str) -> str:
    """Escape glob characters so that ``text`` matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def memory_usage(client: redis.Redis, prefix: str, extra: Sequence[str] = ()) -> int:
    """Bytes held by every key under ``prefix`` plus the ``extra`` keys, by ``MEMORY USAGE``
    (SCAN within the prefix, pipelined in batches; never KEYS)."""
    total = 0
    batch: list[bytes | str] = list(extra)

    def flush() -> int:
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
        batch.clear()
        return sum(int(size) for size in sizes if size is not None)

    for key in client.scan_iter(match=_glob_escape(prefix) + ":*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            total += flush()
    return total + (flush() if batch else 0)


def sweep(client: Any, prefix: str) -> int:
    """UNLINK whatever is left under ``prefix`` (SCAN MATCH in batches; never KEYS or FLUSH*):
    the registry's ``clear()`` spares cachedeco's own keys (``prefix:~…``: tags, leases,
    queues), and a benchmark run must leave nothing behind."""
    removed = 0
    batch: list[bytes] = []
    one_by_one = not isinstance(client, redis.Redis)  # a cluster: keys lie in many slots
    for key in client.scan_iter(match=_glob_escape(prefix) + ":*", count=1000):
        batch.append(key)
        if one_by_one or len(batch) >= 500:
            removed += int(client.unlink(*batch))
            batch.clear()
    return removed + (int(client.unlink(*batch)) if batch else 0)
