"""Faults of the network between the workers and one redis-server, made by a TCP proxy in the
middle (:mod:`tools.proxy`): every connection cut again and again, and every byte delayed
past the clients' socket timeout (commands time out, then reach the server late)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import Results
from tests.faults.harness import OPTIONS, Load, Spares, check, cycle
from tools.proxy import Proxy
from tools.servers import Server, start_single


@pytest.fixture
def server() -> Iterator[Server]:
    with start_single() as started:
        yield started


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    with Proxy(server.port) as started:
        yield started


class _Cutter:
    """Cuts every connection through the proxy every ``every`` seconds while it runs."""

    def __init__(self, proxy: Proxy, every: float = 0.2) -> None:
        self.proxy, self.every = proxy, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self.proxy.cut()

    def start(self) -> None:
        self.thread.start()

    def heal(self) -> None:
        self.stop.set()
        self.thread.join()


def test_connections_cut(server: Server, proxy: Proxy, tmp_path: Path,
                         fault_results: Results,
                         spares: Spares) -> None:
    cutter = _Cutter(proxy)
    with Load(tmp_path, proxy.url, spares=spares) as load:
        cycle(load, cutter.start, cutter.heal)
        results = load.stop()
        load.drain(server.url)
        row = load.row("connections cut by a proxy (every 0.2 s)", "single + proxy", results,
                       lost_promised_zero=True,
                       notes=f"{proxy.cuts:,} connections cut; a lock=True lease release that "
                             "was cut is sent again on a fresh connection")
    fault_results.add(row)
    assert proxy.cuts > 0
    check(row)


def test_connections_delayed(server: Server, proxy: Proxy, tmp_path: Path,
                             fault_results: Results,
                             spares: Spares) -> None:
    delay = OPTIONS["socket_timeout"] * 1.6
    with Load(tmp_path, proxy.url, spares=spares) as load:
        cycle(load, lambda: proxy.delay(delay), proxy.heal)
        results = load.stop()
        load.drain(server.url)
        row = load.row(f"every byte delayed {delay * 1000:.0f} ms by a proxy", "single + proxy",
                       results, lost_promised_zero=True,
                       notes=f"socket_timeout={OPTIONS['socket_timeout']} s: commands time "
                             "out and reach the server late")
    fault_results.add(row)
    check(row)
