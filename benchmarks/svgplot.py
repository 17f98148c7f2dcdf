"""``--plot DIR``: one SVG chart per scenario, drawn by hand (no plotting dependency).

* Rows with a ``ratio``: horizontal bars of the ratio to the baseline, the p10-p90 whisker
  across each, and a red tick at the row's target (a log axis when ratios span over 20x).
* Rows with ``entries`` (a size sweep, such as tag invalidation): the time against the number
  of entries, one line per library, both axes logarithmic.
* Otherwise: bars of the scenario's main number (waiter p99, records per second, wall time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any, Protocol

from benchmarks.texttable import title as scenario_title

__all__ = ["bars", "lines", "svg_for", "write_all"]

Row = Mapping[str, Any]
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
#: For a chart of bars without ratios: the first key the rows have, its label and unit scale.
METRICS = (("p99_ms", "waiter p99 (ms)"), ("records_per_s", "records per second"),
           ("median_us", "time per operation (µs)"), ("wall_s", "wall time (s)"),
           ("ops_per_s", "operations per second"))


class _Outcome(Protocol):
    name: str
    status: str
    rows: list[dict[str, Any]]


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12,
          colour: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{colour}" font-family="sans-serif">{escape(text)}</text>')


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        _text(width / 2, 20, title, anchor="middle", size=14), *body, "</svg>", ""])


def _ticks(low: float, high: float, log: bool) -> list[float]:
    """Tick values: decades on a log axis, about five round steps on a linear one."""
    if log:
        return [10.0 ** e for e in range(math.floor(math.log10(low)),
                                         math.ceil(math.log10(high)) + 1)]
    step = 10 ** math.floor(math.log10(max(high - low, 1e-12) / 5))
    step *= next(m for m in (1, 2, 5, 10) if (high - low) / (step * m) <= 6)
    return [i * step for i in range(math.floor(low / step), math.ceil(high / step) + 1)]


def _scale(low: float, high: float, log: bool, start: float, end: float
           ) -> tuple[Any, float, float]:
    """A function from values to pixels between ``start`` and ``end``, and the axis ends."""
    ticks = _ticks(low, high, log)
    lo, hi = ticks[0], ticks[-1]
    if log:
        span = math.log10(hi) - math.log10(lo) or 1.0
        return (lambda v: start + (math.log10(max(v, lo)) - math.log10(lo)) / span
                * (end - start)), lo, hi
    return (lambda v: start + (v - lo) / ((hi - lo) or 1.0) * (end - start)), lo, hi


def _label(value: float) -> str:
    return f"{value:g}" if 1e-3 <= abs(value) < 1e6 or value == 0 else f"{value:.0e}"


def bars(title: str, rows: Sequence[Row], key: str, axis: str) -> str:
    """Horizontal bars of ``row[key]`` per row, with p10-p90 whiskers and target ticks."""
    rows = [r for r in rows if isinstance(r.get(key), int | float) and r[key] > 0]
    left, right, top, step = 330, 860, 40, 22
    height = top + step * len(rows) + 50
    values = [r[key] for r in rows] + [r[f"{key}_p90"] for r in rows if f"{key}_p90" in r]
    values += [r["target_ratio"] for r in rows if key == "ratio" and "target_ratio" in r]
    low, high = min(values), max(values)
    log = high / low > 20
    where, lo, hi = _scale(low if log else 0.0, high, log, left, right)
    body = []
    for tick in _ticks(lo, hi, log):
        x = where(tick)
        body += [f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 44}" '
                 f'stroke="#ddd"/>', _text(x, height - 30, _label(tick), anchor="middle")]
    for i, row in enumerate(rows):
        y = top + i * step
        label = " · ".join(str(p) for p in (row.get("group"), row.get("row")) if p)
        colour = COLOURS[0] if str(row.get("row", "")).startswith("cachedeco") else "#999"
        body += [_text(left - 6, y + 14, label[:52], anchor="end", size=11),
                 f'<rect x="{where(lo):.1f}" y="{y + 4}" height="{step - 8}" '
                 f'width="{max(where(row[key]) - where(lo), 1):.1f}" fill="{colour}"/>']
        if f"{key}_p10" in row:
            a, b = where(row[f"{key}_p10"]), where(row[f"{key}_p90"])
            body.append(f'<line x1="{a:.1f}" y1="{y + 11}" x2="{b:.1f}" y2="{y + 11}" '
                        f'stroke="black" stroke-width="1.5"/>')
        if key == "ratio" and "target_ratio" in row:
            x = where(row["target_ratio"])
            body.append(f'<line x1="{x:.1f}" y1="{y + 1}" x2="{x:.1f}" y2="{y + step - 1}" '
                        f'stroke="#d62728" stroke-width="2.5"/>')
    body.append(_text((left + right) / 2, height - 10, axis + (" (log scale)" if log else ""),
                      anchor="middle"))
    return _svg(900, height, title, body)


def lines(title: str, rows: Sequence[Row], x_key: str, y_key: str, axis: str) -> str:
    """One line per group of ``row[y_key]`` against ``row[x_key]``, both axes logarithmic."""
    rows = [r for r in rows if r.get(x_key, 0) > 0 and r.get(y_key, 0) > 0]
    left, right, top, bottom = 80, 620, 40, 360
    xs, ys = [r[x_key] for r in rows], [r[y_key] for r in rows]
    fx, xlo, xhi = _scale(min(xs), max(xs), True, left, right)
    fy, ylo, yhi = _scale(min(ys), max(ys), True, bottom, top)
    body = []
    for tick in _ticks(xlo, xhi, True):
        body += [f'<line x1="{fx(tick):.1f}" y1="{top}" x2="{fx(tick):.1f}" y2="{bottom}" '
                 f'stroke="#ddd"/>', _text(fx(tick), bottom + 16, _label(tick), anchor="middle")]
    for tick in _ticks(ylo, yhi, True):
        body += [f'<line x1="{left}" y1="{fy(tick):.1f}" x2="{right}" y2="{fy(tick):.1f}" '
                 f'stroke="#ddd"/>', _text(left - 6, fy(tick) + 4, _label(tick), anchor="end")]
    for i, group in enumerate(dict.fromkeys(str(r.get("group", "")) for r in rows)):
        mine = [r for r in rows if str(r.get("group", "")) == group]
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{fx(r[x_key]):.1f},{fy(r[y_key]):.1f}" for r in mine)
        body += [f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>',
                 *(f'<circle cx="{fx(r[x_key]):.1f}" cy="{fy(r[y_key]):.1f}" r="3" '
                   f'fill="{colour}"/>' for r in mine),
                 f'<rect x="{right + 20}" y="{top + 20 * i}" width="12" height="12" '
                 f'fill="{colour}"/>', _text(right + 38, top + 20 * i + 11, group or "rows")]
    body += [_text((left + right) / 2, bottom + 36, x_key.replace("_", " ") + " (log scale)",
                   anchor="middle"),
             _text(20, (top + bottom) / 2, axis + " (log scale)", anchor="middle", size=12)
             .replace("<text ", f'<text transform="rotate(-90 20 {(top + bottom) / 2})" ')]
    return _svg(800, 400, title, body)


def svg_for(title: str, rows: Sequence[Row]) -> str | None:
    """The chart that suits a scenario's rows (see the module docstring), or None."""
    if any("entries" in r for r in rows):
        y_key = next((k for k in ("invalidate_us", "median_us", "fill_s")
                      if any(k in r for r in rows)), None)
        if y_key is not None:
            axis = {"invalidate_us": "invalidation time (µs)", "fill_s": "fill time (s)",
                    "median_us": "time per operation (µs)"}[y_key]
            return lines(title, rows, "entries", y_key, axis)
    if any(isinstance(r.get("ratio"), int | float) and "ratio_p10" in r for r in rows):
        return bars(title, rows, "ratio", "wall time over the baseline (bar: median; "
                                          "line: p10-p90; red: target)")
    for key, axis in METRICS:
        if any(isinstance(r.get(key), int | float) for r in rows):
            return bars(title, rows, key, axis)
    return None


def write_all(directory: Path, outcomes: Sequence[_Outcome]) -> list[str]:
    """``directory/<scenario>.svg`` for every scenario with rows to chart; what was done."""
    directory.mkdir(parents=True, exist_ok=True)
    done = []
    for outcome in outcomes:
        if outcome.status != "ok" or not outcome.rows:
            continue
        chart = svg_for(scenario_title(outcome.name), outcome.rows)
        if chart is None:
            done.append(f"--plot: nothing to chart for {outcome.name}")
            continue
        path = directory / f"{outcome.name}.svg"
        path.write_text(chart)
        done.append(f"--plot: wrote {path}")
    return done
