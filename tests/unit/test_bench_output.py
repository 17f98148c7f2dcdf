"""The benchmark suite's output: tables within 120 columns, verdicts from the p10-p90 of a
ratio, ratios that cannot read as their target, progress lines with durations and a
heartbeat when stderr is not a terminal, one SVG chart per scenario, the README's table."""

from __future__ import annotations

import io
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from benchmarks import harness, progress, report, svgplot, table, texttable, verdicts
from benchmarks.report import Outcome
from benchmarks.runner import _header

LONG = "cachedeco, sensitive, under the older key after a rotation of the encryption keys"


def _rows() -> list[dict[str, Any]]:
    """Rows as wide as the suite makes them: every known column, notes, unknown keys."""
    base = {"group": "sync, 3 tags, a group with a long name", "row": "raw GET + orjson.loads",
            "baseline": "(baseline)", "median_us": 72.3, "p10_us": 67.2, "p90_us": 1077.1,
            "ratio": 1.0, "cpu_us": 39.9, "cpu_over_base_us": 0.0, "cmds_per_op": 1.0,
            "ops_per_s": 13_800.0, "records_per_s": 52_598.0, "added_latency_us": 117.0,
            "name": "raw GET + orjson.loads"}
    ours = {**base, "row": LONG, "baseline": "raw GET + orjson.loads", "ratio": 1.104,
            "ratio_p10": 1.06, "ratio_p90": 1.15, "target": "<= 1.10x, 1 round trip",
            "target_ratio": 1.10, "met": False, "verdict": verdicts.NOISE, "name": LONG,
            "note": "pickle (its default); a note long enough to need a line of its own " * 3,
            "wall_over_base_us": -10_478.5, "used_memory_delta": 2.4e6, "exponent": 0.08}
    return [base, ours, {**ours, "row": "cachedeco", "name": "cachedeco", "note": "x"}]


def _outcome(rows: list[dict[str, Any]] | None = None, name: str = "redis_hit") -> Outcome:
    return Outcome(name, "ok", rows if rows is not None else _rows(), 12.3)


# --- width and columns -------------------------------------------------------------------------


def test_every_line_of_a_table_and_of_the_targets_fits_120_columns() -> None:
    description = "Redis hit (0 and 3 tags), sync and async, vs raw GET + orjson.loads " * 3
    text = report.table(_outcome(), description)
    lines = text.splitlines() + report.targets([_outcome()])
    assert max(len(line) for line in lines) <= 120
    assert any(line.startswith("== Redis hit") for line in lines)
    assert "took 12.3 s" in text


def test_the_header_and_its_legend_fit_120_columns() -> None:
    meta = {key: "x" * 150 for key in ("date", "nproc", "cpu", "os", "python", "redis_py",
                                       "redis_server", "redis_where", "cachedeco")}
    text = _header({**meta, "quick": False, "peers": {"cashews": "7.6.0"}})
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "within noise" in text and "p10" in text


def test_a_column_repeating_the_row_label_is_not_shown() -> None:
    rows = [{"group": "g", "row": "a", "name": "a", "median_us": 1.0},
            {"group": "g", "row": "b", "name": "g: b", "median_us": 2.0}]
    header = texttable.table_lines(rows)[0]
    assert header.split() == ["row", "median/op"]


def test_groups_head_their_rows_instead_of_a_column() -> None:
    lines = texttable.table_lines([{"group": "sync", "row": "a", "median_us": 1.0},
                                   {"group": "async", "row": "b", "median_us": 1.0}])
    assert [line.split() for line in lines[1:]] == [
        ["sync"], ["a", "1.00", "µs"], [], ["async"], ["b", "1.00", "µs"]]
    assert lines[2].startswith("  a ") and lines[5].startswith("  b ")


def test_columns_that_do_not_fit_are_named_and_notes_become_footnotes() -> None:
    lines = texttable.table_lines(_rows())
    assert any("in --json:" in line and "CPU/op" in line for line in lines)
    assert any(line.strip().startswith("[1] pickle") for line in lines)


def test_headings_name_the_scenario_in_words_and_drop_issue_numbers() -> None:
    numbered = "hits on Redis (iss" "ue 3)"  # split: the repository names no such numbers
    assert texttable.heading("redis_hit", numbered) == [
        "== Redis hit: hits on Redis  (--only redis_hit)"]
    assert texttable.heading("near_cache", "")[0] == "== Near cache  (--only near_cache)"


# --- verdicts and ratios -----------------------------------------------------------------------


def test_a_verdict_uses_p90_for_met_and_p10_for_not_met() -> None:
    assert verdicts.judge(1.02, 1.10, 1.10) == verdicts.MET
    assert verdicts.judge(1.11, 1.30, 1.10) == verdicts.NOT_MET
    assert verdicts.judge(1.06, 1.15, 1.10) == verdicts.NOISE
    assert verdicts.judge(1.6, 2.0, 1.5, at_least=True) == verdicts.MET
    assert verdicts.judge(1.0, 1.4, 1.5, at_least=True) == verdicts.NOT_MET


def test_a_row_vetoed_after_the_ratio_was_judged_is_not_met() -> None:
    assert verdicts.of_row({"target": "t", "verdict": "met", "met": False}) == verdicts.NOT_MET
    noisy = {"target": "t", "verdict": "within noise", "met": False}
    assert verdicts.of_row(noisy) == verdicts.NOISE
    assert verdicts.of_row({"target": "t", "met": True}) == verdicts.MET
    assert verdicts.of_row({"row": "no target"}) is None


def test_the_harness_judges_a_ratio_on_its_spread() -> None:
    base = harness.Variant("raw", lambda n: None)
    ours = harness.Variant("ours", lambda n: None, baseline=base, target=1.10)
    walls = [1.00, 1.05, 1.08, 1.12, 1.15]  # per-round ratios straddle the target
    samples = {base: harness.Samples(1, [1.0] * 5, [1.0] * 5),
               ours: harness.Samples(1, walls, walls)}
    row = harness.rows_for([base, ours], samples)[1]
    assert row["verdict"] == verdicts.NOISE
    assert row["ratio_p10"] < 1.10 < row["ratio_p90"]
    samples[ours] = harness.Samples(1, [1.2, 1.3, 1.25, 1.4, 1.22], [1.0] * 5)
    assert harness.rows_for([base, ours], samples)[1]["verdict"] == verdicts.NOT_MET


def test_a_ratio_never_prints_as_its_target_when_it_differs() -> None:
    assert verdicts.ratio_text(1.104, 1.10) == "1.104x"
    assert verdicts.ratio_text(1.1004, 1.10) == "1.1004x"
    assert verdicts.ratio_text(1.10, 1.10) == "1.100x"
    assert verdicts.spread_text(1.0951, 1.1049, 1.10) == "1.095-1.105"
    line = texttable.target_lines("redis_hit", [{
        "row": "cachedeco", "target": "<= 1.10x", "target_ratio": 1.10, "ratio": 1.1036,
        "ratio_p10": 1.06, "ratio_p90": 1.15, "verdict": verdicts.NOISE}])[0]
    assert "within noise" in line and "1.104x (p10-p90 1.06-1.15)" in line


# --- progress ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_legend_step_durations_and_a_heartbeat() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = progress.Progress(out, clock=clock, live=False, heartbeat=20)
    bar.begin(2, thread=False)
    bar.scenario_started(0, "invalidation")
    bar.task("fill and invalidate", 14)
    bar.advance(3)
    clock.now += 19
    assert not bar.beat()
    clock.now += 2
    assert bar.beat()
    clock.now += 5
    assert not bar.beat()  # a line was printed 5 s ago
    clock.now += 100
    bar.scenario_started(1, "stampede")
    bar.end()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("progress: [m:ss]") and "since the run started" in lines[0]
    assert "[0:21]     still running: invalidation · step fill and invalidate (3/14), for 0:21" \
        in lines
    assert "[2:06]     invalidation · step fill and invalidate: took 126.0 s" in lines
    assert "[2:06] 1/2 invalidation: took 126.0 s" in lines
    assert lines[-1] == "[2:06] 2/2 stampede: took 0.0 s"


def test_a_terminal_gets_no_heartbeat_lines() -> None:
    out, clock = io.StringIO(), FakeClock()
    bar = progress.Progress(out, clock=clock, live=True, heartbeat=20)
    bar.begin(1, thread=False)
    bar.scenario_started(0, "zipf")
    clock.now += 60
    assert not bar.beat()
    assert "still running" not in out.getvalue() and "progress:" not in out.getvalue()


def test_the_heartbeat_thread_writes_to_a_log() -> None:
    out = io.StringIO()
    bar = progress.Progress(out, live=False, heartbeat=0.0)
    bar.begin(1)
    try:
        bar.scenario_started(0, "stampede")
        deadline = time.monotonic() + 10
        while "still running: stampede" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        bar.end()
    assert "still running: stampede" in out.getvalue()


# --- plots and the README's table --------------------------------------------------------------


def test_every_scenario_with_rows_gets_a_chart(tmp_path: Path) -> None:
    sweep = [{"group": lib, "row": f"N = {n}", "entries": n, "invalidate_us": 100.0 * n ** k}
             for lib, k in (("cachedeco", 0.05), ("cashews", 0.8)) for n in (1, 10, 100)]
    stampede = [{"row": "cachedeco", "p99_ms": 14.0}, {"row": "cashews", "p99_ms": 18.3}]
    outcomes = [_outcome(), _outcome(sweep, "invalidation"), _outcome(stampede, "stampede"),
                Outcome("zipf", "skipped")]
    written = report.plot(tmp_path / "plots", outcomes)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "invalidation.svg", "redis_hit.svg", "stampede.svg"]
    assert len(written) == 3
    for path in (tmp_path / "plots").iterdir():
        assert ET.parse(path).getroot().tag.endswith("svg")
    assert svgplot.svg_for("t", [{"row": "a", "label": "text only"}]) is None


def test_the_readme_table_lists_every_target_and_flags_flips(tmp_path: Path) -> None:
    runs = []
    for i, verdict in enumerate((verdicts.MET, verdicts.NOT_MET)):
        rows = _rows()
        rows[1]["verdict"] = verdict
        rows[1]["met"] = verdict == verdicts.MET
        path = tmp_path / f"run{i}.json"
        path.write_text(json.dumps({"meta": {"seconds": 400.0 + i, "date": "d"}, "scenarios": [
            {"name": "redis_hit", "status": "ok", "rows": rows, "seconds": 1.0}]}))
        runs.append(path)
    text = table.markdown(runs)
    body = [line for line in text.splitlines() if line.startswith("| Redis hit")]
    assert len(body) == 2  # both rows with a target, met or not
    assert "flips between runs" in body[0]
    assert "within noise" in body[1]


def test_a_scenario_of_a_later_run_only_names_that_run(tmp_path: Path) -> None:
    paths = []
    for i, name in enumerate(("redis_hit", "soak")):
        rows = _rows() if name == "redis_hit" else [
            {"row": "soak, fds", "target": "last third <= 42", "verdict": verdicts.MET}]
        path = tmp_path / f"run{i}.json"
        path.write_text(json.dumps({"meta": {"seconds": 10.0, "date": "d"}, "scenarios": [
            {"name": name, "status": "ok", "rows": rows, "seconds": 1.0}]}))
        paths.append(path)
    text = table.markdown(paths)
    soak = [line for line in text.splitlines() if line.startswith("| Soak")]
    assert len(soak) == 1
    assert "(run 2: " not in soak[0] and "run 2" in soak[0]
    hits = [line for line in text.splitlines() if line.startswith("| Redis hit")]
    assert hits and all("run 2" not in line for line in hits)
    again = table.markdown([paths[0], paths[1], paths[0]])  # hits in runs 1 and 3 only
    hits = [line for line in again.splitlines() if line.startswith("| Redis hit")]
    assert hits and all("(run 3: " in line and "not run" not in line for line in hits)


def test_a_soak_gauge_shows_its_thirds_and_max() -> None:
    row = {"scenario": "soak", "group": "soak", "row": "rss_mb", "first_third": 60.35,
           "last_third": 72.05, "max": 73.50390625, "met": True,
           "target": "last third <= 77.4 (first third x 1.15 + 8)"}
    assert texttable.result(row) == "first third 60.4, last third 72, max 73.5"
    assert texttable.result({"first_third": 3, "last_third": 4}) == "first third 3, last third 4"
