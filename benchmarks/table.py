"""``python -m benchmarks.table RUN.json [MORE.json ...]``: the README's performance table.

Reads the ``--json`` of one or more runs of ``python -m benchmarks`` and prints a Markdown
table with a line per target, met or not: the scenario, the row, what was measured (with its
p10-p90 spread when it has one), the target and the verdict. Given several runs (the same
suite run again), a row shows every run's result, and a verdict that differs between runs
says that it flips. The README's table is this output, so it can be regenerated.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import progress, texttable, verdicts

__all__ = ["main", "markdown"]

Row = dict[str, Any]


def _load(path: Path) -> tuple[dict[str, Any], list[tuple[str, Row]]]:
    """A run's meta and its rows that have a target, with their scenario."""
    data = json.loads(path.read_text())
    rows = [(s["name"], row) for s in data.get("scenarios", []) if s.get("status") == "ok"
            for row in s.get("rows", []) if "target" in row or "verdict" in row]
    meta = dict(data.get("meta", {}))
    meta["stopped"] = any(s.get("status") == "interrupted" for s in data.get("scenarios", []))
    return meta, rows


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _short(row: Row) -> str:
    """A row's result in a few characters, for the second and later runs."""
    if "ratio_p10" in row and "target_ratio" in row:
        return verdicts.ratio_text(row["ratio"], row["target_ratio"])
    if "wall_over_base_us" in row:
        return f"{row['wall_over_base_us']:+.2f} µs"
    return texttable.result(row).split(" (")[0].split(";")[0]


def _verdict(found: Sequence[str | None]) -> str:
    """One verdict, or every run's when they differ."""
    words = [verdicts.LABELS.get(v, "not judged").lower() if v else "not judged" for v in found]
    if len(set(words)) == 1:
        return f"**{words[0]}**" if words[0] == "not met" else words[0]
    return " / ".join(words) + ": flips between runs"


def markdown(paths: Sequence[Path]) -> str:
    """The Markdown table (and a line on where it comes from) for these ``--json`` files."""
    runs = [_load(path) for path in paths]
    keys: dict[tuple[str, str, str], list[Row | None]] = {}
    for index, (_, rows) in enumerate(runs):
        for scenario, row in rows:
            key = (scenario, str(row.get("group", "")), str(row.get("row", "")))
            keys.setdefault(key, [None] * len(runs))[index] = row
    ran = [{scenario for scenario, _ in rows} for _, rows in runs]
    lines = []
    for number, (meta, _) in enumerate(runs, start=1):
        took = progress.clock_text(float(meta.get("seconds", 0.0)))
        quick = (", --quick" if meta.get("quick") else "") + (
            ", interrupted" if meta.get("stopped") else "")
        where = str(meta.get("redis_where", "?")).split(" on ")[0].split(", started")[0]
        lines.append(f"Run {number}: {meta.get('date', '?')}, {took} in all{quick}; "
                     f"Redis: {where}.  ")
    lines += ["", "| scenario | row | result | target | verdict |", "|---|---|---|---|---|"]
    for (scenario, group, label), found in keys.items():
        present = [row for row in found if row is not None]
        first = present[0]
        measured = texttable.result(first)
        if found[0] is None:  # a scenario of a later run only (e.g. the soak, run apart)
            only = next(i for i, row in enumerate(found, start=1) if row is not None)
            measured = f"{measured} (run {only})" if measured else f"run {only}"
        elif len(runs) > 1 and any(row is not None for row in found[1:]):
            # The later runs that ran this scenario (a run of other scenarios says nothing).
            later = [n for n in range(1, len(runs)) if scenario in ran[n]]
            others = [_short(other) if (other := found[n]) is not None else "not run"
                      for n in later]
            numbers = ", ".join(str(n + 1) for n in later)
            measured += f" (run{'s' if len(later) > 1 else ''} {numbers}: {', '.join(others)})"
        where = ", ".join(p for p in (group, label) if p)
        verdict = _verdict([verdicts.of_row(row) for row in present])  # runs that had it
        lines.append(f"| {_cell(texttable.title(scenario))} | {_cell(where)} | {_cell(measured)}"
                     f" | {_cell(first.get('target', ''))} | {verdict} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table for the files named on the command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.table",
                                     description="The README's performance table from the "
                                                 "--json of one or more runs.")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN.json")
    args = parser.parse_args(argv)
    print(markdown(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
