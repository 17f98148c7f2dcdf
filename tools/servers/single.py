"""A single redis-server for tests and benchmarks: ``start_single()`` and :class:`Server`.

Options cover what fault tests need of one server: an AOF fsynced on every write
(``appendonly=True``), a memory cap with an eviction policy (``maxmemory="2mb"``,
``policy="allkeys-lru"``); the process itself (:class:`~.process.RedisProcess`) can be
killed, paused (SIGSTOP) and restarted with or without the AOF.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.servers.process import HOST, Group, RedisProcess, launch, server_args

__all__ = ["Server", "start_single"]


@dataclass(eq=False)
class Server(Group):
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
                 policy: str | None = None) -> Server:
    """Start one redis-server on a free port and wait until it answers."""
    return Server(launch("single", lambda ports, d: server_args(
        ports[0], d, appendonly=appendonly, maxmemory=maxmemory, policy=policy)))
