"""The built wheel: it holds every package of the source tree, ``py.typed`` and the licence,
and it installs into a clean virtual environment where ``import cachedeco`` and a cached call
on ``memory://`` work, away from the source tree.

``scripts/test`` builds the wheel once (its packaging step) and names it in
``$CACHEDECO_TEST_WHEEL``; run alone, this module builds one into a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import cachedeco

ROOT = Path(__file__).resolve().parents[2]

# Run by the clean venv's interpreter, from a directory outside the source tree.
PROBE = """
import pathlib, sys
import cachedeco

calls = []

@cachedeco.cached(ttl=60)
def square(x: int) -> int:
    calls.append(x)
    return x * x

cachedeco.configure("memory://", prefix="wheel")
assert [square(3), square(3), square(4)] == [9, 9, 16], "values"
assert calls == [3, 4], calls
package = pathlib.Path(cachedeco.__file__).parent
assert pathlib.Path(sys.prefix) in package.parents, package
assert (package / "py.typed").is_file()
import cachedeco.metrics, cachedeco.cli  # the optional-extra modules import without extras
print("ok", cachedeco.__version__)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    given = os.environ.get("CACHEDECO_TEST_WHEEL")
    if given:
        yield Path(given)
        return
    out = tmp_path_factory.mktemp("dist")
    # The sdist, then the wheel from it (as scripts/test does): nothing is written into the
    # source tree, where a wheel built directly would leave build/.
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(ROOT)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("cachedeco-*.whl")
    yield built


def source_packages() -> set[str]:
    return {str(init.parent.relative_to(ROOT)).replace(os.sep, "/")
            for init in (ROOT / "cachedeco").rglob("__init__.py")}


def test_wheel_holds_every_package_the_marker_and_the_licence(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names
                        if n.endswith(".dist-info/METADATA"))
    packages = {name.rsplit("/", 1)[0] for name in names if name.endswith("/__init__.py")}
    assert "cachedeco/backends/redis/_sync" in packages
    assert packages == source_packages()
    assert "cachedeco/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "Typing :: Typed" in metadata
    assert not {n for n in names if n.startswith(("tests/", "benchmarks/", "tools/"))}


def test_wheel_installs_and_works_in_a_clean_venv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    # This environment's pip installs into the new one: the wheel and its dependencies, from
    # the configured index (or pip's cache), nothing from the source tree.
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
         "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["ok", cachedeco.__version__]
    script = subprocess.run([str(venv / "bin" / "cachedeco"), "--help"], capture_output=True,
                            text=True, cwd=tmp_path, env=env, timeout=120, check=False)
    assert script.returncode == 0, script.stderr
    assert "invalidate-tags" in script.stdout
