"""scripts/lowest-versions.txt pins, for the tests scripts/test runs on them, exactly the
floors pyproject.toml declares for the runtime dependencies and the extras that hold them:
a floor raised or lowered in one file and not the other fails here."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ("hiredis", "pydantic", "crypto", "prometheus", "otel")  # what .venv-lowest installs
TEST_ONLY = {"opentelemetry-sdk"}  # pinned with its API, floored in the dev extra


def _floors(requirements: list[str]) -> dict[str, Version]:
    floors = {}
    for text in requirements:
        requirement = Requirement(text)
        lows = [Version(spec.version) for spec in requirement.specifier
                if spec.operator == ">="]
        assert len(lows) == 1, f"{text}: one >= floor expected"
        floors[re.sub(r"[-_.]+", "-", requirement.name.lower())] = lows[0]
    return floors


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "scripts" / "lowest-versions.txt").read_text().splitlines():
        pin = line.split("#", 1)[0].strip()
        if pin:
            name, _, version = pin.partition("==")
            pins[name.strip().lower()] = Version(version)
    return pins


def test_the_lowest_versions_are_the_declared_floors() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = _floors(project["dependencies"] + [r for e in EXTRAS for r in extras[e]])
    pins = _pins()
    assert {name: pins.get(name) for name in runtime} == runtime
    dev = _floors(extras["dev"])
    assert {name: pins[name] for name in TEST_ONLY} == {name: dev[name] for name in TEST_ONLY}
    assert set(pins) == set(runtime) | TEST_ONLY
