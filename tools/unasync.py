"""Generate the sync twin of every ``_async/`` directory (``python -m tools.unasync``).

Where sync and async code must differ only by ``await``, the asyncio file is the source of
truth and the sync one is derived from it by token rewrites, as httpcore does: every ``.py``
file of ``X/_async/`` becomes ``X/_sync/`` with the same name. ``--check`` exits 1 when a
generated file is missing, stale or has no source any more (the test command runs it).

The rewrites, in order: ``Async`` before a capital letter goes (``AsyncRedisBackend``
→ ``RedisBackend``), ``async def/with/for`` and ``await`` lose their keyword, module paths
``_async`` become ``_sync``, redis-py's ``redis.asyncio`` becomes ``redis``, the dunder and
``a``-prefixed twins in :data:`A_NAMES` lose their ``a``, and asyncio-only calls in
:data:`CALLS` become their blocking forms.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The directories that hold an ``_async`` source and its generated ``_sync`` twin.
TREES = ("cachedeco", "tests")
#: Names whose asyncio form is the sync name with an ``a`` in front.
A_NAMES = (
    "aacquire", "abackend", "acancel_lost", "aclear", "aclient", "aclose", "adead_letters",
    "acollected", "adrain", "adrop", "afinal", "ahere", "ainvalidate", "akeep", "akeep_drops",
    "aflush", "ahand_over", "ainvalidate_pattern", "ainvalidate_tags", "aiter", "ajoin_flight",
    "akeep_alive", "alock", "amake_registry", "anext", "aowner", "apush", "aqueue", "arelease",
    "areplay_dead_letters", "aschedule", "asend_packed", "asleep", "aspawn", "astop",
    "await_woken",
)
#: asyncio-only calls and their blocking forms.
CALLS = ((r"\basyncio\.shield\(", "("),)
RULES: tuple[tuple[str, str], ...] = (
    (r"Async(?=[A-Z])", ""),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b_async\b", "_sync"),
    (r"\bredis\.asyncio\.", "redis."),
    (r"\bredis\.asyncio\b", "redis"),
    (r"\b__a(enter|exit|iter|next)__\b", r"__\1__"),
    (r"\basyncio flavour\b", "sync flavour"),
    *((rf"\b{name}\b", name[1:]) for name in A_NAMES),
    *CALLS,
)
HEADER = "# GENERATED from _async/{source} by tools/unasync.py: do not edit.\n"


def unasync(source: str, origin: str = "a module") -> str:
    """The sync twin of an asyncio module's source."""
    text = source
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text)
    return HEADER.format(source=origin) + text


def pairs(root: Path = ROOT) -> Iterator[tuple[Path, Path]]:
    """Every ``_async`` source file and the ``_sync`` file generated from it."""
    for tree in TREES:
        for source_dir in sorted((root / tree).rglob("_async")):
            if source_dir.is_dir():
                for source in sorted(source_dir.glob("*.py")):
                    yield source, source_dir.parent / "_sync" / source.name


def orphans(root: Path = ROOT) -> list[Path]:
    """Generated files whose source is gone."""
    wanted = {target for _, target in pairs(root)}
    found = []
    for tree in TREES:
        for sync_dir in (root / tree).rglob("_sync"):
            found += [p for p in sync_dir.glob("*.py") if p not in wanted]
    return sorted(found)


def main(argv: list[str]) -> int:
    """Write (or with --check, compare) every generated twin."""
    check = "--check" in argv
    stale = []
    for source, target in pairs():
        text = unasync(source.read_text(), source.name)
        if check:
            if not target.exists() or target.read_text() != text:
                stale.append(target)
        else:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text)
    for path in orphans():
        if check:
            stale.append(path)
        else:
            path.unlink()
    for path in stale:
        print(f"{path.relative_to(ROOT)} is stale: run python -m tools.unasync", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
