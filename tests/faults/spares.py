"""Worker processes for the fault suite, started ahead and reused from one run to the next.

A :mod:`tests.faults.worker` process takes seconds to import its modules on a busy machine;
:class:`Spares` keeps some ready, waiting for a run's configuration on stdin, and takes back
those that finished a run.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
from pathlib import Path

__all__ = ["Spares", "end", "readline"]

ROOT = Path(__file__).resolve().parents[2]


class Spares:
    """Worker processes started ahead (their imports take seconds on a busy machine), waiting
    for a run's configuration on stdin; each serves one run after another, and a killed one
    is replaced after its run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.made = 0
        self.waiting: list[tuple[subprocess.Popen[str], Path]] = []
        self.fresh: set[subprocess.Popen[str]] = set()  # not yet said "spare"

    def _spawn(self) -> tuple[subprocess.Popen[str], Path]:
        self.made += 1
        log = self.tmp / f"worker-{self.made}.log"
        with log.open("w") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "tests.faults.worker"], cwd=ROOT,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=stderr, text=True)
        self.fresh.add(proc)
        return proc, log

    def refill(self, count: int) -> None:
        """Start workers until ``count`` wait (they import in the background)."""
        while len(self.waiting) < count:
            self.waiting.append(self._spawn())

    def take(self, count: int) -> list[tuple[subprocess.Popen[str], Path]]:
        """``count`` workers with their imports done."""
        self.refill(count)
        taken, self.waiting = self.waiting[:count], self.waiting[count:]
        for proc, log in taken:
            if proc in self.fresh:
                self.fresh.discard(proc)
                line = readline(proc, 60)
                assert line == "spare", f"a worker did not start: {log.read_text()[-3000:]}"
        return taken

    def give_back(self, workers: list[tuple[subprocess.Popen[str], Path]]) -> None:
        """Workers that finished a run, ready for the next."""
        self.waiting[:0] = workers

    def close(self) -> None:
        for proc, _ in self.waiting:
            end(proc, kill=False)
        self.waiting.clear()


def readline(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line a worker prints, or "" when it prints none within ``timeout``."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().strip() if ready else ""


def end(proc: subprocess.Popen[str], *, kill: bool) -> None:
    """End a worker: at once (``kill``), or by closing its stdin; then close its pipes."""
    if kill and proc.poll() is None:
        proc.kill()
    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
