"""A single redis-server for tests and benchmarks: ``start_single()`` and :class:`Server`.

Options cover what fault tests need of one server: an AOF fsynced on every write
(``appendonly=True``), a memory cap with an eviction policy (``maxmemory="2mb"``,
``policy="allkeys-lru"``), a TLS port beside the plain one (``tls=True``: ``tls_url``), a
Unix socket beside it (``unix=True``: ``unix_url``); the
process itself (:class:`~.process.RedisProcess`) can be killed, paused (SIGSTOP) and
restarted with or without the AOF.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tools.servers.process import HOST, Group, RedisProcess, launch, server_args
from tools.servers.tls import tls_args, write_certificate

SOCKET = "redis.sock"  # the Unix socket's name in the server's directory (unix=True)

__all__ = ["Server", "start_single"]


@dataclass(eq=False)
class Server(Group):
    """A single redis-server: ``url`` is ``redis://127.0.0.1:PORT/0``."""

    process: RedisProcess
    host: str = HOST
    #: Whether it listens on a Unix socket too (``start_single(unix=True)``).
    unix: bool = False
    #: The directory of its certificate (its own, ``tls=True``): see ``tls_ca``.
    certificates: Path | None = None

    @property
    def processes(self) -> list[RedisProcess]:
        return [self.process]

    @property
    def tls_port(self) -> int | None:
        """The TLS port (``start_single(tls=True)``), beside the plain one the tools use."""
        return self.process.tls_port

    @property
    def port(self) -> int:
        return self.process.port

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """``rediss://`` to the TLS port, trusting the server's self-signed certificate."""
        return f"rediss://{self.host}:{self.tls_port}/0?ssl_ca_certs={self.tls_ca}"

    @property
    def unix_url(self) -> str:
        """``unix://`` to the server's socket, database 0."""
        if not self.unix:
            raise ValueError("this server has no Unix socket: start_single(unix=True)")
        return f"unix://{self.process.directory / SOCKET}?db=0"

    def kill(self) -> None:
        """Crash the server (SIGKILL); ``restart()`` brings it back on the same port."""
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open, nothing is answered until ``resume``."""
        self.process.pause()

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self.process.resume()

    def restart(self, *, appendonly: bool | None = None) -> None:
        """Start it again on the same port and directory; ``appendonly`` as in
        :meth:`RedisProcess.restart <tools.servers.process.RedisProcess.restart>`."""
        self.process.restart(appendonly=appendonly)


def start_single(*, appendonly: bool = False, maxmemory: str | None = None,
                 policy: str | None = None, tls: bool = False, unix: bool = False,
                 backlog: int | None = None) -> Server:
    """Start one redis-server on a free port and wait until it answers; with ``tls`` it
    also listens with TLS on a second port (clients are not asked for a certificate), with
    ``unix`` on a Unix socket in its directory (this user only); ``backlog``: its
    ``tcp-backlog`` (how many connections the kernel queues until the server takes them)."""
    def build(ports: list[int], directory: Path) -> list[str]:
        args = server_args(ports[0], directory, appendonly=appendonly, maxmemory=maxmemory,
                           policy=policy)
        if backlog is not None:
            args += ["--tcp-backlog", str(backlog)]
        if tls:
            write_certificate(directory, HOST)
            args += tls_args(ports[1], directory)
        if unix:
            args += ["--unixsocket", str(directory / SOCKET), "--unixsocketperm", "700"]
        return args

    process = launch("single", build, ports=2 if tls else 1)
    return Server(process, unix=unix, certificates=process.directory if tls else None)
