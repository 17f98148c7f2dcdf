"""The sync drivers are generated from the async ones and must not drift."""

from __future__ import annotations

from tools import unasync


def test_generated_sync_twins_are_up_to_date() -> None:
    assert unasync.main(["--check"]) == 0, "run: python -m tools.unasync"


def test_rules_rewrite_async_constructs() -> None:
    source = '"""doc"""\nasync def f():\n    async with x:\n        await y.abackend()\n'
    out = unasync.unasync(source)
    assert "async" not in out.split('"""', 2)[2]
    assert "with x:" in out and "y.backend()" in out
