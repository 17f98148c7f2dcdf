"""The loop guard: work awaited on a loop as it shuts down, or when the guard is closed first,
once either way."""

from __future__ import annotations

import asyncio

from cachedeco.backends.loop_guard import on_shutdown


def test_the_work_runs_as_asyncio_run_shuts_the_loop_down() -> None:
    done: list[tuple[str, bool]] = []
    kept = []

    async def work() -> None:
        await asyncio.sleep(0)  # it may await: the loop still runs
        done.append(("work", asyncio.get_running_loop().is_closed()))

    async def main() -> None:
        kept.append(on_shutdown(work))
        await asyncio.sleep(0)
        done.append(("main", False))

    asyncio.run(main())
    assert done == [("main", False), ("work", False)]


def test_closing_the_guard_runs_the_work_now_and_not_again() -> None:
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)

    async def main() -> None:
        guard = on_shutdown(work)
        assert runs == []
        await guard.aclose()
        assert runs == [1]

    asyncio.run(main())
    assert runs == [1]


def test_a_guard_per_loop() -> None:
    loops: list[asyncio.AbstractEventLoop] = []
    kept = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def work() -> None:
            loops.append(loop)

        kept.append(on_shutdown(work))

    asyncio.run(main())
    asyncio.run(main())
    assert len(loops) == 2 and loops[0] is not loops[1]
