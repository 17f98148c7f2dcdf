"""``examples/metrics_server.py`` run as a user would: requests, then ``/metrics`` shows the
counts; with ``PROMETHEUS_MULTIPROC_DIR``, a scrape of one worker shows every worker's sums."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "metrics_server.py"
FUNCTION = ("function", "__main__.get_product")
LABELS = (FUNCTION, ("prefix", "shop"))


@contextmanager
def server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """The example serving on a free port: its base URL; stopped with Ctrl-C after."""
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)})
    failed: BaseException | None = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on "), proc.stderr.read() if proc.stderr else line
        yield line.split()[-1]
    except BaseException as exc:
        failed = exc
        raise
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:  # never left behind, whatever failed
                proc.kill()
                proc.communicate()
        if failed is not None and err:  # what the server said of a failed request
            failed.add_note(f"the example's stderr:\n{err}")
        assert proc.returncode == 0, err



def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(get(f"{base}/metrics"))
            for s in family.samples}


@pytest.mark.parametrize("on_redis", [False, True], ids=["memory", "redis"])
def test_metrics_show_the_requests(on_redis: bool, redis_url: str, prefix: str) -> None:
    backend = [redis_url] if on_redis else []
    with server(*backend, "--prefix", prefix) as base:
        for product in (1, 1, 2, 1):
            assert f'"id": {product}' in get(f"{base}/product?id={product}")
        samples = scrape(base)
    labels = (FUNCTION, ("prefix", prefix))
    assert samples["cachedeco_hits_total", labels] == 2
    assert samples["cachedeco_misses_total", labels] == 2
    assert samples["cachedeco_loads_total", labels] == 2
    assert samples["cachedeco_load_duration_seconds_count", labels] == 2


def test_with_workers_a_scrape_shows_the_service(tmp_path: Path) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with server(env=env) as first, server(env=env) as second:
        for product in (1, 1, 2):
            get(f"{first}/product?id={product}")
        for product in (1, 3, 3, 3):
            get(f"{second}/product?id={product}")
        deadline = time.monotonic() + 60  # each worker copies its counts every second
        while True:
            try:
                samples = scrape(first)
            except (OSError, http.client.HTTPException):
                # a scrape the server did not answer (seen once in a loaded CI run, cause
                # unknown: its stderr is noted on the failure): counted again by the next
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            if samples.get(("cachedeco_hits_total", LABELS)) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert samples["cachedeco_hits_total", LABELS] == 3  # 1 + 2: both workers', summed
    assert samples["cachedeco_misses_total", LABELS] == 4  # 2 + 2 (memory://: per worker)
    assert samples["cachedeco_load_duration_seconds_count", LABELS] == 4
