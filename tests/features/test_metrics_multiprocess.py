"""Prometheus multiprocess mode: several real processes (plain ones, a forked multiprocessing
child, a spawned one as uvicorn's workers are) write into one ``PROMETHEUS_MULTIPROC_DIR``,
and one scrape through ``MultiProcessCollector`` shows the sums of what each counted:
no worker's counts shown as the service's, nothing counted twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from tests.support.outages import dead_port

ROOT = Path(__file__).resolve().parents[2]

#: One worker: calls a cached function over Redis (shared with the other workers) and a
#: write-behind writer, writes what it counted itself to OUT/<pid>.json, and ends by
#: closing its collector (argv[4] == "close") or simply by exiting.
WORKER = '''
import json, os, sys
import cachedeco
from cachedeco.metrics import PrometheusCollector

url, prefix, out, how, calls = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
reg = cachedeco.Registry(url, prefix=prefix)
collector = PrometheusCollector(reg)
flushed = []

@reg.cached(ttl=60)
def item(x):
    return {"x": x}

@reg.write_behind(item, flush=flushed.extend, flush_interval=60)
def save(x):
    return {"x": x}

def counts():
    stats = item.stats()
    return {"hits": stats.hits, "misses": stats.misses, "loads": stats.loads,
            "flushed": save.stats().write_behind_flushed}

def work(n):  # what this process counts in here (a forked child starts with its parent's)
    before = counts()
    for i in range(n):
        item(i % 7)
    save(n)
    reg.flush()
    mine = {name: value - before[name] for name, value in counts().items()}
    with open(os.path.join(out, f"{os.getpid()}.json"), "w") as f:
        json.dump(mine, f)

if how == "fork":  # the parent counts, then forks a child that counts too
    import multiprocessing
    work(calls)
    child = multiprocessing.get_context("fork").Process(target=work, args=(calls + 1,))
    child.start(); child.join()
    assert child.exitcode == 0
    item.stats()  # the parent goes on; its counts before the fork are its own
else:
    work(calls)
    if how == "close":
        collector.close()
'''

#: A spawned multiprocessing child (uvicorn's workers): it ends with os._exit, not atexit.
SPAWNED = '''
import multiprocessing, subprocess, sys

def child(argv):
    sys.argv = argv
    exec(compile(open(argv[0]).read(), argv[0], "exec"), {"__name__": "__main__"})

if __name__ == "__main__":
    proc = multiprocessing.get_context("spawn").Process(target=child, args=(sys.argv[1:],))
    proc.start(); proc.join()
    sys.exit(proc.exitcode)
'''


def scrape(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    prom = CollectorRegistry()
    multiprocess.MultiProcessCollector(prom, path=str(path))
    text = generate_latest(prom).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_one_scrape_sums_every_process(redis_url: str, prefix: str, tmp_path: Path) -> None:
    metrics_dir, out = tmp_path / "metrics", tmp_path / "out"
    metrics_dir.mkdir()
    out.mkdir()
    worker, spawner = tmp_path / "worker.py", tmp_path / "spawner.py"
    worker.write_text(WORKER)
    spawner.write_text(SPAWNED)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "PYTHONPATH": str(ROOT)}
    runs: list[list[str]] = [
        [str(worker), redis_url, prefix, str(out), how, str(calls)]
        for how, calls in (("close", 20), ("exit", 31), ("exit", 12), ("fork", 17))]
    runs.append([str(spawner), str(worker), redis_url, prefix, str(out), "spawn", "9"])
    procs = [subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in runs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    # The pending gauge is each process's latest look at the queue all of them share: one that
    # ended while another had pushed and not yet flushed saw 1, truly. A last worker, alone,
    # sees the queue once everyone is done: the most recent reading is its 0.
    last = subprocess.run([sys.executable, str(worker), redis_url, prefix, str(out), "exit",
                           "1"], check=False, env=env, capture_output=True, text=True,
                          timeout=120)
    assert last.returncode == 0, last.stderr

    mine = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(mine) == 7  # 5 plain processes (one of them forked a child) and a spawned one
    samples = scrape(metrics_dir)
    labels = (("function", "__main__.item"), ("prefix", prefix))
    for counter in ("hits", "misses", "loads"):
        assert samples[f"cachedeco_{counter}_total", labels] == sum(m[counter] for m in mine)
    # a fork child's counts are its own: the parent's before the fork are not counted twice
    assert samples["cachedeco_hits_total", labels] + samples[
        "cachedeco_misses_total", labels] == 20 + 31 + 12 + 17 + 18 + 9 + 1
    assert samples["cachedeco_load_duration_seconds_count", labels] == sum(
        m["loads"] for m in mine)
    writer = (("function", "__main__.save"), ("prefix", prefix))
    # every record once; a process that queued one delivers what waits as it exits, after it
    # wrote down its own counts, so those may miss a few the scrape has
    assert samples["cachedeco_write_behind_flushed_total", writer] == 7
    assert sum(m["flushed"] for m in mine) <= 7
    assert samples["cachedeco_write_behind_pending", writer] == 0


def test_the_collector_itself_yields_nothing_in_multiprocess_mode(tmp_path: Path) -> None:
    code = """
from prometheus_client import CollectorRegistry, generate_latest
import cachedeco
from cachedeco.metrics import PrometheusCollector
reg = cachedeco.Registry("memory://", prefix="mp")
prom = CollectorRegistry()
collector = PrometheusCollector(reg)
prom.register(collector)
@reg.cached(ttl=60)
def f(x):
    return x
f(1)
assert b"cachedeco" not in generate_latest(prom), generate_latest(prom)
collector.close()
"""
    env: dict[str, Any] = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
                           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    samples = scrape(tmp_path)  # the files hold its counts
    assert samples["cachedeco_misses_total", (("function", "__main__.f"), ("prefix", "mp"))] == 1


#: A worker whose backend does not answer: it keeps ``argv[3]`` tag invalidations for
#: auto-recovery, says so, and exits (atexit runs) once its stdin closes.
KEEPING = '''
import sys, time
import cachedeco
from cachedeco.metrics import PrometheusCollector

reg = cachedeco.Registry(sys.argv[1], prefix=sys.argv[2], socket_connect_timeout=0.2)
PrometheusCollector(reg)
for n in range(int(sys.argv[3])):
    reg.invalidate_tags(f"t{n}")
assert reg.stats().recoveries_pending == int(sys.argv[3])
time.sleep(2.5)  # two copies into the directory
print("kept", flush=True)
sys.stdin.read()
'''


def test_the_changes_kept_are_summed_over_the_live_workers(prefix: str,
                                                          tmp_path: Path) -> None:
    """recoveries_pending is each worker's own: a scrape showed the worker that wrote last
    (one with none hid another's), and a worker gone kept its count for good."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "PYTHONPATH": str(ROOT)}
    url = f"redis://127.0.0.1:{dead_port()}/0"  # nothing listens there
    procs = [subprocess.Popen([sys.executable, "-c", KEEPING, url, prefix, str(n)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in (2, 1, 0)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "kept\n"
        labels = (("function", ""), ("prefix", prefix))
        assert scrape(metrics_dir)["cachedeco_recoveries_pending", labels] == 3
        _, err = procs[0].communicate("", timeout=60)  # it exits: its changes given up
        assert procs[0].returncode == 0, err
        assert scrape(metrics_dir)["cachedeco_recoveries_pending", labels] == 1
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
