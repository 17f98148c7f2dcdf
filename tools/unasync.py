"""Generate the sync twins of cachedeco's asyncio drivers (``python -m tools.unasync``).

The async file is the source of truth; the sync one is derived by plain token rewrites, so
the two never drift apart. ``--check`` exits 1 when a generated file is out of date (CI).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [
    ("cachedeco/_drive_async.py", "cachedeco/_drive_sync.py"),
    ("cachedeco/_lease_async.py", "cachedeco/_lease_sync.py"),
]
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
    (r"\b_lease_async\b", "_lease_sync"),
    (r"\bAsyncLeases\b", "Leases"),
    (r"\bAsyncLease\b", "Lease"),
    (r"\bAsyncRun\b", "Run"),
    (r"\baleases_of\b", "leases_of"),
    (r"\bakeep_alive\b", "keep_alive"),
]
HEADER = (
    '"""{title}.\n\n'
    "GENERATED from ``{name}`` by ``python -m tools.unasync``: do not edit.\n"
    '"""\n'
)


def unasync(source: str, name: str = "_drive_async.py") -> str:
    """The sync twin of an async module's source; its docstring's title is the async one's
    (up to a colon) with "asyncio" read as "sync"."""
    _, doc, body = source.split('"""', 2)
    title = doc.strip().splitlines()[0].split(": ")[0].rstrip(".").replace("asyncio", "sync")
    body = body.lstrip("\n")
    for pattern, replacement in RULES:
        body = re.sub(pattern, replacement, body)
    return HEADER.format(title=title, name=name) + "\n" + body


def main(argv: list[str]) -> int:
    """Write (or with --check, compare) every generated twin."""
    stale = []
    for source, target in PAIRS:
        text = unasync((ROOT / source).read_text(), Path(source).name)
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
