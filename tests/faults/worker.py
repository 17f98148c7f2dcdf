"""One worker process of the fault suite: ``python -m tests.faults.worker``.

It imports cachedeco, says ``spare``, then reads the path of a run's configuration (JSON)
from stdin (one process serves one run after another: a fault run does not wait for the
imports). It keeps calling the catalogue's functions (:mod:`tests.faults.workload`) at a
steady rate until the line ``stop`` (or the end of stdin): cached reads (tagged,
``lock=True``) of any product, and, on the products it owns (``pid % workers == index``,
so no two processes write one product), a write-through update, a direct update followed
by ``invalidate_tags``, and write-behind records (an asyncio worker: ``tasks`` callers at
once on its loop, together at that rate). Each call is checked as it returns:

- a read whose value is not the product's (another id, a version the database never held)
  is *wrong*; one older than a write that had returned before the read began (``acks``) is
  *stale*, unless it is *within reach* (:mod:`tests.faults.staleness`: a near hit, every
  write it missed returned less than ``REACH`` before, in another process);
- a write-behind call that returned appends its record's id to ``returned`` (one ``write``
  per id, so the list survives a SIGKILL): what the suite later looks for in SQLite.

Then it closes its registry (which flushes), writes ``out`` (every call as ``[start (wall
clock), seconds, kind, outcome, served without loading]``, the errors by type, its stats),
says ``done`` and waits for the next run. With ``trace`` in its configuration it appends a
JSON line per stale read (within reach or not) to that file: the product, the version read,
the versions missed with their writer and how long before the read they returned, whether a
near hit served it; and the stacks of every thread when a call has lasted ``SLOW`` seconds
(``faulthandler``), to the same file with ``.stacks`` for suffix.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import redis.asyncio
import redis.asyncio.cluster

import cachedeco
from tests.faults.staleness import Ack, missed, within_reach
from tests.faults.workload import Catalogue, abuild, build, loading
from tests.support.near import FirstStep

KINDS = ("read", "write", "invalidate", "behind")
OUTCOMES = ("ok", "error", "stale", "wrong", "reach")  # reach: stale, within reach
SLOW = 1.0  # seconds: with a trace, a call this long has every thread's stack dumped
MIX = (("read", 0.70), ("write", 0.10), ("invalidate", 0.05), ("behind", 0.15))
KINDS_DRAWN, WEIGHTS = [k for k, _ in MIX], [w for _, w in MIX]


@dataclass
class Call:
    """One call under way: its kind and product, the newest version acknowledged before it
    began (reads), this process's near hits then, when it began (wall clock, timer), its
    number in the process and the products whose loader it ran (:func:`loading`)."""

    kind: str
    pid: int
    before: int
    near: int
    start: float
    began: float
    n: int
    loaded: list[int]


class LogCount(logging.Handler):
    """Counts the records the library logs during a run (they still reach stderr); when
    tracing, each goes to the trace too (``outcome`` "log"), to be read beside the stale
    reads: when a process saw its backend fail, follow a new primary, recover."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.first: list[str] = []
        self.trace: TextIO | None = None
        self.index = -1

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 20:
            self.first.append(f"{record.created:.3f} {record.levelname} "
                              f"{record.getMessage()[:200]}")
        if self.trace is not None:
            self.trace.write(json.dumps({"at": record.created, "reader": self.index,
                                         "outcome": "log",
                                         "log": record.getMessage()[:300]}) + "\n")
            self.trace.flush()


class Worker:
    """One process's calls and what it saw of them."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.logs = LogCount()
        logging.getLogger("cachedeco").addHandler(self.logs)
        self.index: int = cfg["index"]
        self.keys: int = cfg["keys"]
        self.asyncio: bool = cfg.get("asyncio", False)
        self.tasks: int = cfg.get("tasks", 1)  # asyncio: callers at once, on the one loop
        self.catalogue = Catalogue(cfg["db"])
        if self.asyncio:  # a ready asyncio client, as an ASGI service gives one
            options = cfg["options"]
            timeouts = {"socket_timeout": options["socket_timeout"],
                        "socket_connect_timeout": options["socket_connect_timeout"]}
            client: Any = (redis.asyncio.Redis.from_url(cfg["url"], **timeouts)
                           if not cfg["url"].startswith("redis+cluster://") else
                           redis.asyncio.RedisCluster(startup_nodes=[
                               redis.asyncio.cluster.ClusterNode(host, int(port))
                               for host, port in (node.rsplit(":", 1) for node in
                                                  cfg["url"].split("://", 1)[1].split(","))],
                               **timeouts))
            self.reg = cachedeco.Registry(client, prefix=cfg["prefix"], **options)
            self.fns = abuild(self.reg, self.catalogue, claim_after=cfg.get("claim_after", 1.0),
                              replicas=cfg.get("replicas", 0))
        else:
            self.reg = cachedeco.Registry(cfg["url"], prefix=cfg["prefix"], **cfg["options"])
            slow = Path(cfg["slow_flush"]) if cfg.get("slow_flush") else None
            self.fns = build(self.reg, self.catalogue, claim_after=cfg.get("claim_after", 1.0),
                             replicas=cfg.get("replicas", 0), slow_flush=slow)
        self.rng = random.Random(cfg["seed"])
        self.own = [p for p in range(self.keys) if p % cfg["workers"] == self.index] or [0]
        self.returned = os.open(cfg["returned"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.ops: list[list[float]] = []
        self.errors: Counter[str] = Counter()
        self.samples: dict[str, str] = {}
        self.n = 0
        self._due = time.monotonic()  # when the next call is due (see _pause)
        self.trace = open(cfg["trace"], "a") if cfg.get("trace") else None  # noqa: SIM115
        self.stacks = (open(Path(cfg["trace"]).with_suffix(".stacks"), "a")  # noqa: SIM115
                       if cfg.get("trace") else None)
        self.logs.trace, self.logs.index = self.trace, self.index

    def run(self, stop: threading.Event) -> None:
        """Call at ``rate`` per second until ``stop`` is set."""
        while not stop.is_set():
            kind, call = self._next()
            try:
                value: Any = self.call(kind, call.pid, call.n)
            except Exception as exc:  # every exception a caller would see
                self._failed(call, exc)
            else:
                self._returned(call, value)
            time.sleep(self._pause())

    async def arun(self, stop: threading.Event) -> None:
        """:meth:`run` of the ``async def`` functions, on this loop, by ``tasks`` tasks at
        once (an ASGI service's requests in flight), together at ``rate`` per second: each
        at its own pace from its own start, so that calls begin together now and then (a
        hit right after another task's miss), as requests do."""
        every = self.tasks / self.cfg["rate"]
        await asyncio.gather(*(self._acaller(stop, every, self.rng.uniform(0, every))
                               for _ in range(self.tasks)))

    async def _acaller(self, stop: threading.Event, every: float, offset: float) -> None:
        await asyncio.sleep(offset)
        due = time.monotonic()
        while not stop.is_set():
            kind, call = self._next()
            step = FirstStep(self.acall(kind, call.pid, call.n), self.near_hits)
            try:
                value: Any = await step
            except Exception as exc:
                self._failed(call, exc)
            else:
                self._returned(call, value, near=step.grew)
            due += every
            if (pause := due - time.monotonic()) <= 0:
                due = time.monotonic()  # behind: no burst to catch up
            await asyncio.sleep(max(pause, 0.0))

    def _pause(self) -> float:
        """How long to wait before the next call, to keep to ``rate`` per second."""
        self._due += 1.0 / self.cfg["rate"]
        pause = self._due - time.monotonic()
        if pause <= 0:
            self._due = time.monotonic()  # behind: no burst to catch up
        return max(pause, 0.0)

    def _next(self) -> tuple[str, Call]:
        """The next call's kind and what is known before it starts."""
        kind = self.rng.choices(KINDS_DRAWN, WEIGHTS)[0]
        pid = self.rng.randrange(self.keys) if kind == "read" else self.rng.choice(self.own)
        before = self.catalogue.acked(pid) if kind == "read" else 0
        self.n += 1
        near = self.near_hits() if kind == "read" else 0
        call = Call(kind, pid, before, near, time.time(), time.perf_counter(), self.n,
                    loading())
        if self.stacks is not None:
            self.stacks.write(f"--- call {call.n} ({kind} of {pid}) began at {call.start:.3f}"
                              f"{self.primary()}\n")
            self.stacks.flush()
            faulthandler.dump_traceback_later(SLOW, file=self.stacks)
        return kind, call

    def _failed(self, call: Call, exc: Exception) -> None:
        """A call raised: counted by type, the first of each type kept."""
        if self.stacks is not None:
            faulthandler.cancel_dump_traceback_later()
        took = time.perf_counter() - call.began
        name = f"{call.kind}:{type(exc).__name__}"
        self.errors[name] += 1
        self.samples.setdefault(name, "".join(
            traceback.format_exception_only(exc)).strip()[:300])
        self.ops.append([call.start, took, KINDS.index(call.kind), 1, 0])

    def _returned(self, call: Call, value: Any, near: bool | None = None) -> None:
        """A call returned: checked, and the stale read traced (``near``: whether the near
        cache served it, when the caller knows; else this process's near hits tell)."""
        if self.stacks is not None:
            faulthandler.cancel_dump_traceback_later()
            if call.kind in ("write", "invalidate"):
                self.stacks.write(f"--- call {call.n} ended at {time.time():.3f}"
                                  f"{self.primary()}\n")
        kind, pid, before, start = call.kind, call.pid, call.before, call.start
        took = time.perf_counter() - call.began
        outcome = self.check(kind, pid, value, before, call.n)
        if outcome == "stale":
            hit = self.near_hits() > call.near if near is None else near
            got = value["v"]
            missing = missed(self.catalogue.acks(pid, got), got, before)
            if within_reach(missing, start, self.index, near=hit):
                outcome = "reach"
            else:  # the first one, for the row (a failure says what it was)
                self.samples.setdefault("read:stale", self.describe_stale(
                    pid, got, before, start, missing, took=took, near=hit,
                    loaded=bool(call.loaded)))
            if self.trace is not None:
                self.log_stale(pid, got, before, start, missing, took=took, outcome=outcome,
                               near=hit, loaded=bool(call.loaded))
        if kind == "behind" and outcome == "ok":
            os.write(self.returned, f"{value['id']}\n".encode())
        served = int(kind == "read" and not call.loaded)
        self.ops.append([start, took, KINDS.index(kind), OUTCOMES.index(outcome), served])

    def primary(self) -> str:
        """`` on HOST:PORT@MOVES``: the primary this process follows (Sentinel), else ''."""
        watch = self.reg.slot("default").watch
        return "" if watch is None else f" on {watch.address}@{watch.epoch}"

    def near_hits(self) -> int:
        """Reads of this process served by its near cache so far."""
        return int(self.fns.get_product.stats().near_hits)  # type: ignore[attr-defined]

    def describe_stale(self, pid: int, got: int, before: int, start: float,
                       missing: list[Ack], *, took: float, near: bool, loaded: bool) -> str:
        """A stale read in a line: what it got, what it missed and how late, who served it."""
        lags = ", ".join(f"v{a.v} by worker {a.writer} {(start - a.at) * 1000:.1f} ms before"
                         for a in missing)
        return (f"worker {self.index} read product {pid} at {start:.3f}: v{got}, not v{before} "
                f"({'near hit' if near else 'loaded' if loaded else 'from Redis'}, "
                f"{took * 1000:.1f} ms{self.primary()}); missed {lags or 'nothing recorded'}")

    def log_stale(self, pid: int, got: int, before: int, start: float, missing: list[Ack], *,
                  took: float, outcome: str, near: bool, loaded: bool) -> None:
        """One line of the trace: a stale read and the writes it missed."""
        assert self.trace is not None
        line = {"at": start, "pid": pid, "reader": self.index, "got": got, "before": before,
                "outcome": outcome, "near": near, "loaded": loaded,
                "took_ms": round(took * 1000, 3),
                "missed": [{"v": a.v, "writer": a.writer, "lag_ms": round((start - a.at) * 1000, 3)}
                           for a in missing]}
        line["primary"] = self.primary()
        self.trace.write(json.dumps(line) + "\n")
        self.trace.flush()

    def event_id(self, n: int) -> str:
        return f"w{self.index}-{os.getpid()}-{n}"

    def call(self, kind: str, pid: int, n: int) -> Any:
        if kind == "read":
            return self.fns.get_product(pid)
        if kind == "write":
            value = self.fns.update_product(pid)
            self.catalogue.ack(pid, value["v"], time.time(), self.index)
            return value
        if kind == "invalidate":
            v = self.catalogue.bump(pid)
            self.reg.invalidate_tags(f"product:{pid}")
            self.catalogue.ack(pid, v, time.time(), self.index)
            return v
        return self.fns.record_event(self.event_id(n), self.index, n)

    async def acall(self, kind: str, pid: int, n: int) -> Any:
        """:meth:`call` of the ``async def`` functions."""
        if kind == "read":
            return await self.fns.get_product(pid)
        if kind == "write":
            value = await self.fns.update_product(pid)
            self.catalogue.ack(pid, value["v"], time.time(), self.index)
            return value
        if kind == "invalidate":
            v = self.catalogue.bump(pid)
            await self.reg.ainvalidate_tags(f"product:{pid}")
            self.catalogue.ack(pid, v, time.time(), self.index)
            return v
        return await self.fns.record_event(self.event_id(n), self.index, n)

    def check(self, kind: str, pid: int, value: Any, before: int, n: int) -> str:
        """``ok``, ``stale`` or ``wrong`` for a value a call returned."""
        if kind == "read":
            if not isinstance(value, dict) or value.get("id") != pid:
                return "wrong"
            if not isinstance(value.get("v"), int) or value["v"] > self.catalogue.version(pid):
                return "wrong"
            return "stale" if value["v"] < before else "ok"
        if kind == "write":
            return "ok" if isinstance(value, dict) and value.get("id") == pid else "wrong"
        if kind == "behind":
            expected = {"id": self.event_id(n), "w": self.index, "n": n}
            return "ok" if value == expected else "wrong"
        return "ok"

    async def aserve(self, stop: threading.Event) -> None:
        """A run of the ``async def`` functions, on one loop (the client's): warm, say
        ``ready``, call until ``stop``, close the registry on this loop."""
        await self.fns.get_product(self.own[0])  # warm: connections, scripts
        print("ready", flush=True)
        self._due = time.monotonic()
        await self.arun(stop)
        closing = time.perf_counter()
        await self.reg.aclose()
        self.finish(closing)

    def finish(self, closing: float | None = None) -> None:
        """Close the registry (a last flush; ``closing``: when an async close began, done)
        and write the results."""
        if closing is None:
            closing = time.perf_counter()
            self.reg.close()
        logging.getLogger("cachedeco").removeHandler(self.logs)
        result = {"index": self.index, "ops": self.ops, "errors": dict(self.errors),
                  "samples": self.samples, "stats": asdict(self.reg.stats()),
                  "close_s": time.perf_counter() - closing, "logged": self.logs.count,
                  "first_logs": self.logs.first}
        Path(self.cfg["out"]).write_text(json.dumps(result))
        self.catalogue.close()
        if self.trace is not None and self.stacks is not None:
            self.trace.close()
            self.stacks.close()


def _wait_for_stop(stop: threading.Event) -> None:
    sys.stdin.readline()
    stop.set()


def main() -> int:
    """Serve runs until stdin ends: a configuration's path starts one, ``stop`` ends it."""
    print("spare", flush=True)
    while line := sys.stdin.readline().strip():
        worker = Worker(json.loads(Path(line).read_text()))
        stop = threading.Event()
        reader = threading.Thread(target=_wait_for_stop, args=(stop,), daemon=True)
        reader.start()
        if worker.asyncio:
            asyncio.run(worker.aserve(stop))
        else:
            worker.fns.get_product(worker.own[0])  # warm: connections, scripts
            print("ready", flush=True)
            worker._due = time.monotonic()
            worker.run(stop)
            worker.finish()
        reader.join()
        print("done", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The registry is closed and the results written: skip the interpreter's teardown (about
    # two seconds on a busy 2-core machine, times one fault run after another).
    os._exit(code)
