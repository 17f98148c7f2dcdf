"""The sync twins are generated from the asyncio sources and must not drift."""

from __future__ import annotations

from pathlib import Path

from tools import unasync


def test_generated_sync_twins_are_up_to_date() -> None:
    assert unasync.main(["--check"]) == 0, "run: python -m tools.unasync"


def test_every_async_directory_has_its_twin() -> None:
    sources = [source for source, _ in unasync.pairs()]
    assert any("backends/redis/_async" in str(s) for s in sources)
    assert any("flows/_async" in str(s) for s in sources)
    assert all(target.parent.name == "_sync" for _, target in unasync.pairs())


def test_rules_rewrite_async_constructs() -> None:
    source = (
        '"""The thing, asyncio flavour."""\n'
        "import redis.asyncio.cluster\n"
        "from x._async.y import AsyncThing\n"
        "async def f(c: AsyncIterator[int]) -> None:\n"
        "    async with x:\n"
        "        await y.abackend().aclose()\n"
        "    async for _ in z:\n"
        "        await asyncio.shield(w())\n"
    )
    out = unasync.unasync(source, "y.py")
    assert out.startswith("# GENERATED from _async/y.py")
    assert "async" not in out.split("\n", 1)[1]
    for expected in ("sync flavour", "import redis.cluster", "from x._sync.y import Thing",
                     "def f(c: Iterator[int])", "with x:", "y.backend().close()",
                     "for _ in z:", "(w())"):
        assert expected in out, expected


def test_a_stale_or_orphaned_twin_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "cachedeco" / "_async" / "m.py"
    source.parent.mkdir(parents=True)
    source.write_text("async def f() -> None:\n    await g()\n")
    orphan = tmp_path / "cachedeco" / "_sync" / "gone.py"
    orphan.parent.mkdir()
    orphan.write_text("")
    assert [t for _, t in unasync.pairs(tmp_path)] == [orphan.parent / "m.py"]
    assert unasync.orphans(tmp_path) == [orphan]
