"""A plain-text progress bar on stderr, shared by the runner and the scenarios.

The runner opens one *scenario* at a time; a scenario may open *tasks* (``task(label,
total)``) and ``advance()`` them. On a terminal the bar is redrawn in place at most ten times a
second; otherwise (CI logs) one line is printed per task, so logs stay short. Scenarios that do
not report (another team's modules) still show their name and the elapsed time.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "advance", "bar", "task"]

_WIDTH = 24
_REDRAW = 0.1


def _clock(seconds: float) -> str:
    """``m:ss``."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Progress:
    """Overall progress (scenario i of n) refined by the current task's fraction."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.total = 1
        self.index = 0
        self.scenario = ""
        self.label = ""
        self.done = 0
        self.steps = 0
        self._drawn = 0.0
        self._width = 0

    def begin(self, total: int) -> None:
        """Start a run of ``total`` scenarios."""
        self.total = max(1, total)
        self.started = time.monotonic()

    def scenario_started(self, index: int, name: str) -> None:
        """Scenario ``index`` (0-based) called ``name`` is starting."""
        self.index, self.scenario, self.label, self.done, self.steps = index, name, "", 0, 0
        if not self.live:
            self._line(f"[{index + 1}/{self.total}] {name}")
        self.draw(force=True)

    def task(self, label: str, total: int) -> None:
        """A task of the current scenario with ``total`` steps is starting."""
        self.label, self.done, self.steps = label, 0, max(0, total)
        if not self.live:
            self._line(f"    {label} ({_clock(time.monotonic() - self.started)})")
        self.draw(force=True)

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current task are done."""
        self.done = min(self.steps, self.done + steps) if self.steps else self.done
        self.draw()

    def fraction(self) -> float:
        """How much of the whole run is done, 0..1."""
        within = self.done / self.steps if self.steps else 0.0
        return min(1.0, (self.index + within) / self.total)

    def draw(self, force: bool = False) -> None:
        """Redraw the bar in place (terminals only), at most every 0.1 s unless forced."""
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._drawn < _REDRAW:
            return
        self._drawn = now
        filled = int(self.fraction() * _WIDTH)
        task = f" · {self.label}" if self.label else ""
        steps = f" {self.done}/{self.steps}" if self.steps else ""
        text = (f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {self.index + 1}/{self.total} "
                f"{self.scenario}{task}{steps}  {_clock(now - self.started)}")
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def clear(self) -> None:
        """Erase the bar so that other output starts on a clean line."""
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def note(self, text: str) -> None:
        """Print a line of text to the progress stream, above the bar."""
        self.clear()
        self._line(text)
        self.draw(force=True)

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


#: The bar of the current run; scenarios report through :func:`task` and :func:`advance`.
bar = Progress()


def task(label: str, total: int) -> None:
    """Start a task of ``total`` steps on the shared bar."""
    bar.task(label, total)


def advance(steps: int = 1) -> None:
    """Advance the shared bar's current task."""
    bar.advance(steps)
