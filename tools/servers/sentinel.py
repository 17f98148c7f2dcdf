"""A Sentinel setup: a primary, a replica and sentinels (quorum 2) watching them.

``start_sentinel()`` waits until every sentinel reports the primary and knows the replica and
the other sentinels; :meth:`SentinelSetup.kill_primary` (SIGKILL) and
:meth:`SentinelSetup.wait_for_failover` are what a failover test needs. With ``tls=True`` the
primary and the replica also listen with TLS and replicate over it, and the sentinels watch
them there, so they name the servers' TLS ports (connect with ``ssl=True`` and
``ssl_ca_certs=`` :attr:`SentinelSetup.tls_ca`); the sentinels talk TLS among themselves and
keep a plain port for clients (:attr:`SentinelSetup.url`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis

from tools.servers.process import (
    HOST,
    Group,
    RedisProcess,
    RedisStartError,
    admin_client,
    binary,
    launch,
    reply_dict,
    server_args,
    stop_all,
    wait_until,
)
from tools.servers.tls import CERT, KEY, certificates, tls_args

__all__ = ["SERVICE_NAME", "SentinelSetup", "start_sentinel"]

SERVICE_NAME = "mymaster"


@dataclass(eq=False)
class SentinelSetup(Group):
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
    #: The directory of the certificate both servers present (``tls=True``), removed by stop.
    certificates: Path | None = None

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
    def tls_url(self) -> str:
        """Like :attr:`url`, but to the sentinels' TLS ports (``tls=True``): give the client
        ``sentinel_kwargs={"ssl": True, "ssl_ca_certs": tls_ca}`` too."""
        ports = []
        for sentinel in self.sentinels:
            conf = (sentinel.directory / "sentinel.conf").read_text()
            ports += [int(line.split()[1]) for line in conf.splitlines()
                      if line.startswith("tls-port ")]
        if not ports:
            raise ValueError("these sentinels have no TLS ports: start_sentinel(tls=True)")
        nodes = ",".join(f"{self.host}:{p}" for p in ports)
        return f"redis+sentinel://{nodes}/{self.service_name}/{self.db}"

    def server(self, port: int) -> RedisProcess:
        """The server (primary or replica as started) that the sentinels name by ``port``."""
        for proc in (self.primary, self.replica):
            if port in (proc.announced_port, proc.port):
                return proc
        raise RedisStartError(f"no server of this setup on :{port}")

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
        proc = self.server(port)
        proc.kill()
        self.killed.append(proc)
        return port

    def switch_over(self) -> int:
        """Ask the sentinels for a failover while the primary runs (``SENTINEL FAILOVER``, an
        operator's move); returns the old primary's port. The old primary keeps accepting
        writes until the sentinels demote it, about ten seconds after they name the new one."""
        _, port = self.discover_primary()
        with self.sentinels[0].client() as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", self.service_name)
        return port

    def switched_at(self) -> list[float]:
        """When (wall clock, from the sentinels' logs) a sentinel named a new primary: a
        failover the test asked for, or one they made of their own (a primary that did not
        answer for ``down-after-milliseconds``, as on a machine too busy to run it)."""
        times: list[float] = []
        for sentinel in self.sentinels:
            log = sentinel.directory / "redis.log"
            for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
                if "+switch-master" in line:
                    stamp = line.split(" ", 1)[1][:24]  # "03 Dec 2026 12:57:41.357"
                    when = time.mktime(time.strptime(stamp[:20], "%d %b %Y %H:%M:%S"))
                    times.append(when + float(stamp[20:]))
        return sorted(times)

    def wait_for_failover(self, old_port: int | None = None, timeout: float = 30.0) -> int:
        """Wait until every sentinel names a new, answering primary; returns its port."""
        old = old_port if old_port is not None else self.killed[-1].announced_port

        def promoted() -> bool:
            ports = {self._reported_primary(s)[1] for s in self.sentinels}
            if len(ports) != 1 or old in ports:
                return False
            with admin_client(self.server(ports.pop()).port) as probe:
                return reply_dict(probe.info("replication")).get("role") == "master"

        wait_until(f"a failover away from :{old}", promoted, timeout)
        return self.discover_primary()[1]

    def wait_for_replica(self, timeout: float = 30.0) -> float:
        """Wait until the primary the sentinels name has the other node linked as a replica
        in sync (what a write waiting for one replica needs); returns when (wall clock)."""

        def linked() -> bool:
            try:
                _, port = self.discover_primary()
            except RedisStartError:
                return False
            primary = self.server(port)
            replica = self.replica if primary is self.primary else self.primary
            return _replica_linked(primary, replica)

        wait_until("a replica in sync with the primary", linked, timeout)
        return time.time()


def _sentinel_args(primary_port: int, tls: Path | None = None, down_after: int = 1000
                   ) -> Callable[[list[int], Path], list[str]]:
    def build(ports: list[int], directory: Path) -> list[str]:
        conf = directory / "sentinel.conf"
        # With TLS a sentinel talks TLS to everyone (the servers, the other sentinels, which
        # it reaches at the TLS port they announce), so it listens with TLS too.
        client_tls = [] if tls is None else [
            f"tls-port {ports[1]}", f"tls-cert-file {tls / CERT}", f"tls-key-file {tls / KEY}",
            f"tls-ca-cert-file {tls / CERT}", "tls-auth-clients no", "tls-replication yes"]
        conf.write_text("\n".join([
            *client_tls,
            f"port {ports[0]}",
            f"bind {HOST}",
            "protected-mode no",
            "daemonize no",
            f"dir {directory}",
            'logfile ""',
            "sentinel resolve-hostnames no",
            f"sentinel monitor {SERVICE_NAME} {HOST} {primary_port} 2",
            f"sentinel down-after-milliseconds {SERVICE_NAME} {down_after}",
            f"sentinel failover-timeout {SERVICE_NAME} 5000",
            "",
        ]))
        return [binary("redis-server"), str(conf), "--sentinel"]

    return build


def _replica_linked(primary: RedisProcess, replica: RedisProcess) -> bool:
    with replica.client() as probe:
        if reply_dict(probe.info("replication")).get("master_link_status") != "up":
            return False
    with primary.client() as probe:
        info = reply_dict(probe.info("replication"))
    return any(
        isinstance(v, dict) and int(v.get("port", 0)) == replica.announced_port
        and v.get("state") == "online"
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
        int(primary.get("port", 0)) == setup.primary.announced_port
        and primary.get("flags") == "master"
        and int(primary.get("num-other-sentinels", 0)) == len(setup.sentinels) - 1
        and setup.replica.announced_port in healthy
    )


def _pairs(reply: object) -> dict[str, str]:
    """A flat ``[k1, v1, k2, v2, ...]`` reply (or a dict) as a dict of strings."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    if not isinstance(reply, list):
        raise RedisStartError(f"unexpected reply {reply!r}")
    return {str(k): str(v) for k, v in zip(reply[::2], reply[1::2], strict=True)}


def start_sentinel(sentinels: int = 3, *, appendonly: bool = False, tls: bool = False,
                   backlog: int | None = None, down_after: int = 1000) -> SentinelSetup:
    """Start a primary, a replica of it and ``sentinels`` sentinels (quorum 2); wait until
    every sentinel reports the primary and knows the replica and the other sentinels.
    ``appendonly`` gives both servers an AOF fsynced on every write; ``tls``: see the
    module's docstring; ``backlog``: the servers' ``tcp-backlog``; ``down_after``: the
    milliseconds without an answer after which a sentinel holds the primary down."""
    started: list[RedisProcess] = []
    shared = certificates(HOST) if tls else None

    def server(ports: list[int], directory: Path) -> list[str]:
        args = server_args(ports[0], directory, appendonly=appendonly)
        if backlog is not None:
            args += ["--tcp-backlog", str(backlog)]
        if shared is not None:
            args += tls_args(ports[1], shared, replication=True)
        return args

    try:
        primary = launch("primary", server, ports=2 if tls else 1)
        started.append(primary)
        replica = launch("replica", lambda ports, d: [
            *server(ports, d), "--replicaof", HOST, str(primary.announced_port)],
            ports=2 if tls else 1)
        started.append(replica)
        # Link first: a sentinel finds replicas in the primary's INFO, asked every 10 s.
        wait_until("the replica to link", lambda: _replica_linked(primary, replica))
        for i in range(sentinels):
            started.append(launch(f"sentinel{i + 1}",
                                  _sentinel_args(primary.announced_port, shared, down_after),
                                  ports=2 if tls else 1))
        setup = SentinelSetup(primary, replica, started[2:], certificates=shared)
        for sentinel in setup.sentinels:
            wait_until(f"sentinel :{sentinel.port} to settle",
                       partial(_sentinel_settled, sentinel, setup))
    except BaseException:
        stop_all(started)
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
        raise
    return setup
