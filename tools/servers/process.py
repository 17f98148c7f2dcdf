"""One ``redis-server`` (or sentinel) child process: start it on free ports, wait for it, and
break it the ways a fault test needs (SIGKILL, SIGSTOP/SIGCONT, restart with or without AOF).

Every process is a plain child (never daemonized) listening on 127.0.0.1 only, in a temporary
directory of its own, without RDB snapshots (``--save ""``). :class:`Group` is what the
deployments (:mod:`.single`, :mod:`.cluster`, :mod:`.sentinel`) share: ``stop()`` and a context
manager. Processes still running when the interpreter exits are stopped, except those the
command line (:mod:`.cli`) hands over to its state file.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tools.servers.tls import CERT

#: Names a directory where each server's log is copied when it stops (else it is removed).
LOGS_ENV = "CACHEDECO_SERVER_LOGS"

__all__ = [
    "HOST",
    "Group",
    "RedisProcess",
    "RedisStartError",
    "admin_client",
    "binary",
    "free_port",
    "handing_over",
    "launch",
    "owned",
    "parse_info",
    "reply_dict",
    "server_args",
    "stop_all",
    "wait_until",
]

HOST = "127.0.0.1"
START_ATTEMPTS = 5  # fresh ports per attempt when a port was taken meanwhile
READY_TIMEOUT = 10.0  # seconds for one process to answer PING
SETTLE_TIMEOUT = 20.0  # seconds for a cluster or sentinel setup to settle
STOP_TIMEOUT = 5.0  # seconds per shutdown step (SHUTDOWN, SIGTERM, SIGKILL)
POLL = 0.02


class RedisStartError(RuntimeError):
    """A Redis process or deployment did not come up (binary missing, crash, timeout)."""


class _PortTakenError(Exception):
    """The process exited because one of its ports was taken in the meantime."""


# --- ports, binaries, replies ----------------------------------------------------------------

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


def binary(name: str) -> str:
    """The path of ``redis-server`` or ``redis-cli``."""
    path = shutil.which(name)
    if path is None:
        raise RedisStartError(
            f"{name} not found on PATH: install it (Debian: apt-get install redis-server "
            "redis-tools) or run scripts/test, which does"
        )
    return path


def admin_client(port: int, timeout: float = 1.0) -> redis.Redis:
    """A decoding client for probes and admin commands, without retries."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


def reply_dict(value: object) -> dict[str, Any]:
    """A dict reply (INFO) with string keys; anything else is an error."""
    if not isinstance(value, dict):
        raise RedisStartError(f"unexpected reply {value!r}")
    return {str(k): v for k, v in value.items()}


def parse_info(text: object) -> dict[str, str]:
    """``key:value`` lines (CLUSTER INFO, INFO replication) as a dict."""
    if isinstance(text, bytes):
        text = text.decode()
    fields: dict[str, str] = {}
    for line in str(text).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def wait_until(what: str, check: Callable[[], bool], timeout: float = SETTLE_TIMEOUT) -> None:
    """Poll ``check`` (Redis errors count as "not yet") until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        if time.monotonic() > deadline:
            raise RedisStartError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


# --- processes stopped at exit ---------------------------------------------------------------

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


def owned() -> list[RedisProcess]:
    """The processes this interpreter stops at exit."""
    with _owned_lock:
        return list(_owned)


@contextlib.contextmanager
def handing_over(listener: Callable[[list[RedisProcess]], None]) -> Iterator[None]:
    """Tell ``listener`` the owned processes on every change; on a clean exit, stop owning
    them (the listener's record is now in charge of stopping them)."""
    with _owned_lock:
        _owned_listeners.append(listener)
    try:
        yield
    finally:
        with _owned_lock:
            _owned_listeners.remove(listener)
    with _owned_lock:
        _owned.clear()


# --- one process -----------------------------------------------------------------------------


def server_args(port: int, directory: Path, *, appendonly: bool = False,
                maxmemory: str | None = None, policy: str | None = None) -> list[str]:
    """``redis-server`` arguments: loopback, no RDB; with ``appendonly`` an AOF fsynced on
    every write; with ``maxmemory`` (e.g. ``"2mb"``) an eviction ``policy``."""
    args = [
        binary("redis-server"),
        "--port", str(port),
        "--bind", HOST,
        "--protected-mode", "no",
        "--daemonize", "no",
        "--save", "",
        "--dir", str(directory),
        "--logfile", "",
        "--enable-debug-command", "local",  # DEBUG SLEEP for timeout tests
        "--repl-diskless-sync-delay", "0",  # a replica syncs at once, not after 5 s
    ]  # fmt: skip
    if appendonly:
        args += ["--appendonly", "yes", "--appendfsync", "always"]
    else:
        args += ["--appendonly", "no"]
    if maxmemory is not None:
        args += ["--maxmemory", maxmemory, "--maxmemory-policy", policy or "allkeys-lru"]
    return args


def _popen(argv: list[str], directory: Path) -> subprocess.Popen[bytes]:
    with (directory / "redis.log").open("ab") as log:
        # Own session: a Ctrl-C on the terminal reaches the test runner, which stops us.
        return subprocess.Popen(argv, cwd=directory, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _with_option(argv: list[str], name: str, value: str) -> list[str]:
    """``argv`` with ``--name value`` set (replaced where present)."""
    flag = f"--{name}"
    if flag in argv:
        at = argv.index(flag)
        return [*argv[: at + 1], value, *argv[at + 2:]]
    return [*argv, flag, value]


@dataclass(eq=False)
class RedisProcess:
    """One ``redis-server`` (or sentinel) child process running in its own directory."""

    role: str
    port: int
    directory: Path
    argv: list[str]
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        """A new decoding client (``decode_responses=True``) for this process; close it."""
        return admin_client(self.port, timeout)

    @property
    def tls_port(self) -> int | None:
        """The port it listens on with TLS (``--tls-port``), if any."""
        if "--tls-port" not in self.argv:
            return None
        return int(self.argv[self.argv.index("--tls-port") + 1])

    @property
    def announced_port(self) -> int:
        """The port replicas and sentinels know it by: its TLS port when replication runs
        over TLS (``--tls-replication yes``), else :attr:`port`."""
        tls = self.tls_port
        return tls if tls is not None and "--tls-replication" in self.argv else self.port

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
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
                if int(reply_dict(probe.info("server"))["process_id"]) == self.pid:
                    return
            if time.monotonic() > deadline:
                raise RedisStartError(
                    f"{self.role} :{self.port} did not answer in {timeout:.0f}s:\n"
                    + self.log_tail())
            time.sleep(POLL)

    def kill(self) -> None:
        """SIGKILL, like a crash (kill -9): no shutdown, the directory stays (``restart``)."""
        self.resume()  # a stopped process dies as well, but waits for SIGCONT to be reaped
        if self.is_running():
            self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but answers nothing until ``resume``."""
        if self.is_running():
            os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause`` (harmless otherwise)."""
        if self.is_running():
            os.kill(self.pid, signal.SIGCONT)

    def halt(self) -> None:
        """Shut the process down cleanly if possible, forcibly if not; keep the directory."""
        self.resume()
        if self.is_running():
            with contextlib.suppress(redis.RedisError), self.client(1.0) as admin:
                admin.shutdown(nosave=True, now=True)
            for step in (None, self.process.terminate, self.process.kill):
                if step is not None:
                    step()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(STOP_TIMEOUT)
                    break
        self.process.wait()

    def restart(self, *, appendonly: bool | None = None) -> None:
        """Start the process again on the same port and directory (after ``kill`` or ``halt``;
        a running one is halted first). ``appendonly`` turns the AOF on (``appendfsync
        always``: what was acknowledged survives a kill) or off; None keeps the setting."""
        self.halt()
        if appendonly is not None:
            self.argv = _with_option(self.argv, "appendonly", "yes" if appendonly else "no")
            if appendonly:
                self.argv = _with_option(self.argv, "appendfsync", "always")
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
        """Shut down and remove the directory (its log copied first to ``$CACHEDECO_SERVER_LOGS``
        when that names a directory: a debugging aid). Idempotent."""
        self.halt()
        _own(self, owned=False)
        keep = os.environ.get(LOGS_ENV)
        log = self.directory / "redis.log"
        if keep and log.exists():
            with contextlib.suppress(OSError):
                shutil.copy(log, Path(keep) / f"{self.directory.name}.log")
        shutil.rmtree(self.directory, ignore_errors=True)


def launch(role: str, build: Callable[[list[int], Path], list[str]], ports: int = 1
           ) -> RedisProcess:
    """Start one process on fresh ports (``build(ports, directory) -> argv``) and wait for it.

    A port taken between our probe and the server's bind makes the server exit at once with
    "Address already in use": then try again with other ports.
    """
    directory = Path(tempfile.mkdtemp(prefix=f"cachedeco-redis-{role}-"))
    try:
        for _ in range(START_ATTEMPTS):
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
    raise RedisStartError(f"{role}: ports kept being taken ({START_ATTEMPTS} attempts)")


def stop_all(processes: Sequence[RedisProcess]) -> None:
    """Stop in reverse start order (sentinels before the servers they watch)."""
    for proc in reversed(processes):
        proc.stop()


class Group:
    """Processes started and stopped together (a deployment): ``stop()``, ``with``."""

    #: The directory of the certificate every server of a TLS deployment presents (``tls=True``),
    #: removed by stop.
    certificates: Path | None = None

    @property
    def processes(self) -> list[RedisProcess]:
        raise NotImplementedError

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        stop_all(self.processes)
        if self.certificates is not None:
            shutil.rmtree(self.certificates, ignore_errors=True)

    @property
    def tls_ca(self) -> str:
        """The certificate every server of a TLS deployment presents (its ``certificates``
        directory, ``tls=True``), to trust as the CA."""
        shared = self.certificates
        if shared is None:
            raise ValueError(f"this {type(self).__name__} has no TLS ports: start it with "
                             "tls=True")
        return str(shared / CERT)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


atexit.register(lambda: stop_all(owned()))
