"""``python -m tools.servers up|down --env-file PATH``: the servers ``scripts/test`` runs on;
``python -m tools.servers older`` builds the Redis 6.2 server of :mod:`tools.servers.older`.

``up`` starts a single server, a 3-primary cluster and a Sentinel setup (the cluster and the
sentinels settle in parallel), writes PATH as shell ``export`` lines (the ``ENV_*`` names
below, which the test fixtures read) and records every process in a state file, so that
``down`` (another interpreter) can stop exactly those processes, even after a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from tools.servers.cluster import Cluster, start_cluster
from tools.servers.older import older_binary
from tools.servers.process import (
    POLL,
    STOP_TIMEOUT,
    RedisProcess,
    RedisStartError,
    admin_client,
    handing_over,
    owned,
    reply_dict,
    stop_all,
)
from tools.servers.sentinel import SentinelSetup, start_sentinel
from tools.servers.single import Server, start_single

__all__ = [
    "ENV_CLUSTER_URL",
    "ENV_REDIS_URL",
    "ENV_SENTINEL_PRIMARY_PORT",
    "ENV_SENTINEL_REPLICA_PORT",
    "ENV_SENTINEL_URL",
    "main",
]

ENV_REDIS_URL = "CACHEDECO_TEST_REDIS_URL"
ENV_CLUSTER_URL = "CACHEDECO_TEST_CLUSTER_URL"
ENV_SENTINEL_URL = "CACHEDECO_TEST_SENTINEL_URL"
ENV_SENTINEL_PRIMARY_PORT = "CACHEDECO_TEST_SENTINEL_PRIMARY_PORT"
ENV_SENTINEL_REPLICA_PORT = "CACHEDECO_TEST_SENTINEL_REPLICA_PORT"

_STOP_ORDER = ("sentinel", "replica")  # stopped first; the rest afterwards


@dataclass
class _StateFile:
    """The processes the CLI owns, rewritten (atomically) whenever one starts or stops."""

    path: Path

    def write(self, processes: list[RedisProcess]) -> None:
        entries = [{"role": p.role, "pid": p.pid, "port": p.port, "directory": str(p.directory)}
                   for p in processes]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"processes": entries}, indent=1) + "\n")
        os.replace(tmp, self.path)

    def read(self) -> list[dict[str, Any]]:
        entries = json.loads(self.path.read_text()).get("processes", [])
        if not isinstance(entries, list):
            raise ValueError(f"{self.path}: malformed state file")
        return [reply_dict(e) for e in entries]


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
        with handing_over(state.write), ThreadPoolExecutor(max_workers=2) as pool:
            cluster_started = pool.submit(start_cluster)
            sentinel_started = pool.submit(start_sentinel)
            single = start_single()
            cluster = cluster_started.result()
            sentinel = sentinel_started.result()
            env_file.write_text(_env_lines(single, cluster, sentinel))
    except BaseException as exc:
        stop_all(owned())
        env_file.unlink(missing_ok=True)
        state.path.unlink(missing_ok=True)
        print(f"redis servers: start failed: {exc!r}", file=sys.stderr)
        return exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
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
        with contextlib.suppress(redis.RedisError, RedisStartError), admin_client(port) as admin:
            if int(reply_dict(admin.info("server"))["process_id"]) == pid:
                admin.shutdown(nosave=True, now=True)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and _process_dir(pid) is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _process_dir(pid) is not None and time.monotonic() < deadline:
                time.sleep(POLL)
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
        prog="python -m tools.servers",
        description="Start or stop private Redis servers (single, cluster, sentinel) for tests; "
        "or build the older Redis (6.2) the tests also run.",
    )
    parser.add_argument("command", choices=["up", "down", "older"])
    parser.add_argument("--env-file", type=Path, help="shell file of exports (up, down)")
    parser.add_argument(
        "--state-file", type=Path, help="pids and directories (default: ENV_FILE.state.json)"
    )
    args = parser.parse_args(argv)
    if args.command == "older":
        print(older_binary())
        return 0
    if args.env_file is None:
        parser.error(f"{args.command} needs --env-file")
    env_file: Path = args.env_file.absolute()
    state = _StateFile(args.state_file or env_file.with_name(env_file.name + ".state.json"))
    return _up(env_file, state) if args.command == "up" else _down(env_file, state)
