"""Decorated signatures and awaitability survive for mypy: typing_sample.py is checked."""

from __future__ import annotations

import re
from pathlib import Path

from mypy import api as mypy_api

SAMPLE = Path(__file__).parent / "typing_sample.py"


def test_sample_types_check_and_marked_lines_fail() -> None:
    stdout, _, _ = mypy_api.run(["--strict", "--no-error-summary", str(SAMPLE)])
    errors = {int(m.group(1)) for m in re.finditer(r"sample\.py:(\d+): error", stdout)}
    expected = {n for n, line in enumerate(SAMPLE.read_text().splitlines(), 1) if "# E:" in line}
    assert expected, "the sample marks the lines that must fail"
    assert errors == expected, stdout
