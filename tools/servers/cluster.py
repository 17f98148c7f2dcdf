"""A local Redis Cluster: ``start_cluster(primaries=3, replicas=0)`` and :class:`Cluster`.

All 16384 slots are spread over the primaries by ``redis-cli --cluster create``; with
``tls=True`` every node also has a TLS port (:attr:`Cluster.tls_url`), and the cluster bus and
replication run over TLS; with
``replicas=1`` each primary gets a replica, so a fault test can SIGKILL a primary
(:meth:`Cluster.kill_primary`) and wait until the cluster promotes its replica
(:meth:`Cluster.wait_for_failover`). Each node's cluster bus port is chosen free too. A
resharding test adds an empty primary (:meth:`Cluster.add_primary`) and moves a slot to it in
two steps, as ``redis-cli --cluster reshard`` does (:meth:`Cluster.begin_move`: keys migrated,
the slot still the source's; :meth:`Cluster.end_move`: the slot the destination's).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import redis

from tools.servers.process import (
    HOST,
    SETTLE_TIMEOUT,
    Group,
    RedisProcess,
    RedisStartError,
    binary,
    launch,
    parse_info,
    reply_dict,
    server_args,
    stop_all,
    wait_until,
)
from tools.servers.tls import certificates, tls_args

__all__ = ["Cluster", "ClusterNode", "start_cluster"]


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: the node's id, port, role and the primary it follows."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool({"fail", "fail?"} & self.flags)


def cluster_nodes(node: RedisProcess) -> list[ClusterNode]:
    """``CLUSTER NODES`` as ``node`` sees it."""
    with node.client() as probe:
        text = str(probe.execute_command("CLUSTER", "NODES"))
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split("@")[0]
        nodes.append(ClusterNode(
            id=fields[0], port=int(address.rpartition(":")[2]),
            flags=frozenset(fields[2].split(",")),
            primary_id=None if fields[3] == "-" else fields[3]))
    return nodes


@dataclass(eq=False)
class Cluster(Group):
    """A Redis Cluster: every node, primaries and replicas, as started; ``url`` names them all."""

    nodes: list[RedisProcess]
    host: str = HOST
    node_timeout: int = 5000
    killed: list[RedisProcess] = field(default_factory=list)
    #: Nodes paused by :meth:`freeze_primary` (SIGSTOP), until :meth:`thaw`.
    frozen: list[RedisProcess] = field(default_factory=list)
    #: The directory of the certificate every node presents (``tls=True``), removed by stop.
    certificates: Path | None = None
    _followers: dict[int, list[RedisProcess]] = field(default_factory=dict, repr=False)

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

    @property
    def tls_url(self) -> str:
        """The nodes' TLS ports (``start_cluster(tls=True)``); connect with ``ssl=True`` and
        ``ssl_ca_certs=`` :attr:`tls_ca`. A TLS client is told the nodes' TLS ports."""
        ports = [n.tls_port for n in self.nodes if n.tls_port is not None]
        if not ports:
            raise ValueError("this cluster has no TLS ports: start_cluster(tls=True)")
        return "redis+cluster://" + ",".join(f"{self.host}:{p}" for p in ports)

    def _out(self, node: RedisProcess) -> bool:
        """Killed or frozen here: it serves nothing, whatever ``CLUSTER NODES`` says yet."""
        return node in self.killed or node in self.frozen

    def _live(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.is_running() and not self._out(n)]

    def _view(self) -> list[ClusterNode]:
        """``CLUSTER NODES`` of the first live node that answers."""
        for node in self._live():
            try:
                return cluster_nodes(node)
            except redis.RedisError:
                continue
        raise RedisStartError("no cluster node answers")

    def _process(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def primaries(self) -> list[RedisProcess]:
        """The nodes that are primaries now (not failed, not killed, not frozen)."""
        return [p for p in self._members(primary=True) if not self._out(p)]

    def replicas(self) -> list[RedisProcess]:
        """The nodes that are replicas now (not failed, not killed)."""
        return [p for p in self._members(primary=False) if p not in self.killed]

    def _members(self, *, primary: bool) -> list[RedisProcess]:
        return [self._process(n.port) for n in self._view()
                if n.is_primary is primary and not n.failed]

    def kill_primary(self, node: RedisProcess | None = None) -> RedisProcess:
        """SIGKILL a primary (``node``, or the first one); the cluster fails over to its replica
        when it has one (:meth:`wait_for_failover`). Returns the killed node."""
        victim = self._note_followers(node)
        victim.kill()
        self.killed.append(victim)
        return victim

    def freeze_primary(self, node: RedisProcess | None = None) -> RedisProcess:
        """SIGSTOP a primary (``node``, or the first one): it keeps its connections open and
        answers nothing, as a hung host or a partition; the cluster fails over to its replica
        (:meth:`wait_for_failover` with ``old=`` it). Returns the frozen node."""
        victim = self._note_followers(node)
        victim.pause()
        self.frozen.append(victim)
        return victim

    def thaw(self, node: RedisProcess) -> None:
        """SIGCONT a frozen node: it finds its slots served by its promoted replica (when the
        cluster failed over meanwhile) and becomes that node's replica."""
        node.resume()
        self.frozen.remove(node)

    def _note_followers(self, node: RedisProcess | None) -> RedisProcess:
        """``node`` (or the first primary), its replicas noted for :meth:`wait_for_failover`."""
        victim = node or self.primaries()[0]
        view = self._view()
        victim_id = next(n.id for n in view if n.port == victim.port)
        self._followers[victim.port] = [self._process(n.port) for n in view
                                        if n.primary_id == victim_id]
        return victim

    def wait_for_failover(self, old: RedisProcess | None = None,
                          timeout: float = 30.0) -> RedisProcess:
        """Wait until a replica of ``old`` (default: the last killed primary) is a primary and
        every live node reports ``cluster_state:ok``; returns the promoted node."""
        gone = old or self.killed[-1]
        candidates = self._followers.get(gone.port)
        if not candidates:
            raise RedisStartError(f"primary :{gone.port} had no replica to promote")
        promoted: list[RedisProcess] = []

        def done() -> bool:
            new = [c for c in candidates if _role(c) == "master"]
            if new and all(_state_ok(n) for n in self._live()):
                promoted[:] = new[:1]
                return True
            return False

        wait_until(f"a replica of :{gone.port} to be promoted", done, timeout)
        return promoted[0]

    def restart(self, node: RedisProcess) -> None:
        """Start a killed node again: it rejoins (as a replica, if it was failed over)."""
        node.restart()
        if node in self.killed:
            self.killed.remove(node)

    def add_primary(self) -> RedisProcess:
        """Start one more node and join it as a primary serving no slot yet (what
        ``redis-cli --cluster add-node`` does); every node knows it when this returns."""
        node = launch(f"cluster{len(self.nodes) + 1}", _node_args(self.node_timeout), ports=2)
        self.nodes.append(node)
        bus = node.argv[node.argv.index("--cluster-port") + 1]
        with self._live()[0].client() as probe:
            probe.execute_command("CLUSTER", "MEET", HOST, node.port, bus)
        size = len(self._live())
        wait_until(f"every node to know :{node.port}, state ok",
                   lambda: all(_knows(n, size) and _state_ok(n, size) for n in self._live()))
        return node

    def owner(self, slot: int) -> RedisProcess:
        """The primary serving ``slot`` (as the first live node sees it)."""
        return self._process(_owners(self._live()[0])[slot])

    def begin_move(self, slots: int | Iterable[int], to: RedisProcess) -> None:
        """Start moving ``slots`` to ``to`` and migrate every key they hold: the slots are
        still their sources', which answer ``ASK`` for the keys they no longer have."""
        owners = _owners(self._live()[0])
        ids = {n.port: n.id for n in self._view()}
        by_source: dict[int, list[int]] = {}
        for slot in [slots] if isinstance(slots, int) else slots:
            by_source.setdefault(owners[slot], []).append(slot)
        with to.client() as dest:
            for port, moving in by_source.items():
                with self._process(port).client() as src:
                    _each(dest, [("CLUSTER", "SETSLOT", s, "IMPORTING", ids[port])
                                 for s in moving])
                    _each(src, [("CLUSTER", "SETSLOT", s, "MIGRATING", ids[to.port])
                                for s in moving])
                    for slot in moving:
                        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                            src.execute_command("MIGRATE", HOST, to.port, "", 0, 5000, "KEYS",
                                                *keys)

    def end_move(self, slots: int | Iterable[int], to: RedisProcess) -> None:
        """Give ``slots`` to ``to`` (after :meth:`begin_move`), telling every primary."""
        moved = [slots] if isinstance(slots, int) else list(slots)
        owner = next(n.id for n in self._view() if n.port == to.port)
        for node in sorted(self.primaries(), key=lambda p: p is not to):  # ``to`` first
            with node.client() as probe:
                _each(probe, [("CLUSTER", "SETSLOT", s, "NODE", owner) for s in moved])
        wait_until(f"every node to see {len(moved)} slot(s) on :{to.port}",
                   lambda: all(all(_owners(n).get(s) == to.port for s in moved)
                               for n in self._live()))


def _each(client: redis.Redis, commands: list[tuple[object, ...]]) -> None:
    """Run ``commands`` in one pipeline (no transaction), raising the first error."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)  # type: ignore[no-untyped-call, unused-ignore]
    pipe.execute()


def _knows(node: RedisProcess, size: int) -> bool:
    """Whether ``node`` knows ``size`` nodes, each connected (no handshake left)."""
    known = cluster_nodes(node)
    return len(known) == size and not any({"handshake", "noaddr"} & n.flags for n in known)


def _owners(node: RedisProcess) -> dict[int, int]:
    """The port of the primary serving each slot, as ``node`` sees it (``CLUSTER SLOTS``)."""
    with node.client() as probe:
        ranges = probe.execute_command("CLUSTER", "SLOTS")
    return {slot: int(r[2][1]) for r in ranges for slot in range(int(r[0]), int(r[1]) + 1)}


def _replication(node: RedisProcess) -> dict[str, object]:
    with node.client() as probe:
        return reply_dict(probe.info("replication"))


def _role(node: RedisProcess) -> object:
    return _replication(node).get("role")


def _state_ok(node: RedisProcess, size: int | None = None) -> bool:
    with node.client() as probe:
        info = parse_info(probe.execute_command("CLUSTER", "INFO"))
    return (info.get("cluster_state") == "ok"
            and info.get("cluster_slots_assigned") == "16384"
            and (size is None or info.get("cluster_known_nodes") == str(size)))


def _node_args(node_timeout: int, tls: Path | None = None
               ) -> Callable[[list[int], Path], list[str]]:
    def build(ports: list[int], directory: Path) -> list[str]:
        args = [
            *server_args(ports[0], directory),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-port", str(ports[1]),  # the bus port, chosen free (not port + 10000)
            "--cluster-node-timeout", str(node_timeout),
        ]  # fmt: skip
        if tls is not None:  # a TLS port too; the bus and replication over TLS
            args += tls_args(ports[2], tls, replication=True, cluster=True)
        return args

    return build


def start_cluster(primaries: int = 3, replicas: int = 0, *,
                  node_timeout: int = 5000, tls: bool = False) -> Cluster:
    """Start ``primaries`` (at least 3) nodes and ``replicas`` replicas of each, create the
    cluster and wait for state ok everywhere. ``node_timeout`` (ms) is how long a node may be
    silent before it is failing (and its replica promoted): lower it for a fast failover."""
    if primaries < 3:
        raise ValueError("a Redis Cluster needs at least 3 primaries")
    cli = binary("redis-cli")
    size = primaries * (1 + replicas)
    nodes: list[RedisProcess] = []
    shared = certificates(HOST) if tls else None
    try:
        build = _node_args(node_timeout, shared)
        for i in range(size):
            nodes.append(launch(f"cluster{i + 1}", build, ports=3 if tls else 2))
        create = subprocess.run(
            [cli, "--cluster", "create", *(n.address for n in nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=SETTLE_TIMEOUT, check=False)
        if create.returncode != 0:
            raise RedisStartError(
                f"redis-cli --cluster create failed ({create.returncode}):\n"
                + create.stdout[-2000:] + create.stderr[-2000:])
        for node in nodes:
            wait_until(f"cluster_state:ok on :{node.port}", partial(_state_ok, node, size))
        cluster = Cluster(nodes, node_timeout=node_timeout, certificates=shared)
        if replicas:
            wait_until("every replica to link", lambda: len(cluster.replicas()) == size
                       - primaries and all(_linked(r) for r in cluster.replicas()))
    except BaseException:
        stop_all(nodes)
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
        raise
    return cluster


def _linked(replica: RedisProcess) -> bool:
    return _replication(replica).get("master_link_status") == "up"
