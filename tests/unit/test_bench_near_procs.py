"""The 4-process Zipf row with the near cache: its rounds' wall-time ratios make its verdict
(met, within noise, not met), every round must load each key once, and the rows shown are
those of the round with the median ratio."""

from __future__ import annotations

from typing import Any

from benchmarks import verdicts
from benchmarks.scenarios.near_procs import _zipf_rows


def _pair(off_wall: float, on_wall: float, loads: int = 100) -> tuple[dict[str, Any], ...]:
    def run(row: str, wall: float, loads: int) -> dict[str, Any]:
        return {"row": row, "wall_s": wall, "loads": loads, "distinct": 100,
                "cmds_per_op": 0.04}

    return run("no near cache", off_wall, 100), run("near_cache on", on_wall, loads)


def test_rounds_all_within_the_target_are_met_and_the_median_round_is_shown() -> None:
    off, on = _zipf_rows([_pair(1.0, 0.30), _pair(2.0, 0.80), _pair(1.0, 0.35)])
    assert on["verdict"] == verdicts.MET
    assert (off["wall_s"], on["wall_s"], on["ratio"]) == (1.0, 0.35, 0.35)
    assert "(rounds: 0.30x, 0.40x, 0.35x)" in on["result"]
    assert verdicts.of_row(on) == verdicts.MET


def test_a_round_beyond_the_target_makes_it_noise_and_all_beyond_not_met() -> None:
    _, on = _zipf_rows([_pair(1.0, 0.30), _pair(1.0, 0.55), _pair(1.0, 0.40)])
    assert verdicts.of_row(on) == verdicts.NOISE
    _, on = _zipf_rows([_pair(1.0, 0.60), _pair(1.0, 0.55), _pair(1.0, 0.70)])
    assert verdicts.of_row(on) == verdicts.NOT_MET


def test_a_round_that_loaded_a_key_twice_is_not_met() -> None:
    _, on = _zipf_rows([_pair(1.0, 0.30), _pair(1.0, 0.30, loads=101), _pair(1.0, 0.30)])
    assert verdicts.of_row(on) == verdicts.NOT_MET
