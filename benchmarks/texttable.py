"""The text tables of a run: one per scenario, at most :data:`WIDTH` columns wide, and the
list of targets with their verdicts.

A table shows the row label, then only the value columns its rows fill. Sub-tables (a row's
``group``) are headed by the group's name instead of repeating it in a column; notes become
numbered footnotes under the table; targets and verdicts are listed after all the tables, with
the spread they were judged on. When the columns would not fit, the least needed go first
(named under the table: ``--json`` has them all), then long row labels wrap. Known keys (see
:mod:`benchmarks.scenarios`) get a header and a unit; any other key is shown under its name,
its unit read from its suffix (``_us``, ``_ms``, ``_s``, ``_per_s``), unless it only repeats
the row's label.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks import verdicts

__all__ = ["WIDTH", "heading", "result", "table_lines", "target_lines", "time_us", "title"]

WIDTH = 120
Row = Mapping[str, Any]
Cell = Callable[[Row], str]

#: Scenario names in words, for headings; others are spelled from their module name.
TITLES = {
    "memory_hit": "Memory hit", "redis_hit": "Redis hit", "concurrency": "Concurrent callers",
    "miss_store": "Miss and store", "zipf": "Zipf workload", "invalidation": "Tag invalidation",
    "stampede": "Stampede", "write_behind": "Write-behind", "cached_many": "Batched reads",
    "cluster": "Redis Cluster", "near": "Near cache", "soak": "Soak",
}


def title(name: str) -> str:
    """A scenario's name in words: ``redis_hit`` is "Redis hit"."""
    return TITLES.get(name) or name.replace("_", " ").strip().capitalize()


def heading(name: str, description: str, width: int = WIDTH) -> list[str]:
    """``== Redis hit: <what it measures>  (--only redis_hit)``, wrapped to ``width``."""
    words = re.sub(r"\s*\((?:issue|see issue|#)\s*\d+\)", "", description).strip().rstrip(".")
    name_words = title(name)
    text = words[:1].upper() + words[1:] if words.lower().startswith(name_words.lower()) else (
        f"{name_words}: {words}" if words else name_words)
    glue = "\u00a0"  # keeps "(--only name)" on one line
    return [line.replace(glue, " ") for line in textwrap.wrap(
        f"== {text}  (--only{glue}{name})", width, subsequent_indent="   ")]


# --- cells -------------------------------------------------------------------------------------


def time_us(value: float) -> str:
    """Microseconds in the unit that suits them."""
    if value < 10:
        return f"{value:.2f} µs"
    if value < 1000:
        return f"{value:.1f} µs"
    if value < 1e6:
        return f"{value / 1e3:.2f} ms"
    return f"{value / 1e6:.2f} s"


def signed_us(value: float) -> str:
    """``+8.2 µs``, ``-10.48 ms``: a difference, always signed."""
    return ("-" if value < 0 else "+") + time_us(abs(value))


def _span(low: float, high: float) -> str:
    """``61.9-77.2 µs``: one unit for both ends when they share it."""
    left, right = time_us(low), time_us(high)
    unit = right.rpartition(" ")[2]
    if left.endswith(" " + unit):
        return f"{left.rpartition(' ')[0]}-{right}"
    return f"{left}-{right}"


def num(value: Any) -> str:
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


def _bytes(value: float) -> str:
    """Bytes in B, kB, MB or GB (decimal)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def ratio_cell(row: Row) -> str:
    """``1.104x (1.06-1.15)``, or that the row is the baseline."""
    if row.get("baseline") == "(baseline)":
        return "1 (baseline)"
    target = row.get("target_ratio")
    text = verdicts.ratio_text(row["ratio"], target)
    if "ratio_p10" in row:
        text += f" ({verdicts.spread_text(row['ratio_p10'], row['ratio_p90'], target)})"
    return text


#: (header, the key that decides whether the column shows, how to render a cell).
COLUMNS: list[tuple[str, str, Cell]] = [
    ("median/op", "median_us", lambda r: time_us(r["median_us"])),
    ("p10-p90/op", "p10_us", lambda r: _span(r["p10_us"], r["p90_us"])),
    ("ratio (p10-p90)", "ratio", ratio_cell),
    ("CPU/op", "cpu_us", lambda r: time_us(r["cpu_us"])),
    ("CPU over base", "cpu_over_base_us", lambda r: signed_us(r["cpu_over_base_us"])),
    ("wall over base", "wall_over_base_us", lambda r: f"{r['wall_over_base_us']:+.2f} µs"),
    ("cmds/op", "cmds_per_op", lambda r: f"{r['cmds_per_op']:.2f}"),
    ("ops/s", "ops_per_s", lambda r: f"{r['ops_per_s']:,.0f}"),
    ("loads", "loads", lambda r: num(r["loads"])),
    ("distinct", "distinct", lambda r: num(r["distinct"])),
    ("loads/distinct", "loads_per_distinct", lambda r: f"{r['loads_per_distinct']:.3f}"),
    ("errors", "errors", lambda r: num(r["errors"])),
    ("backend errors", "backend_errors", lambda r: num(r["backend_errors"])),
    ("wall", "wall_s", lambda r: f"{r['wall_s']:.2f} s"),
    ("fill", "fill_s", lambda r: f"{r['fill_s']:.2f} s"),
    ("invalidate", "invalidate_us", lambda r: time_us(r["invalidate_us"])),
    ("Δ used_memory", "used_memory_delta", lambda r: _bytes(r["used_memory_delta"])),
    ("B/entry", "bytes_per_entry", lambda r: f"{r['bytes_per_entry']:,.0f}"),
    ("kept after", "kept_bytes", lambda r: _bytes(r["kept_bytes"])),
    ("exact", "exact", lambda r: num(r["exact"])),
    ("exponent", "exponent", lambda r: f"N**{r['exponent']:.2f}"),
]
#: Keys in --json only: shown elsewhere (label, group, notes, targets) or implied by others.
HIDDEN = {"scenario", "group", "row", "baseline", "rounds", "batch", "ratio_p10", "ratio_p90",
          "p90_us", "calls", "callers", "entries", "target", "met", "verdict", "note",
          "target_ratio", "target_over_us", "over_p10_us", "over_p90_us", "result"}
#: Columns left out first when a table is too wide (their values stay in --json).
DROP_FIRST = ("cpu_us", "p10_us", "ops_per_s", "used_memory_delta", "loads_per_distinct",
              "distinct")


def _generic(key: str) -> tuple[str, Cell]:
    """A header and a renderer for a key no column knows, from its suffix."""
    header = key
    render: Cell = lambda row: num(row[key])  # noqa: E731
    if key.endswith("_per_s"):
        header = key[:-6] + "/s"
        render = lambda row: f"{row[key]:,.0f}"  # noqa: E731
    elif key.endswith("_us"):
        header, render = key[:-3], lambda row: time_us(row[key])
    elif key.endswith("_ms"):
        header, render = key[:-3], lambda row: time_us(row[key] * 1e3)
    elif key.endswith("_s"):
        header, render = key[:-2], lambda row: time_us(row[key] * 1e6)
    return header.replace("_per_", "/").replace("_", " "), render


def _cell(render: Cell, key: str, row: Row) -> str:
    """One cell: empty when the row lacks the key, a dash for None."""
    if key not in row:
        return ""
    if row[key] is None:
        return "-"
    try:
        return render(row)
    except (KeyError, TypeError, ValueError):
        return num(row.get(key))


def _repeats_label(key: str, rows: Sequence[Row]) -> bool:
    """Whether a key only repeats each row's label (a ``name`` column equal to ``row``)."""
    for row in rows:
        label, group = str(row.get("row", "")), str(row.get("group", ""))
        if str(row.get(key)) not in (label, group, f"{group}: {label}", f"{group} {label}"):
            return False
    return True


def _columns(rows: Sequence[Row]) -> list[tuple[str, str, Cell]]:
    """The value columns these rows fill, known ones first, then others, then the verdict."""
    known = {key for _, key, _ in COLUMNS} | HIDDEN
    columns = [(h, k, r) for h, k, r in COLUMNS if any(k in row for row in rows)]
    extra = [k for k in dict.fromkeys(k for row in rows for k in row)
             if k not in known and not _repeats_label(k, rows)]
    columns += [(*_generic(k)[:1], k, _generic(k)[1]) for k in extra]
    if any(verdicts.of_row(row) for row in rows):
        columns.append(("verdict", "target", lambda r: verdicts.label(verdicts.of_row(r))))
    return columns


def _notes(rows: Sequence[Row]) -> list[str]:
    """Each row's footnote text: its note, and its baseline when not its group's."""
    bases = {str(r.get("group", "")): str(r.get("row")) for r in rows
             if r.get("baseline") == "(baseline)"}
    found = []
    for row in rows:
        parts = [str(row["note"])] if row.get("note") else []
        base, group = row.get("baseline"), str(row.get("group", ""))
        if base and base != "(baseline)" and group in bases and bases[group] != base:
            parts.insert(0, f"compared with {base}")
        found.append("; ".join(parts))
    return found


def table_lines(rows: Sequence[Row], width: int = WIDTH) -> list[str]:
    """The lines of one table (no heading), none wider than ``width``."""
    grouped = any(row.get("group") for row in rows)
    indent = 2 if grouped else 0
    numbers: dict[str, int] = {}
    labels = []
    for row, note in zip(rows, _notes(rows), strict=True):
        label = str(row.get("row", ""))
        if note:
            label += f" [{numbers.setdefault(note, len(numbers) + 1)}]"
        labels.append(label)
    columns = _columns(rows)
    natural = max(len("row"), *(len(label) for label in labels))
    dropped: list[str] = []
    while True:
        cells = [[_cell(render, key, row) for _, key, render in columns] for row in rows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _, _) in enumerate(columns)]
        room = width - indent - sum(w + 2 for w in widths)
        droppable = [k for k in [*DROP_FIRST, *(k for _, k, _ in reversed(columns))]
                     if k in {k for _, k, _ in columns}
                     and k not in ("median_us", "ratio", "target")]
        if room >= min(natural, 28) or not droppable:
            break
        gone = next(i for i, (_, k, _) in enumerate(columns) if k == droppable[0])
        dropped.append(columns.pop(gone)[0])
    label_w = max(8, min(natural, room))
    lines = [(" " * indent + "row".ljust(label_w) + "".join(
        "  " + h.ljust(w) for (h, _, _), w in zip(columns, widths, strict=True))).rstrip()]
    group: object = None
    for row, label, line in zip(rows, labels, cells, strict=True):
        if grouped and row.get("group") != group:
            if group is not None:
                lines.append("")
            group = row.get("group")
            lines.append(str(group or "(no group)"))
        wrapped = textwrap.wrap(label, label_w, subsequent_indent="  ") or [""]
        first = " " * indent + wrapped[0].ljust(label_w) + "".join(
            "  " + c.ljust(w) for c, w in zip(line, widths, strict=True))
        lines += [first.rstrip(), *(" " * indent + more for more in wrapped[1:])]
    for note, number in numbers.items():
        lines += textwrap.wrap(f"[{number}] {note}", width, initial_indent="   ",
                               subsequent_indent="       ")
    if dropped:
        lines += textwrap.wrap(f"(not shown, to fit {width} columns; in --json: "
                               f"{', '.join(dropped)})", width, initial_indent="   ")
    return [line if len(line) <= width else line[:width - 1] + "…" for line in lines]


# --- targets -----------------------------------------------------------------------------------


def result(row: Row) -> str:
    """What a row measured against its target, in words, with its spread when it has one."""
    if row.get("result"):
        return str(row["result"])
    if "ratio_p10" in row and "target_ratio" in row:
        target = row["target_ratio"]
        return (f"{verdicts.ratio_text(row['ratio'], target)} "
                f"(p10-p90 {verdicts.spread_text(row['ratio_p10'], row['ratio_p90'], target)})"
                + (f", {row['cmds_per_op']:.2f} cmds/op" if "cmds_per_op" in row else ""))
    if "over_p10_us" in row:
        return (f"{row['wall_over_base_us']:+.2f} µs (p10-p90 {row['over_p10_us']:+.2f} to "
                f"{row['over_p90_us']:+.2f} µs)")
    parts = []
    if "exponent" in row:
        parts.append(f"time ~ N**{row['exponent']:.3f}")
    if "loads" in row and "distinct" in row:
        parts.append(f"{row['loads']:,} loads for {row['distinct']:,} distinct keys")
    elif "loads" in row:
        parts.append(f"{num(row['loads'])} load(s)")
    if "p99_ms" in row:
        parts.append(f"waiter p99 {row['p99_ms']} ms")
    for key in ("reads/op", "calls/op"):
        if key in row:
            parts.append(f"{num(row[key])} {key}")
    if "first_third" in row and "last_third" in row:  # a soak's gauge
        parts.append(f"first third {num(row['first_third'])}, last third "
                     f"{num(row['last_third'])}" + (f", max {num(row['max'])}" if "max" in row
                                                    else ""))
    if "ratio" in row and not parts:
        parts.append(verdicts.ratio_text(row["ratio"]))
    return ", ".join(parts)


def target_lines(scenario: str, rows: Sequence[Row], width: int = WIDTH) -> list[str]:
    """One entry per row with a target: verdict, where, result and target, wrapped."""
    lines = []
    for row in rows:
        if "target" not in row and "verdict" not in row:
            continue
        verdict = verdicts.label(verdicts.of_row(row)) or "not judged"
        where = " · ".join(str(p) for p in (title(scenario), row.get("group"), row.get("row"))
                           if p)
        measured = result(row)
        text = f"  {verdict:<12}  {where}: {measured + '; ' if measured else ''}" \
               f"target {row.get('target', '?')}"
        lines += textwrap.wrap(text, width, subsequent_indent=" " * 16)
    return lines
