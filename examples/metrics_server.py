"""A small web service with cachedeco's metrics at ``/metrics`` (stdlib ``http.server``).

    pip install 'cachedeco[prometheus]'
    python examples/metrics_server.py                          # cache in process memory
    python examples/metrics_server.py redis://127.0.0.1:6379/0 # cache in Redis
    curl 'http://127.0.0.1:8000/product?id=7'; curl http://127.0.0.1:8000/metrics

``GET /product?id=N`` is served by a ``@cached`` function (a slow "database" the first time
per id); ``GET /metrics`` is the Prometheus exposition: ``cachedeco_hits_total``,
``cachedeco_misses_total``, ``cachedeco_load_duration_seconds`` … per function, read when
scraped. ``--port 0`` picks a free port; the first line printed says which.

With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory shared
by the workers): each worker copies its counts there and ``/metrics`` serves the sums of
every worker, through ``prometheus_client``'s ``MultiProcessCollector``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

import cachedeco
from cachedeco.metrics import PrometheusCollector

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ


@cachedeco.cached(ttl=60, key="product:{product_id}", tags=["product:{product_id}"])
def get_product(product_id: int) -> dict[str, object]:
    """The database read that the cache spares."""
    time.sleep(0.02)
    return {"id": product_id, "name": f"product {product_id}"}


def exposition() -> bytes:
    """What a scrape of /metrics returns: this process, or every worker's sums."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    workers = CollectorRegistry()
    MultiProcessCollector(workers)
    return generate_latest(workers)


class Handler(BaseHTTPRequestHandler):
    """``/product?id=N`` and ``/metrics``."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/metrics":
            self._send(200, exposition(), CONTENT_TYPE_LATEST)
        elif url.path == "/product":
            product_id = int(parse_qs(url.query).get("id", ["1"])[0])
            self._send(200, json.dumps(get_product(product_id)).encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: no line per request."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", nargs="?", default="memory://")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--prefix", default="shop", help="the cache's key prefix")
    args = parser.parse_args()
    cachedeco.configure(args.backend, prefix=args.prefix)
    collector = PrometheusCollector()  # every registry of this process
    if not MULTIPROCESS:
        REGISTRY.register(collector)
    # Ctrl-C stops it even when started by a job that ignores SIGINT (a shell's background
    # job does, and its children inherit that: Python then installs no handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        cachedeco.registry.close()


if __name__ == "__main__":
    main()
