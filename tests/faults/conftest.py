"""The fault suite's results file: every fault adds its row (``CACHEDECO_FAULTS_RESULTS`` names
the file; default ``faults.json`` in pytest's temporary directory, printed at the end), and
``python -m tools.faults_table FILE`` turns it into the "Faults survived" table. With
``CACHEDECO_FAULTS_TRACE=1`` the stale reads and what the workers logged go to
``NAME-trace.jsonl`` beside it, and the
stacks of the calls that lasted a second or more to ``NAME-trace.stacks``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.faults.harness import ROOT, Row, Spares, mode
from tests.faults.staleness import REACH
from tools.faults_table import render

RESULTS_ENV = "CACHEDECO_FAULTS_RESULTS"
_written: list[Path] = []


class Results:
    """The rows of this session, rewritten to ``path`` (and a ``.md`` twin) after each fault."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.trace_path = path.with_name(f"{path.stem}-trace.jsonl")
        self.trace_path.unlink(missing_ok=True)  # this session's, as the results
        self.trace_path.with_suffix(".stacks").unlink(missing_ok=True)
        self.meta = {
            "mode": mode().name, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "python": platform.python_version(), "redis_py": redis.__version__,
            "redis_server": _redis_version(), "cpus": os.cpu_count(), "commit": _commit(),
            "plan": asdict(mode()), "reach": REACH}

    def add(self, row: Row) -> None:
        self.rows.append(asdict(row))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trace, stacks = self.rows[-1].pop("trace"), self.rows[-1].pop("stacks")
        if stacks:
            with self.trace_path.with_suffix(".stacks").open("a") as out:
                out.write(f"##### {row.fault} ({row.notes})\n{stacks}")
        if trace:  # CACHEDECO_FAULTS_TRACE=1: beside the results, one line per stale read
            with self.trace_path.open("a") as out:
                for line in trace:
                    out.write(json.dumps({"fault": row.fault, "notes": row.notes, **line}) + "\n")
        data = {"meta": self.meta, "rows": self.rows}
        self.path.write_text(json.dumps(data, indent=1))
        self.path.with_suffix(".md").write_text(render(data, full=True))
        if self.path not in _written:
            _written.append(self.path)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=False, timeout=5).stdout.strip()
    except OSError:
        return ""


def _redis_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], text=True, capture_output=True,
                             check=False, timeout=5).stdout
    except OSError:
        return ""
    return next((w.split("=")[1] for w in out.split() if w.startswith("v=")), out.strip())


@pytest.fixture(scope="session")
def fault_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    """Where each fault's row goes."""
    given = os.environ.get(RESULTS_ENV)
    path = Path(given) if given else tmp_path_factory.getbasetemp() / "faults.json"
    yield Results(path)


@pytest.fixture(scope="session")
def spares(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spares]:
    """Worker processes with their imports done, shared by the faults of the session."""
    made = Spares(tmp_path_factory.mktemp("workers"))
    made.refill(mode().workers)
    yield made
    made.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in _written:
        terminalreporter.write_line(f"fault suite results: {path} (and {path.with_suffix('.md')})")
        trace = path.with_name(f"{path.stem}-trace.jsonl")
        if trace.exists():
            terminalreporter.write_line(f"stale reads traced: {trace}")
        if trace.with_suffix(".stacks").exists():
            terminalreporter.write_line(f"slow calls' stacks: {trace.with_suffix('.stacks')}")
