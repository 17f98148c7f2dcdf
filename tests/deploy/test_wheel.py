"""The built wheel: it holds every package of the source tree, ``py.typed`` and the licence,
and it installs into a clean virtual environment where ``import cachedeco`` and a cached call
on ``memory://`` work, away from the source tree, and where the bare install (no extra, so no
hiredis) serves hits, tags, ``lock=True`` and the near cache on each deployment.

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


@pytest.fixture(scope="module")
def clean_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel and its dependencies only (no extra: no
    hiredis, so redis-py and the near cache parse replies in pure Python); its interpreter."""
    venv = tmp_path_factory.mktemp("clean") / "venv"
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
    return python


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_wheel_installs_and_works_in_a_clean_venv(clean_venv: Path, tmp_path: Path) -> None:
    env = _clean_env()
    done = subprocess.run([str(clean_venv), "-c", PROBE], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["ok", cachedeco.__version__]
    script = subprocess.run([str(clean_venv.parent / "cachedeco"), "--help"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
                            check=False)
    assert script.returncode == 0, script.stderr
    assert "invalidate-tags" in script.stdout


# The bare install against servers: redis-py's pure-Python reply parser on the data
# connections and the near cache's own reader on its change stream (the other tests run
# with hiredis, from the dev extra).
ON_REDIS = """
import asyncio, sys, time
import cachedeco

try:
    import hiredis
except ImportError:
    pass
else:
    sys.exit("hiredis is installed")
reg = cachedeco.Registry(sys.argv[1], prefix=sys.argv[2], near_cache=100, on_error="raise",
                         stats_interval=0)
other = cachedeco.Registry(sys.argv[1], prefix=sys.argv[2], stats_interval=0)
loads = []

@reg.cached(ttl=60, tags=["item:{x}"], lock=True)
def item(x: int) -> dict:
    loads.append(x)
    return {"x": x, "n": len(loads)}

@reg.cached(ttl=60, tags=["item:{x}"])
async def aitem(x: int) -> dict:
    loads.append(-x)
    return {"x": x, "n": len(loads)}

assert item(1) == item(1) == {"x": 1, "n": 1}
assert asyncio.run(aitem(2)) == asyncio.run(aitem(2)) == {"x": 2, "n": 2}
deadline = time.monotonic() + 10
while item.stats().near_hits == 0:  # the change stream is up: a near hit
    assert time.monotonic() < deadline, "no near hit"
    item(1)
    time.sleep(0.01)
other.invalidate_tags("item:1")  # another registry's change reaches the near cache
while item(1) != {"x": 1, "n": 3}:
    assert time.monotonic() < deadline, "the change never arrived"
    time.sleep(0.01)
assert loads == [1, -2, 1], loads
asyncio.run(reg.aclose())
other.close()
print("ok")
"""


@pytest.mark.parametrize("where", ["redis_url", "cluster_url", "sentinel_url"])
def test_the_bare_install_works_on_every_deployment(
        clean_venv: Path, tmp_path: Path, where: str, prefix: str,
        request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(where)
    done = subprocess.run([str(clean_venv), "-c", ON_REDIS, url, prefix], capture_output=True,
                          text=True, cwd=tmp_path, env=_clean_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["ok"]
