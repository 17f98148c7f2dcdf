"""Output: the machine a run came from, one text table per scenario (see
:mod:`benchmarks.texttable`), the targets, ``--json`` and ``--plot`` (see
:mod:`benchmarks.svgplot`).
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

import cachedeco
from benchmarks import svgplot, texttable

__all__ = ["Outcome", "machine", "plot", "table", "targets", "write_json"]

Row = dict[str, Any]


@dataclass
class Outcome:
    """What became of one scenario: ok, failed, skipped or missing, with its rows."""

    name: str
    status: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    detail: str = ""
    logged: dict[str, int] = field(default_factory=dict)  # warnings logged, per logger


# --- the machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _git() -> str:
    """The commit the run measured (read-only git calls), ``+modified`` with local changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5,
                               check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + ("+modified" if dirty else "")


def _hiredis() -> str:
    """Which reply parser redis-py uses."""
    try:
        return f"hiredis {importlib.import_module('hiredis').__version__}"
    except ImportError:
        return "pure-Python parser (pip install hiredis)"


def machine(redis_version: str | None, redis_where: str) -> dict[str, Any]:
    """Where and on what a run happened."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_py": f"{redis.__version__} ({_hiredis()})",
        "redis_server": redis_version or "none",
        "redis_where": redis_where,
        "cachedeco": cachedeco.__version__,
        "git": _git(),  # in --json only: the tables name no commit
    }


# --- tables ------------------------------------------------------------------------------------


def table(outcome: Outcome, description: str, width: int = texttable.WIDTH) -> str:
    """The text of one scenario's table (or the line saying why it has none), at most
    ``width`` columns wide."""
    head = texttable.heading(outcome.name, description, width)
    logged = ", ".join(f"{name} {count:,}" for name, count in outcome.logged.items())
    if outcome.status != "ok":
        also = f" (warnings logged: {logged})" if logged else ""
        body = textwrap.wrap(f"{outcome.status}: {outcome.detail}{also}", width,
                             initial_indent="   ", subsequent_indent="   ")
        return "\n".join(head + body)
    if not outcome.rows:
        return "\n".join([*head, "   (no rows)"])
    footer = textwrap.wrap(f"took {outcome.seconds:.1f} s"
                           + (f"; warnings logged: {logged}" if logged else ""), width,
                           initial_indent="   ", subsequent_indent="   ")
    return "\n".join(head + texttable.table_lines(outcome.rows, width) + footer)


def targets(outcomes: Sequence[Outcome], width: int = texttable.WIDTH) -> list[str]:
    """The rows that have a target: verdict, scenario and row, what was measured (with its
    spread) and the target."""
    return [line for o in outcomes for line in texttable.target_lines(o.name, o.rows, width)]


# --- files -------------------------------------------------------------------------------------


def write_json(path: Path, meta: dict[str, Any], outcomes: Sequence[Outcome]) -> None:
    """Every row of every scenario, with the machine, as JSON."""
    payload = {"meta": meta, "scenarios": [asdict(o) for o in outcomes]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def plot(directory: Path, outcomes: Sequence[Outcome]) -> list[str]:
    """An SVG per scenario with rows into ``directory``; returns what was written."""
    return svgplot.write_all(directory, outcomes)
