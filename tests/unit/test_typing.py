"""Decorated signatures and awaitability survive for mypy and pyright: typing_sample.py is
checked by both.

Lines marked ``# E:`` must fail; the ``reveal_type`` line under ``# R: TYPE`` must reveal
exactly ``TYPE`` to mypy, under ``# P: TYPE`` to pyright (``cachedeco.api.typing.`` left
out), so a drift of the revealed types fails too.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from mypy import api as mypy_api

SAMPLE = Path(__file__).parent / "typing_sample.py"
LINES = SAMPLE.read_text().splitlines()


def marked(tag: str) -> dict[int, str]:
    """The lines (1-based) marked ``# TAG: text``, with the text; a mark on a comment line
    of its own is about the next line of code."""
    found = {}
    for n, line in enumerate(LINES, 1):
        if f"# {tag}: " in line:
            target = n
            while LINES[target - 1].lstrip().startswith("#"):
                target += 1
            found[target] = line.split(f"# {tag}: ", 1)[1].strip()
    return found


def test_sample_types_check_and_marked_lines_fail() -> None:
    stdout, _, _ = mypy_api.run(["--strict", "--no-error-summary", str(SAMPLE)])
    errors = {int(m.group(1)) for m in re.finditer(r"sample\.py:(\d+): error", stdout)}
    expected = set(marked("E"))
    assert expected, "the sample marks the lines that must fail"
    assert errors == expected, stdout
    revealed = {int(m.group(1)): m.group(2).replace("cachedeco.api.typing.", "")
                for m in re.finditer(r'sample\.py:(\d+): note: Revealed type is "(.*)"', stdout)}
    assert len(marked("R")) >= 3, "the sample marks the reveal_type lines it pins"
    assert revealed == marked("R"), stdout


def test_pyright_agrees() -> None:
    run = subprocess.run([sys.executable, "-m", "pyright", "--outputjson", str(SAMPLE)],
                         capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(run.stdout)
    diagnostics = report["generalDiagnostics"]
    errors = {d["range"]["start"]["line"] + 1 for d in diagnostics if d["severity"] == "error"}
    assert errors == set(marked("E")), run.stdout
    revealed = {}
    for d in diagnostics:
        found = re.fullmatch(r'Type of ".*" is "(.*)"', d["message"])
        if d["severity"] == "information" and found:
            revealed[d["range"]["start"]["line"] + 1] = found.group(1)
    assert len(marked("P")) >= 3
    assert revealed == marked("P"), run.stdout
