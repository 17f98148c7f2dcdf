"""Generate the sync twins of cachedeco's asyncio drivers (``python -m tools.unasync``).

The async file is the source of truth; the sync one is derived by plain token rewrites, so
the two never drift apart. ``--check`` exits 1 when a generated file is out of date (CI).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [("cachedeco/_drive_async.py", "cachedeco/_drive_sync.py")]
RULES = [
    (r"\basync def ", "def "),
    (r"\bawait ", ""),
    (r"\basync with ", "with "),
    (r"\basync for ", "for "),
    (r"\babackend\(\)", "backend()"),
    (r"\bwait_async\b", "wait_sync"),
    (r"\bspawn_async\b", "spawn_sync"),
    (r"\basleep\b", "sleep"),
    (r"\bAsyncBackend\b", "Backend"),
]
HEADER = (
    '"""The sync driver of the read-through and write flows.\n\n'
    "GENERATED from ``_drive_async.py`` by ``python -m tools.unasync``: do not edit.\n"
    '"""\n'
)


def unasync(source: str) -> str:
    """The sync twin of an async module's source."""
    body = source.split('"""', 2)[2].lstrip("\n")
    for pattern, replacement in RULES:
        body = re.sub(pattern, replacement, body)
    return HEADER + "\n" + body


def main(argv: list[str]) -> int:
    """Write (or with --check, compare) every generated twin."""
    stale = []
    for source, target in PAIRS:
        text = unasync((ROOT / source).read_text())
        path = ROOT / target
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(target)
        else:
            path.write_text(text)
    for target in stale:
        print(f"{target} is out of date: run python -m tools.unasync", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
