"""Progress on stderr, shared by the runner and the scenarios.

The runner opens one *scenario* at a time; a scenario may open *steps* (``task(label,
total)``) and ``advance()`` them. On a terminal a bar is redrawn in place (at most ten times a
second, and every second by a background thread so that the clock moves during a long step).
Otherwise (CI logs, a file) the output is a log: a legend first, then one line per scenario and
per step as it starts, one saying how long it took when it ends, and a heartbeat line whenever
nothing was printed for ``heartbeat`` seconds (15 by default), naming the scenario, the step
and how long it has been running. Every log line starts with ``[m:ss]``, the time since the
run started. Scenarios that do not report steps still get their start, heartbeat and duration.
"""

from __future__ import annotations

import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["HEARTBEAT", "Progress", "advance", "bar", "clock_text", "task"]

_WIDTH = 24
WIDTH = 120  # the widest line of a log, but for a scenario's traceback
_REDRAW = 0.1
HEARTBEAT = 15.0  # seconds without a line before a heartbeat (<= 30 s even on a loaded machine)
LEGEND = ("progress: [m:ss] at the start of a line is the time since the run started; each "
          "scenario and step says when it starts and how long it took, and a heartbeat line "
          "follows whenever {beat:g} s pass without output")


def clock_text(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on)."""
    minutes, secs = divmod(int(seconds), 60)
    if minutes >= 60:
        return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


class Progress:
    """Overall progress (scenario i of n) refined by the current step's fraction.

    ``clock`` and ``live`` exist for tests: a fake clock, and a stream that is not a terminal
    even when it claims to be (or the reverse).
    """

    def __init__(self, stream: TextIO | None = None, *, clock: Callable[[], float] | None = None,
                 live: bool | None = None, heartbeat: float = HEARTBEAT) -> None:
        self._stream = stream
        self._live = live
        self.clock = clock if clock is not None else time.monotonic
        self.heartbeat = heartbeat
        self.started = self.clock()
        self.total = 1
        self.index = 0
        self.scenario = ""
        self.scenario_at: float | None = None
        self.label = ""
        self.label_at: float | None = None
        self.done = 0
        self.steps = 0
        self.last_line = self.started
        self._drawn = 0.0
        self._width = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stream(self) -> TextIO:
        """Where progress goes: the stream given, else the current ``sys.stderr``."""
        return self._stream if self._stream is not None else sys.stderr

    @property
    def live(self) -> bool:
        """Whether the stream is a terminal (a bar redrawn in place) rather than a log."""
        if self._live is not None:
            return self._live
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty()) if callable(isatty) else False

    def begin(self, total: int, *, thread: bool = True) -> None:
        """Start a run of ``total`` scenarios (and the heartbeat thread, unless told not to)."""
        self.total = max(1, total)
        self.started = self.last_line = self.clock()
        if not self.live:
            for line in textwrap.wrap(LEGEND.format(beat=self.heartbeat), WIDTH):
                self._line(line, stamp=False)
        if thread and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._beat_loop, name="bench-heartbeat",
                                            daemon=True)
            self._thread.start()

    def end(self) -> None:
        """Close the open step and scenario (saying how long they took); stop the thread."""
        self.scenario_finished()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def scenario_started(self, index: int, name: str) -> None:
        """Scenario ``index`` (0-based) called ``name`` is starting."""
        with self._lock:
            self.scenario_finished()
            self.index, self.scenario, self.label, self.done, self.steps = index, name, "", 0, 0
            self.scenario_at = self.clock()
            if not self.live:
                self._line(f"{index + 1}/{self.total} {name}: started")
            self.draw(force=True)

    def scenario_finished(self) -> None:
        """The current scenario (if any) is over: its last step's and its own durations."""
        with self._lock:
            self._step_finished()
            if self.scenario_at is not None:
                took = self.clock() - self.scenario_at
                self.scenario_at = None
                self.note(f"{self.index + 1}/{self.total} {self.scenario}: took {took:.1f} s")

    def task(self, label: str, total: int) -> None:
        """A step of the current scenario with ``total`` units of work is starting."""
        with self._lock:
            self._step_finished()
            self.label, self.done, self.steps = label, 0, max(0, total)
            self.label_at = self.clock()
            if not self.live:
                self._line(f"    {self.scenario} · step {label}: started")
            self.draw(force=True)

    def _step_finished(self) -> None:
        if self.label_at is not None:
            took = self.clock() - self.label_at
            self.label_at = None
            self.note(f"    {self.scenario} · step {self.label}: took {took:.1f} s")

    def advance(self, steps: int = 1) -> None:
        """``steps`` more units of the current step are done."""
        self.done = min(self.steps, self.done + steps) if self.steps else self.done
        self.draw()

    def fraction(self) -> float:
        """How much of the whole run is done, 0..1."""
        within = self.done / self.steps if self.steps else 0.0
        return min(1.0, (self.index + within) / self.total)

    def beat(self) -> bool:
        """Print a heartbeat line if nothing was printed for ``heartbeat`` seconds (logs
        only); returns whether it did. The background thread calls this every second."""
        with self._lock:
            now = self.clock()
            if self.live or self.scenario_at is None or now - self.last_line < self.heartbeat:
                return False
            where = self.scenario
            running = now - self.scenario_at
            if self.label_at is not None:
                where += f" · step {self.label}"
                running = now - self.label_at
                if self.steps > 1:
                    where += f" ({self.done}/{self.steps})"
            self._line(f"    still running: {where}, for {clock_text(running)}")
            return True

    def _beat_loop(self) -> None:
        while not self._stop.wait(1.0):
            if self.live:
                self.draw(force=True)
            else:
                self.beat()

    def draw(self, force: bool = False) -> None:
        """Redraw the bar in place (terminals only), at most every 0.1 s unless forced."""
        if not self.live:
            return
        with self._lock:
            now = self.clock()
            if not force and now - self._drawn < _REDRAW:
                return
            self._drawn = now
            filled = int(self.fraction() * _WIDTH)
            task = f" · {self.label}" if self.label else ""
            steps = f" {self.done}/{self.steps}" if self.steps else ""
            text = (f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {self.index + 1}/{self.total} "
                    f"{self.scenario}{task}{steps}  {clock_text(now - self.started)}")
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self.stream.write("\r" + text + " " * pad)
            self.stream.flush()

    def clear(self) -> None:
        """Erase the bar so that other output starts on a clean line."""
        with self._lock:
            if self.live and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0

    def note(self, text: str) -> None:
        """Print a line of text to the progress stream, above the bar."""
        with self._lock:
            self.clear()
            self._line(text)
            self.draw(force=True)

    def _line(self, text: str, *, stamp: bool = True) -> None:
        now = self.clock()
        self.last_line = now
        prefix = f"[{clock_text(now - self.started)}] " if stamp else ""
        self.stream.write(prefix + text + "\n")
        self.stream.flush()


#: The bar of the current run; scenarios report through :func:`task` and :func:`advance`.
bar = Progress()


def task(label: str, total: int) -> None:
    """Start a step of ``total`` units on the shared bar."""
    bar.task(label, total)


def advance(steps: int = 1) -> None:
    """Advance the shared bar's current step."""
    bar.advance(steps)
