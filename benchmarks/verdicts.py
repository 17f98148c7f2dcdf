"""Verdicts that account for noise, and ratios written with enough digits to be read.

A target is judged on the spread of its measurement, not on the median alone: with the p10
and p90 of a row's per-round ratios (or differences) against its baseline,

* ``met``: the p90 is within the target (nine rounds in ten, at least, were);
* ``not met``: the p10 is beyond it (nine rounds in ten, at least, were not);
* ``within noise``: the target lies between the two; the run cannot tell (run again, on a
  quieter machine, or with more rounds).

A row measured once (a whole workload, a fill) has no spread: it is met or not met.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MET", "NOISE", "NOT_MET", "judge", "label", "of_row", "ratio_text", "spread_text"]

MET, NOT_MET, NOISE = "met", "not met", "within noise"
#: How each verdict is printed in the tables (NOT MET stands out).
LABELS = {MET: "met", NOT_MET: "NOT MET", NOISE: "within noise", None: ""}


def judge(p10: float, p90: float, limit: float, *, at_least: bool = False) -> str:
    """The verdict for a measurement spread ``p10..p90`` against ``limit``.

    Args:
        p10: the 10th percentile of the measurement.
        p90: the 90th percentile.
        limit: the target: at most this (or at least, with ``at_least``).
        at_least: whether higher values are better (a throughput) rather than lower.
    """
    low, high = min(p10, p90), max(p10, p90)
    if at_least:
        return MET if low >= limit else NOT_MET if high < limit else NOISE
    return MET if high <= limit else NOT_MET if low > limit else NOISE


def of_row(row: Mapping[str, Any]) -> str | None:
    """A row's verdict: its ``verdict`` (from the spread), else its ``met`` (one sample).

    A ``met`` a scenario set to False after the harness judged the ratio (a further condition
    such as one round trip per hit failed) turns a ``met`` verdict into ``not met``. None: the
    row has no target, or it was not judged.
    """
    verdict = row.get("verdict")
    met = row.get("met")
    if verdict in (MET, NOT_MET, NOISE):
        return NOT_MET if verdict == MET and met is False else str(verdict)
    if "target" not in row:
        return None
    return MET if met is True else NOT_MET if met is False else None


def label(verdict: str | None) -> str:
    """How a verdict is shown in a table."""
    return LABELS.get(verdict, str(verdict))


def _decimals(value: float) -> int:
    """Digits after the point for a ratio of this size."""
    size = abs(value)
    return 3 if size < 10 else 1 if size < 100 else 0


def _fixed(value: float, decimals: int, target: float | None) -> str:
    """``value`` with ``decimals`` digits, more while it would print as ``target`` does without
    being equal to it (so that 1.104 never reads "1.10" beside a target of 1.10)."""
    while (target is not None and value != target and decimals < 6
           and f"{value:.{decimals}f}" == f"{target:.{decimals}f}"):
        decimals += 1
    return f"{value:.{decimals}f}"


def ratio_text(value: float, target: float | None = None) -> str:
    """``1.104x``: three decimals below 10 (more if it would read as the target), fewer above.

    Args:
        value: the ratio.
        target: the target it is compared with, if any.
    """
    return _fixed(value, _decimals(value), target) + "x"


def spread_text(p10: float, p90: float, target: float | None = None) -> str:
    """``1.06-1.15``: a p10-p90 range of ratios, two decimals below 10 (more near the target).

    Args:
        p10: the 10th percentile.
        p90: the 90th percentile.
        target: the target the range is judged against, if any.
    """
    def end(value: float) -> str:
        return _fixed(value, max(0, _decimals(value) - 1) if abs(value) < 10 else
                      _decimals(value), target)

    return f"{end(p10)}-{end(p90)}"
