"""Output: the machine a run came from, one text table per scenario, the targets, ``--json``
and ``--plot``.

Tables show only the columns a scenario's rows fill. Known keys (see
:mod:`benchmarks.scenarios`) get a header and a unit; any other key a scenario returns is shown
as it is, so scenarios written elsewhere need no change here.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import math
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

import cachedeco

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
        "cachedeco": f"{cachedeco.__version__} (git {_git()})",
    }


# --- tables ------------------------------------------------------------------------------------


def _time_us(value: float) -> str:
    """Microseconds in the unit that suits them."""
    if value < 10:
        return f"{value:.2f} µs"
    if value < 1000:
        return f"{value:.1f} µs"
    if value < 1e6:
        return f"{value / 1e3:.2f} ms"
    return f"{value / 1e6:.2f} s"


def _span(low: float, high: float) -> str:
    """``61.9-77.2 µs``: one unit for both ends when they share it."""
    left, right = _time_us(low), _time_us(high)
    unit = right.rpartition(" ")[2]
    if left.endswith(" " + unit):
        return f"{left.rpartition(' ')[0]}-{right}"
    return f"{left}-{right}"


def _num(value: Any) -> str:
    """A value no column knows: numbers grouped, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def _ratio(row: Row) -> str:
    """``1.17x (1.10-1.25)``, or that the row is the baseline."""
    if row.get("baseline") == "(baseline)":
        return "1 (baseline)"
    text = f"{row['ratio']:.2f}x"
    if "ratio_p10" in row:
        text += f" ({row['ratio_p10']:.2f}-{row['ratio_p90']:.2f})"
    return text


def _bytes(value: float) -> str:
    """Bytes in B, kB, MB or GB (decimal)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


Cell = Callable[[Row], str]

#: (header, the key that decides whether the column shows, how to render a cell).
_COLUMNS: list[tuple[str, str, Cell]] = [
    ("group", "group", lambda r: str(r.get("group", ""))),
    ("row", "row", lambda r: str(r.get("row", ""))),
    ("median/op", "median_us", lambda r: _time_us(r["median_us"])),
    ("p10-p90", "p10_us", lambda r: _span(r["p10_us"], r["p90_us"])),
    ("ratio (p10-p90)", "ratio", _ratio),
    ("CPU/op", "cpu_us", lambda r: _time_us(r["cpu_us"])),
    ("CPU over base", "cpu_over_base_us", lambda r: f"{r['cpu_over_base_us']:+.1f} µs"),
    ("wall over base", "wall_over_base_us", lambda r: f"{r['wall_over_base_us']:+.3f} µs"),
    ("cmds/op", "cmds_per_op", lambda r: f"{r['cmds_per_op']:.2f}"),
    ("ops/s", "ops_per_s", lambda r: f"{r['ops_per_s']:,.0f}"),
    ("loads", "loads", lambda r: _num(r["loads"])),
    ("distinct", "distinct", lambda r: _num(r["distinct"])),
    ("loads/distinct", "loads_per_distinct", lambda r: f"{r['loads_per_distinct']:.3f}"),
    ("errors", "errors", lambda r: _num(r["errors"])),
    ("backend errors", "backend_errors", lambda r: _num(r["backend_errors"])),
    ("wall", "wall_s", lambda r: f"{r['wall_s']:.2f} s"),
    ("fill", "fill_s", lambda r: f"{r['fill_s']:.2f} s"),
    ("invalidate", "invalidate_us", lambda r: _time_us(r["invalidate_us"])),
    ("Δ used_memory", "used_memory_delta", lambda r: _bytes(r["used_memory_delta"])),
    ("B/entry", "bytes_per_entry", lambda r: f"{r['bytes_per_entry']:,.0f}"),
    ("kept after", "kept_bytes", lambda r: _bytes(r["kept_bytes"])),
    ("exact", "exact", lambda r: _num(r["exact"])),
    ("exponent", "exponent", lambda r: f"N**{r['exponent']:.2f}"),
    ("target", "target", lambda r: str(r["target"])),
    ("met", "met", lambda r: "yes" if r["met"] is True else "NO" if r["met"] is False else ""),
    ("note", "note", lambda r: str(r["note"])),
]
#: Keys kept in --json but not shown (they are implied by other columns or the README).
_HIDDEN = {"scenario", "baseline", "rounds", "batch", "ratio_p10", "ratio_p90", "p90_us",
           "calls", "callers", "entries"}


def _generic(key: str) -> Cell:
    """How a key no column knows is shown."""
    return lambda row: _num(row[key])


def _verdict(met: object) -> str:
    """The words for a row's ``met``."""
    return "met" if met is True else "NOT MET" if met is False else "not judged"


def _cell(render: Cell, key: str, row: Row) -> str:
    """One cell: empty when the row lacks the key, a dash for None."""
    if key not in row:
        return ""
    if row[key] is None:
        return "-"
    try:
        return render(row)
    except (KeyError, TypeError, ValueError):
        return _num(row.get(key))


def table(outcome: Outcome, description: str) -> str:
    """The text of one scenario's table (or the line saying why it has none)."""
    head = f"== {outcome.name}: {description}"
    logged = ", ".join(f"{name} {count:,}" for name, count in outcome.logged.items())
    if outcome.status != "ok":
        also = f" (warnings logged: {logged})" if logged else ""
        return f"{head}\n   {outcome.status}: {outcome.detail}{also}"
    if not outcome.rows:
        return f"{head}\n   (no rows)"
    rows = outcome.rows
    known = {key for _, key, _ in _COLUMNS} | _HIDDEN
    columns = [(h, k, r) for h, k, r in _COLUMNS if any(k in row for row in rows)]
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in known))
    tail = next((i for i, (_, k, _) in enumerate(columns) if k in ("target", "met", "note")),
                len(columns))
    columns[tail:tail] = [(k, k, _generic(k)) for k in extra]
    cells = [[_cell(render, key, row) for _, key, render in columns] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _, _) in enumerate(columns)]
    lines = [head, "  ".join(h.ljust(w) for (h, _, _), w in zip(columns, widths, strict=True))]
    group: object = None
    for row, line in zip(rows, cells, strict=True):
        if row.get("group") == group and columns[0][1] == "group":
            line[0] = ""  # the group is named on its first row only
        elif group is not None:
            lines.append("")
        group = row.get("group")
        lines.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    footer = f"   ({outcome.seconds:.1f} s{'; warnings logged: ' + logged if logged else ''})"
    return "\n".join(lines) + "\n" + footer


def targets(outcomes: Sequence[Outcome]) -> list[str]:
    """One line per row that has a target: met or not."""
    lines = []
    for outcome in outcomes:
        for row in outcome.rows:
            if "target" not in row:
                continue
            verdict = _verdict(row.get("met"))
            ratio = f" (ratio {row['ratio']:.2f}x)" if isinstance(row.get("ratio"), float) else ""
            where = " / ".join(str(p) for p in (outcome.name, row.get("group"), row.get("row"))
                               if p)
            lines.append(f"  {verdict:<10} {where}: {row['target']}{ratio}")
    return lines


# --- files -------------------------------------------------------------------------------------


def write_json(path: Path, meta: dict[str, Any], outcomes: Sequence[Outcome]) -> None:
    """Every row of every scenario, with the machine, as JSON."""
    payload = {"meta": meta, "scenarios": [asdict(o) for o in outcomes]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def plot(path: Path, outcomes: Sequence[Outcome]) -> str:
    """A PNG of the invalidation scaling curves; returns what happened, for the user."""
    rows = [r for o in outcomes if o.name == "invalidation" for r in o.rows]
    if not rows:
        return "--plot: nothing to plot (the invalidation scenario did not run; it needs Redis)"
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return "--plot needs matplotlib: pip install -e '.[plot]'"
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["group"] for r in rows):
        mine = [r for r in rows if r["group"] == name]
        sizes = [r["entries"] for r in mine]
        left.plot(sizes, [r["invalidate_us"] / 1e3 for r in mine], marker="o", label=name)
        right.plot(sizes, [r["bytes_per_entry"] for r in mine], marker="o", label=name)
    left.set(xscale="log", yscale="log", xlabel="tagged entries",
             ylabel="invalidate_tags (ms)", title="Invalidation time (flat is the target)")
    right.set(xscale="log", xlabel="tagged entries", ylabel="bytes per entry",
              title="Redis memory per entry (MEMORY USAGE)")
    for axes in (left, right):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"--plot: wrote {path}"
