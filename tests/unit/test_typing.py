"""Decorated signatures and awaitability survive for mypy: tests/typing/sample.py is checked.

Lines marked ``# E:`` must fail; a line marked ``# R: TYPE`` must reveal exactly ``TYPE``
(``cachedeco.api.typing.`` left out), so a drift of the revealed types fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

from mypy import api as mypy_api

SAMPLE = Path(__file__).parent.parent / "typing" / "sample.py"


def test_sample_types_check_and_marked_lines_fail() -> None:
    stdout, _, _ = mypy_api.run(["--strict", "--no-error-summary", str(SAMPLE)])
    lines = SAMPLE.read_text().splitlines()
    errors = {int(m.group(1)) for m in re.finditer(r"sample\.py:(\d+): error", stdout)}
    expected = {n for n, line in enumerate(lines, 1) if "# E:" in line}
    assert expected, "the sample marks the lines that must fail"
    assert errors == expected, stdout
    revealed = {int(m.group(1)): m.group(2).replace("cachedeco.api.typing.", "")
                for m in re.finditer(r'sample\.py:(\d+): note: Revealed type is "(.*)"', stdout)}
    wanted = {n: line.split("# R: ", 1)[1].strip() for n, line in enumerate(lines, 1)
              if "# R: " in line}
    assert len(wanted) >= 3, "the sample marks the reveal_type lines it pins"
    assert revealed == wanted, stdout
