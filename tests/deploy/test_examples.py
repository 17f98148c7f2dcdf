"""The examples run as a user would run them, on memory:// and on Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "repository.py"


@pytest.mark.parametrize("on_redis", [False, True], ids=["memory", "redis"])
def test_repository_example_runs_and_persists_every_event(on_redis: bool,
                                                          redis_url: str) -> None:
    args = [sys.executable, str(EXAMPLE), *([redis_url] if on_redis else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "never the old name" in done.stdout
    assert "1001 events in SQLite" in done.stdout
    assert "pending=0" in done.stdout


def run_example(*args: str, env: dict[str, str] | None = None) -> str:
    """The example's stdout, once it exited with status 0."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout


# The framework examples run on Redis only: on memory:// they run the same code, and each
# run costs seconds of interpreter and framework start-up.
def test_fastapi_example_tour(redis_url: str, prefix: str) -> None:
    out = run_example(str(EXAMPLES / "fastapi_app.py"), redis_url,
                      env={"CACHEDECO_PREFIX": prefix})
    assert "(1 query)" in out
    assert "electric kettle (the write-through stored it" in out
    assert "after prices 27.5 " in out
    assert "3 recorded, 0 written so far" in out
    assert "3 views written by the lifespan's flush" in out


def test_django_example_demo_and_management_command(redis_url: str, prefix: str,
                                                    tmp_path: Path) -> None:
    manage = str(EXAMPLES / "django_app" / "manage.py")
    env = {"SHOP_DB": str(tmp_path / "shop.db"), "CACHEDECO_PREFIX": prefix,
           "CACHEDECO_BACKEND": redis_url}
    out = run_example(manage, "demo", env=env)
    assert "(hits=2 misses=1)" in out
    assert "after save    electric kettle" in out
    assert "in the transaction 25.00, after the commit 27.50" in out
    assert "-> 404" in out
    stats = json.loads(run_example(manage, "cachedeco", "stats", env=env))
    assert stats["prefix"] == prefix
    assert stats["functions"]["shop.queries.product_card"]["hits"] == 3
    assert json.loads(run_example(manage, "cachedeco", "invalidate-tags", "products",
                                  env=env)) == {"invalidated": ["products"]}
