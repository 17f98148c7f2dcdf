"""The command line's output when its reader goes away: quiet, status 1, whatever stdout is
(a terminal's pipe, or a wrapper such as Django's command output, which has no file)."""

from __future__ import annotations

import sys

import pytest

from cachedeco import cli


class _Gone:
    """A stdout whose reader went away, without ``fileno`` (a wrapper has no file)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_went_away_ends_the_output_quietly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", _Gone())
    assert cli._emit('{"keys": 1}') == 1  # no traceback, no exception


def test_output_that_reaches_its_reader_is_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli._emit('{"keys": 1}') == 0
    assert capsys.readouterr().out == '{"keys": 1}\n'
