"""Backends that are not there: a loopback port nobody listens on (connections refused at
once) and one that accepts connections but never answers (every read times out)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

__all__ = ["blackhole", "dead_port"]


def dead_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel does) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        yield sock.getsockname()[1]
