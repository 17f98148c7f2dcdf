"""The examples run as a user would run them, on memory:// and on Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "repository.py"


@pytest.mark.parametrize("on_redis", [False, True], ids=["memory", "redis"])
def test_repository_example_runs_and_persists_every_event(on_redis: bool,
                                                          redis_url: str) -> None:
    args = [sys.executable, str(EXAMPLE), *([redis_url] if on_redis else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "never the old name" in done.stdout
    assert "1001 events in SQLite" in done.stdout
    assert "pending=0" in done.stdout
