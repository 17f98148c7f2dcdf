"""Load under fault: worker processes calling the catalogue while a test breaks the backend.

:class:`Load` hands a run to worker processes (:mod:`tests.faults.spares`), lets them call
(``warm``), marks when the test injects its fault and when it heals it, lets them call again
(``after``), stops them, delivers what write-behind left (as a restarted service would: a
registry of its own, in the test process) and turns what the workers saw into a
:class:`Row`: calls, errors seen by callers, wrong values, stale reads (all, and those that
began ``grace`` seconds or more after the heal; those within the near cache's reach apart,
see :mod:`tests.faults.staleness`), write-behind records lost (returned by a call, absent
from SQLite), p99 and max latency, what the library logged, and the time from
the heal until callers saw no error or stale read and were served from the cache again.
:func:`check` asserts what the library promises of such a run.

``CACHEDECO_FAULTS=long`` (see docs/development.md) gives a longer run: more workers, more
keys, a higher rate and faults held longer. ``CACHEDECO_FAULTS_TRACE=1`` has the workers
trace every stale read (:attr:`Row.trace`, written beside the results file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cachedeco
from tests.faults.spares import Spares, end, readline
from tests.faults.worker import KINDS
from tests.faults.workload import Catalogue, build

__all__ = ["LONG", "OPTIONS", "QUICK", "Load", "Mode", "Row", "Spares", "check", "cycle", "mode",
           "recovery"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mode:
    """How long and how hard one fault runs."""

    name: str
    workers: int  # worker processes
    rate: float  # calls per second per worker
    keys: int  # products
    warm: float  # seconds of load before the fault
    hold: float  # seconds the fault lasts
    after: float  # seconds of load after the heal
    grace: float  # a stale read that began this long after the heal counts as "after recovery"


QUICK = Mode("quick", workers=3, rate=150, keys=30, warm=0.8, hold=2.5, after=3.2, grace=1.5)
LONG = Mode("long", workers=6, rate=400, keys=300, warm=4.0, hold=10.0, after=15.0, grace=1.5)


def mode() -> Mode:
    """``CACHEDECO_FAULTS=long`` for the long mode; the quick one otherwise."""
    return LONG if os.environ.get("CACHEDECO_FAULTS", "quick") == "long" else QUICK


def tracing() -> bool:
    """``CACHEDECO_FAULTS_TRACE=1``: the workers trace each stale read."""
    return os.environ.get("CACHEDECO_FAULTS_TRACE", "") not in ("", "0")


#: The workers' registry settings: short socket timeouts and breaker cooldown (the defaults
#: are 1 s and 5 s), so that a quick run sees every phase of an outage (the breaker opens
#: after 5 timeouts in a row: 1.25 s into a freeze).
OPTIONS: dict[str, Any] = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25,
                           "breaker_cooldown": 1.0, "near_cache": 1000}


#: The asyncio workers' callers at once, each a task on the worker's one loop: an ASGI
#: service's requests in flight, whose misses, hits and writes interleave in one process.
ASYNCIO_TASKS = 4


#: The most records one process may log during one fault (rate-limited warnings: the outage's
#: start, its end, what was recovered, a few kinds of failure).
LOG_LINES = 20


@dataclass
class Row:
    """What one fault did to the callers: one line of the "Faults survived" table."""

    fault: str
    deployment: str
    calls: int = 0
    errors: int = 0  # calls that raised, of any kind
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    wrong: int = 0
    stale: int = 0  # every stale read beyond reach, during the fault included
    stale_after: int = 0  # ... of those, the reads that began `grace` s or more after the heal
    within_reach: int = 0  # stale reads within reach (staleness.REACH), not counted in `stale`
    lost: int = 0
    returned: int = 0  # write-behind calls that returned
    lost_promised_zero: bool = False
    p99_ms: float = 0.0
    max_ms: float = 0.0
    max_kind: str = ""  # the kind of the slowest call
    recover_s: float | None = None
    logged: int = 0  # records the library logged, all workers together
    logged_max: int = 0  # ... in the process that logged most
    wall_s: float = 0.0  # from the first call to the row (the drain included)
    stop_s: float = 0.0  # stopping the workers (each closes its registry: a last flush)
    drain_s: float = 0.0  # delivering what they left
    notes: str = ""
    samples: dict[str, str] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)  # CACHEDECO_FAULTS_TRACE=1
    stacks: str = ""  # ... and the stacks of the calls that lasted worker.SLOW s or more


class Load:
    """Worker processes of the catalogue against ``url`` (one SQLite file, one prefix)."""

    def __init__(self, tmp: Path, url: str, *, plan: Mode | None = None,
                 options: dict[str, Any] | None = None, replicas: int = 0,
                 slow_flush_worker: int | None = None, hold: float | None = None,
                 spool: bool = False, spares: Spares | None = None,
                 asyncio: bool = False) -> None:
        self.plan = plan or mode()
        self.asyncio = asyncio  # each worker an asyncio service on a ready asyncio client
        if hold is not None:  # the fault lasts as long as it lasts (a failover)
            self.plan = dataclasses.replace(self.plan, hold=hold)
        self.tmp = tmp
        self.url = url
        self.prefix = f"f{uuid.uuid4().hex[:10]}"
        self.options = {**OPTIONS, **(options or {})}
        self.replicas = replicas
        self.spool = spool
        self.catalogue = Catalogue.create(tmp / "catalogue.db", self.plan.keys)
        self.slow_flush = tmp / "in-flush" if slow_flush_worker is not None else None
        self.slow_flush_worker = slow_flush_worker
        self._own_spares = spares is None
        self.spares = spares or Spares(tmp)
        self.workers: list[tuple[subprocess.Popen[str], Path]] = []
        self.procs: list[subprocess.Popen[str]] = []
        self.marks: dict[str, float] = {}
        self.began = time.time()

    # -- the workers -------------------------------------------------------------------------

    def _config(self, index: int) -> Path:
        cfg = {"url": self.url, "prefix": self.prefix, "db": str(self.catalogue.path),
               "index": index, "workers": self.plan.workers, "keys": self.plan.keys,
               "rate": self.plan.rate, "seed": index, "options": self.options,
               "replicas": self.replicas, "returned": str(self.tmp / f"returned-{index}"),
               "out": str(self.tmp / f"out-{index}.json"), "asyncio": self.asyncio,
               "tasks": ASYNCIO_TASKS}
        if self.spool:  # one spool file per process, as the docs ask
            cfg["options"] = {**self.options, "spool": str(self.tmp / f"spool-{index}.db")}
        if tracing():
            cfg["trace"] = str(self.tmp / f"trace-{index}.jsonl")
        if index == self.slow_flush_worker and self.slow_flush is not None:
            cfg["slow_flush"] = str(self.slow_flush)
        path = self.tmp / f"worker-{index}.json"
        path.write_text(json.dumps(cfg))
        return path

    def start(self) -> None:
        """Hand a configuration to each worker and wait until each has made its first call."""
        self.workers = self.spares.take(self.plan.workers)
        for index, (proc, _) in enumerate(self.workers):
            assert proc.stdin is not None
            proc.stdin.write(f"{self._config(index)}\n")
            proc.stdin.flush()
        for index, (proc, _) in enumerate(self.workers):
            line = readline(proc, 60)
            assert line == "ready", f"worker {index} did not start: {self._stderr(index)}"
        self.procs = [proc for proc, _ in self.workers]
        self.began = time.time()

    def _stderr(self, index: int) -> str:
        with contextlib.suppress(OSError, IndexError):
            return self.workers[index][1].read_text()[-3000:]
        return ""

    def mark(self, name: str) -> float:
        """Record the wall-clock time of ``fault`` or ``heal``."""
        self.marks[name] = time.time()
        return self.marks[name]

    def held(self) -> float:
        """Seconds from the fault to the heal."""
        return self.marks["heal"] - self.marks["fault"]

    def kill(self, index: int) -> None:
        """SIGKILL one worker (a crash: no flush, no exit handlers)."""
        self.procs[index].send_signal(signal.SIGKILL)
        self.procs[index].wait()

    def stop(self) -> list[dict[str, Any]]:
        """Tell every worker to stop: each closes its registry and writes its results."""
        for proc in self.procs:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write("stop\n")
                proc.stdin.flush()
        results = []
        began = time.perf_counter()
        for index, proc in enumerate(self.procs):
            if proc.poll() == -signal.SIGKILL:
                continue  # killed by the test: no results
            assert proc.stdout is not None
            line = readline(proc, 60)
            if line != "done":
                raise AssertionError(f"worker {index} did not stop: {self._stderr(index)}")
            results.append(json.loads((self.tmp / f"out-{index}.json").read_text()))
        self.marks["stop_s"] = time.perf_counter() - began
        for proc, _ in self.workers:
            if proc.poll() is not None:
                end(proc, kill=True)
        self.spares.give_back([w for w in self.workers if w[0].poll() is None])
        self.workers, self.procs = [], []
        return results

    def close(self) -> None:
        """Kill the workers of a run that did not stop (a failed test)."""
        for proc in self.procs:
            end(proc, kill=True)
        self.catalogue.close()
        if self._own_spares:
            self.spares.close()
        else:
            self.spares.refill(self.plan.workers)

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- after the run -----------------------------------------------------------------------

    def returned(self) -> set[str]:
        """Ids of the write-behind records whose call returned, in every worker."""
        ids: set[str] = set()
        for path in self.tmp.glob("returned-*"):
            ids.update(line for line in path.read_text().splitlines() if line)
        return ids

    def drain(self, url: str | None = None, timeout: float = 20.0) -> None:
        """Deliver what is still queued (a dead worker's records included), as a restarted
        process would: flush until the queue is empty or ``timeout`` passes."""
        began = time.perf_counter()
        reg = cachedeco.Registry(url or self.url, prefix=self.prefix, socket_timeout=2.0)
        try:
            build(reg, self.catalogue, claim_after=0.1)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with contextlib.suppress(cachedeco.CacheError):
                    reg.flush()
                    if reg.stats().write_behind_pending == 0:
                        break
                time.sleep(0.1)
        finally:
            reg.close()
            self.marks["drain_s"] = time.perf_counter() - began

    def missing(self) -> set[str]:
        """Returned records that SQLite does not hold."""
        return self.returned() - self.catalogue.event_ids()

    def wait_delivered(self, ids: set[str], timeout: float) -> float | None:
        """Seconds until SQLite holds every record of ``ids`` (None: not within ``timeout``)."""
        start = time.time()
        while time.time() - start < timeout:
            if not ids - self.catalogue.event_ids():
                return time.time() - start
            time.sleep(0.05)
        return None

    def trace(self, heal: float) -> list[dict[str, Any]]:
        """The workers' trace lines (stale reads), in time order, each with its time since the
        heal."""
        lines = [json.loads(line) for path in sorted(self.tmp.glob("trace-*.jsonl"))
                 for line in path.read_text().splitlines() if line]
        for line in lines:
            line["since_heal_s"] = round(line["at"] - heal, 4)
        return sorted(lines, key=lambda line: line["at"])

    def stacks(self) -> str:
        """The stacks the workers dumped during their slow calls (each call of a worker has a
        header line: those without a dump after it are left out)."""
        dumps = []
        for path in sorted(self.tmp.glob("trace-*.stacks")):
            calls = path.read_text().split("--- call ")
            if slow := "".join(f"--- call {call}" for call in calls if call.count("\n") > 1):
                dumps.append(f"=== worker {path.stem.partition('-')[2]}\n{slow}")
        return "".join(dumps)

    def row(self, fault: str, deployment: str, results: list[dict[str, Any]], *,
            lost_promised_zero: bool, notes: str = "") -> Row:
        """The table row of this run (after :meth:`stop` and :meth:`drain`)."""
        ops = [op for result in results for op in result["ops"]]
        heal = self.marks.get("heal", self.marks.get("fault", self.began))
        latencies = sorted(op[1] for op in ops)
        kinds: dict[str, int] = {}
        samples: dict[str, str] = {}
        for result in results:
            for name, count in result["errors"].items():
                kinds[name] = kinds.get(name, 0) + count
            samples.update(result["samples"])
        stale = [op for op in ops if op[3] == 2]
        return Row(
            fault=fault, deployment=deployment, calls=len(ops),
            errors=sum(1 for op in ops if op[3] == 1), errors_by_kind=kinds,
            wrong=sum(1 for op in ops if op[3] == 3), stale=len(stale),
            stale_after=sum(1 for op in stale if op[0] >= heal + self.plan.grace),
            within_reach=sum(1 for op in ops if op[3] == 4),
            lost=len(self.missing()), returned=len(self.returned()),
            lost_promised_zero=lost_promised_zero,
            p99_ms=_percentile(latencies, 0.99) * 1000, max_ms=latencies[-1] * 1000,
            max_kind=KINDS[int(max(ops, key=lambda op: op[1])[2])],
            recover_s=recovery(ops, heal), wall_s=time.time() - self.began,
            logged=sum(r.get("logged", 0) for r in results),
            logged_max=max((r.get("logged", 0) for r in results), default=0),
            stop_s=self.marks.get("stop_s", 0.0), drain_s=self.marks.get("drain_s", 0.0),
            notes=notes,
            samples=samples, trace=self.trace(heal), stacks=self.stacks())

    def sleep(self, seconds: float) -> None:
        """Let the load run; fail early if a worker died."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for index, proc in enumerate(self.procs):
                if proc.poll() is not None and proc.returncode != -signal.SIGKILL:
                    raise AssertionError(f"worker {index} exited: {self._stderr(index)}")
            time.sleep(min(left, 0.1))


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def recovery(ops: list[list[float]], heal: float) -> float | None:
    """Seconds from ``heal`` until the last error or stale read (beyond reach) ended and a read
    was then served from the cache (not loaded); None if that never happened."""
    bad_end = max((op[0] + op[1] for op in ops if op[3] in (1, 2) and op[0] + op[1] >= heal),
                  default=heal)
    served = [op[0] + op[1] for op in ops if op[2] == 0 and op[4] and op[0] >= bad_end]
    return min(served) - heal if served else None


def cycle(load: Load, inject: Callable[[], object], heal: Callable[[], object]) -> None:
    """Start the load, then: warm, ``inject()``, hold, ``heal()``, after; the shape of every
    fault run (the caller stops the load)."""
    load.start()
    load.sleep(load.plan.warm)
    load.mark("fault")
    inject()
    load.sleep(load.plan.hold)
    heal()
    load.mark("heal")
    load.sleep(load.plan.after)


def check(row: Row, *, behind_may_fail: bool = True) -> None:
    """The invariants the library promises under every fault (see docs/concepts/failures.md):
    every read, write-through and invalidation answered (``on_error="fallback"``); a
    write-behind call raises only ``BackendError`` (none with a spool); no wrong value ever; no
    stale read beyond the near cache's reach once the recovery interval after the heal has
    passed; no record lost where
    the configuration promises it; the cache serving again before the run ended; a few log
    lines per process, not one per call."""
    unexpected = {kind: n for kind, n in row.errors_by_kind.items()
                  if not (behind_may_fail and kind == "behind:BackendError")}
    assert not unexpected, f"{row.fault}: callers saw {unexpected}: {row.samples}"
    assert row.wrong == 0, f"{row.fault}: {row.wrong} wrong values"
    assert row.stale_after == 0, (
        f"{row.fault}: {row.stale_after} stale reads after the recovery interval "
        f"({row.stale} in all, {row.within_reach} more within reach): {row.samples}")
    if row.lost_promised_zero:
        assert row.lost == 0, f"{row.fault}: {row.lost} of {row.returned} records lost"
    assert row.recover_s is not None, f"{row.fault}: the cache never served again"
    assert row.logged_max <= LOG_LINES, (
        f"{row.fault}: one process logged {row.logged_max} records (an outage is a few lines, "
        "not one per call)")
