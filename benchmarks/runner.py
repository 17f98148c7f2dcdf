"""``python -m benchmarks [--redis URL] [--quick] [--only NAME] [--json PATH] [--plot DIR]``.

Runs the scenarios of :mod:`benchmarks.scenarios` in order, with progress on stderr (a bar on
a terminal; otherwise a log with durations and a heartbeat: :mod:`benchmarks.progress`), then
prints the machine, one table per scenario and the targets with their verdicts on stdout,
every line at most 120 columns. Redis: ``--redis
URL`` uses that server; otherwise, when ``redis-server`` is on the PATH, a private one is
started on a free loopback port for the run and stopped at the end; otherwise (or with
``--no-redis``) only the ``memory://`` scenarios run. A scenario that is missing is listed as
such; one that fails to import or raises is reported with its traceback and the run goes on.
Exit status: 0, or 1 when a scenario failed, 2 on bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import shutil
import sys
import textwrap
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from benchmarks import peers, progress, report, servers, texttable
from benchmarks.report import Outcome
from benchmarks.scenarios import describe, names

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="cachedeco benchmarks: ratios to raw clients and peer libraries, "
                    "measured interleaved in one run (see benchmarks/README.md).")
    parser.add_argument("--redis", metavar="URL",
                        help="Redis to use (default: a private redis-server if it is on PATH)")
    parser.add_argument("--no-redis", action="store_true",
                        help="run the memory:// scenarios only")
    parser.add_argument("--cluster", metavar="URL",
                        help="redis+cluster:// URL for scenarios that take one (default: they "
                             "start a private cluster when they can)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few rounds: a smoke run of under a minute")
    parser.add_argument("--only", metavar="NAME", action="append", default=[],
                        help="run these scenarios only (repeat, or comma-separate); "
                             "see --list")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write every row as JSON")
    parser.add_argument("--plot", metavar="DIR", type=Path,
                        help="write an SVG chart per scenario into DIR (created if needed)")
    return parser


#: Scenarios a full run leaves out unless ``--only`` names them: the soak's ten minutes
#: would more than double a full run (``--quick`` runs its 20-second form).
OPT_IN = frozenset({"soak"})


def _select(parser: argparse.ArgumentParser, only: Sequence[str], quick: bool) -> list[str]:
    """The scenarios ``--only`` names (by default all, less the opt-in ones of a full run), in
    running order."""
    known = names()
    wanted = [n.strip().replace("-", "_") for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(known)}")
    if wanted:
        return [n for n in known if n in wanted]
    return known if quick else [n for n in known if n not in OPT_IN]


class _Redis:
    """The Redis of a run: given, private (started here and stopped by :meth:`stop`) or none."""

    def __init__(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
        self.url: str | None = None
        self.where = "none"
        self.version: str | None = None
        self._server: servers.PrivateServer | None = None
        if args.redis:
            if not servers.ping(args.redis):
                parser.error(f"--redis {args.redis}: no Redis answers PING there")
            self.url, self.where = args.redis, f"given: {args.redis}"
        elif args.no_redis:
            self.where = "none (--no-redis)"
        elif shutil.which("redis-server") is None:
            self.where = "none (redis-server is not on PATH; give --redis URL)"
        else:
            try:
                self._server, launcher = servers.start_private()
            except Exception as exc:  # a broken local install must not stop the memory rows
                self.where = f"none (could not start redis-server: {exc})"
            else:
                self.url = self._server.url
                self.where = (f"private redis-server on 127.0.0.1:{self._server.port}, "
                              f"started for this run by {launcher}")
        if self.url is not None:
            self.version = servers.server_version(self.url)

    def sweep(self) -> int:
        """Remove whatever any scenario left under this run's prefix (SCAN + UNLINK)."""
        if self.url is None:
            return 0
        client = redis.Redis.from_url(self.url, socket_timeout=10)
        try:
            return servers.sweep(client, servers.RUN_ID)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the private server, if this run started one."""
        if self._server is not None:
            self._server.stop()
            self._server = None


class _LogGate(logging.Handler):
    """Warnings logged during a scenario (by cachedeco or a peer): the first few shown as one
    line each on stderr, every one counted, so that a failing peer cannot flood the output."""

    def __init__(self, shown: int = 5) -> None:
        super().__init__(logging.WARNING)
        self.shown = shown
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.name] += 1
        if self.counts.total() <= self.shown:
            message = record.getMessage().splitlines()[0] if record.msg else ""
            line = f"    [{record.levelname.lower()} {record.name}] {message}"
            room = progress.WIDTH - len("[0:00] ")
            progress.bar.note(line if len(line) <= room else line[:room - 1] + "…")
        elif self.counts.total() == self.shown + 1:
            progress.bar.note("    [more log records are counted, not shown]")

    def take(self) -> dict[str, int]:
        """The counts so far, reset."""
        counts, self.counts = dict(self.counts), Counter()
        return counts


def _run_one(name: str, redis_url: str | None, quick: bool,
             cluster_url: str | None = None) -> Outcome:
    """Import and run one scenario, turning every failure into an Outcome."""
    module_name = f"benchmarks.scenarios.{name}"
    if importlib.util.find_spec(module_name) is None:
        return Outcome(name, "missing", detail=f"benchmarks/scenarios/{name}.py is not there yet")
    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        run = getattr(module, "run", None)
        if not callable(run):
            return Outcome(name, "failed", detail="the module has no run(redis_url, quick)")
        if getattr(module, "NEEDS_REDIS", False) and redis_url is None:
            return Outcome(name, "skipped", detail="needs Redis: give --redis URL or put "
                                                   "redis-server on the PATH")
        extra = {}
        if cluster_url is not None and "cluster_url" in inspect.signature(run).parameters:
            extra["cluster_url"] = cluster_url
        rows = run(redis_url, quick, **extra)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError(f"run() returned {type(rows).__name__}, not a list of dicts")
    except Exception as exc:
        progress.bar.note(f"!! scenario {name} failed:\n{traceback.format_exc().rstrip()}")
        return Outcome(name, "failed", seconds=time.perf_counter() - started,
                       detail=f"{type(exc).__name__}: {exc} (traceback above, on stderr)")
    rows = [{"scenario": name, **row} for row in rows]
    return Outcome(name, "ok", rows, time.perf_counter() - started)


def _peer_versions() -> dict[str, str]:
    """The installed version of every peer."""
    versions = {}
    for name in peers.PEERS:
        try:
            found = importlib.metadata.version(name) if peers.has(name) else "not installed"
        except importlib.metadata.PackageNotFoundError:
            found = "?"
        versions[name] = found
    return versions


LEGEND = (
    "how to read: ratio = wall time per operation over the baseline's, the median of per-round "
    "ratios with its p10-p90 in brackets (rows of a table run interleaved, round by round); "
    "CPU over base = process CPU per operation above the baseline's (our own cost, network "
    "left out). verdict: met = the p90 is within the target; NOT MET = the p10 is beyond it; "
    "within noise = the target lies between p10 and p90, so this run cannot tell. A row "
    "measured once (a whole workload) is met or NOT MET. \"took\" is a scenario's wall time; "
    "every value of every row is in --json.")


def _header(meta: dict[str, Any]) -> str:
    """The lines above the tables: machine, versions, peers, how to read a table."""
    lines = ["cachedeco benchmarks" + (" (--quick: small sizes, few rounds; indicative only)"
                                       if meta["quick"] else "")]
    for key in ("date", "nproc", "cpu", "os", "python", "redis_py", "redis_server",
                "redis_where", "cachedeco"):
        lines += textwrap.wrap(f"{key:<12} {meta[key]}", texttable.WIDTH, initial_indent="  ",
                               subsequent_indent=" " * 15)
    lines += textwrap.wrap("peers        " + ", ".join(f"{k} {v}" for k, v in
                                                       meta["peers"].items()),
                           texttable.WIDTH, initial_indent="  ", subsequent_indent=" " * 15)
    missing = peers.missing()
    if missing:
        lines += textwrap.wrap(f"!! peers not installed ({', '.join(missing)}): their rows are "
                               f"missing; {peers.INSTALL_HINT}", texttable.WIDTH,
                               initial_indent="  ", subsequent_indent="     ")
    lines += textwrap.wrap(LEGEND, texttable.WIDTH, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def _finish(args: argparse.Namespace, meta: dict[str, Any], outcomes: list[Outcome]) -> None:
    """Print the report, then write --json and --plot."""
    print(_header(meta))
    for outcome in outcomes:
        print()
        print(report.table(outcome, describe(outcome.name)))
    lines = report.targets(outcomes)
    if lines:
        print("\nTargets (verdict, scenario · group · row: result; target):")
        print("\n".join(lines))
    print(f"\nTotal {meta['seconds']:.1f} s ({progress.clock_text(meta['seconds'])}).")
    if args.json is not None:
        report.write_json(args.json, meta, outcomes)
        print(f"--json: wrote {args.json}")
    if args.plot is not None:
        print("\n".join(report.plot(args.plot, outcomes)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite; see the module docstring."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in names():
            print(f"{name:<14} {describe(name)}")
        return 0
    chosen = _select(parser, args.only, args.quick)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    started = time.perf_counter()
    bar = progress.bar
    gate = _LogGate()
    logging.getLogger().addHandler(gate)
    where = _Redis(args, parser)
    bar.begin(len(chosen))
    bar.note(f"Redis: {where.where}")
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        for index, name in enumerate(chosen):
            bar.scenario_started(index, name)
            outcomes.append(_run_one(name, where.url, args.quick, args.cluster))
            outcomes[-1].logged = gate.take()
            bar.scenario_finished()
    except KeyboardInterrupt:
        interrupted = True
        outcomes.append(Outcome(chosen[len(outcomes)], "interrupted", detail="Ctrl-C"))
    finally:
        bar.end()
        bar.clear()
        try:
            if where.sweep():
                bar.note(f"Swept the keys scenarios left under {servers.RUN_ID}:")
        finally:
            where.stop()
        logging.getLogger().removeHandler(gate)
    meta = {**report.machine(where.version, where.where), "quick": args.quick,
            "peers": _peer_versions(), "seconds": time.perf_counter() - started,
            "run_id": servers.RUN_ID}
    _finish(args, meta, outcomes)
    if interrupted:
        return 130
    return 1 if any(o.status == "failed" for o in outcomes) else 0
