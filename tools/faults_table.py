"""The "Faults survived" table, from the fault suite's results file.

``python -m tools.faults_table RESULTS.json`` prints the full table (markdown);
``--write`` replaces the tables between the ``<!-- faults-table:begin -->`` and
``<!-- faults-table:end -->`` markers of README.md (the short table) and docs/faults.md (the
full one, with the run's details). The results file is what ``pytest tests/faults`` writes
(``CACHEDECO_FAULTS_RESULTS``, or ``faults.json`` in pytest's temporary directory).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "render", "replace_between"]

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- faults-table:begin -->", "<!-- faults-table:end -->"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _recover(row: dict[str, Any]) -> str:
    value = row.get("recover_s")
    return "never" if value is None else f"{value:.1f} s"


def _lost(row: dict[str, Any]) -> str:
    text = f"{row['lost']} of {row['returned']:,}"
    return text + (" (promised 0)" if row.get("lost_promised_zero") else "")


CALLS = {"read": "read", "write": "write-through", "invalidate": "invalidate_tags",
         "behind": "write-behind"}
ORDER = ("single", "single + proxy", "sentinel", "cluster")  # rows by deployment, then as run


def _errors(row: dict[str, Any], *, full: bool = True) -> str:
    if not row["errors"]:
        return "0"
    if not full:
        calls = sorted({CALLS.get(k.partition(":")[0], k) for k in row["errors_by_kind"]})
        return f"{row['errors']:,} ({', '.join(calls)})"
    kinds = []
    for name, count in sorted(row["errors_by_kind"].items()):
        call, _, error = name.partition(":")
        kinds.append(f"{count:,} {CALLS.get(call, call)} {error}")
    return f"{row['errors']:,}: " + ", ".join(kinds)


def _rank(row: dict[str, Any]) -> int:
    return ORDER.index(row["deployment"]) if row["deployment"] in ORDER else len(ORDER)


def render(data: dict[str, Any], *, full: bool = False) -> str:
    """The table of ``data`` (a results file's content); ``full`` adds the deployment, stale
    reads during the fault, the kind of the slowest call, notes and the run's details."""
    head = ["fault", "calls", "errors seen by callers", "wrong values",
            "stale reads after recovery", "stale reads within reach", "records lost", "p99",
            "max", "time to recover"]
    if full:
        head[1:1] = ["deployment"]
        head[6:6] = ["stale reads during the fault"]
        head += ["log lines (most in one process)", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(data["rows"], key=_rank):
        cells = [row["fault"], f"{row['calls']:,}", _errors(row, full=full), str(row["wrong"]),
                 str(row["stale_after"]), f"{row.get('within_reach', 0):,}", _lost(row),
                 _ms(row["p99_ms"]), _ms(row["max_ms"]), _recover(row)]
        if full:
            if row.get("max_kind"):
                cells[-2] += f" ({CALLS.get(row['max_kind'], row['max_kind'])})"
            cells[1:1] = [row["deployment"]]
            cells[6:6] = [str(row["stale"] - row["stale_after"])]
            cells += [f"{row.get('logged', 0)} ({row.get('logged_max', 0)})", row.get("notes", "")]
        lines.append("| " + " | ".join(cells) + " |")
    meta = data.get("meta", {})
    plan = meta.get("plan", {})
    lines.append("")
    reach = ("" if "reach" not in meta else
             f"; one is \"within reach\" (not counted as stale) when the near cache of another "
             f"process than the writer's served it less than {meta['reach']} s after every write "
             "it missed returned")
    lines.append(
        f"Run of {meta.get('started', '?')} ({meta.get('mode', '?')} mode, commit "
        f"{meta.get('commit', '?')}): {plan.get('workers', '?')} worker processes at "
        f"{plan.get('rate', '?')} calls/s each over {plan.get('keys', '?')} products; each "
        f"fault held {plan.get('hold', '?')} s; a stale read counts as \"after recovery\" "
        f"when it began {plan.get('grace', '?')} s or more after the heal{reach}.")
    if full:
        lines.append(f"Redis {meta.get('redis_server', '?')}, redis-py "
                     f"{meta.get('redis_py', '?')}, Python {meta.get('python', '?')}, "
                     f"{meta.get('cpus', '?')} CPUs.")
    return "\n".join(lines) + "\n"


def replace_between(text: str, table: str) -> str:
    """``text`` with what lies between the markers replaced by ``table``."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"no {BEGIN} ... {END} markers found")
    return pattern.sub(lambda _: f"{BEGIN}\n{table}{END}", text, count=1)


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.faults_table",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="the fault suite's results (JSON)")
    parser.add_argument("--write", action="store_true",
                        help="update README.md and docs/faults.md instead of printing")
    args = parser.parse_args(argv)
    data = json.loads(args.results.read_text())
    if not args.write:
        sys.stdout.write(render(data, full=True))
        return 0
    for path, full in ((ROOT / "README.md", False), (ROOT / "docs" / "faults.md", True)):
        path.write_text(replace_between(path.read_text(), render(data, full=full)))
        print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
