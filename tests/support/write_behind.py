"""What the write-behind tests share besides the events table: the stream's name, the TTL of
a held entry, and a worker script run as a separate process (a process that exits before any
flush, one killed in the middle of a flush, and the one that delivers what they left)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["HELD", "RESTORED", "run_worker", "stream_of", "ttls"]

HELD = 86_400_000  # ms: a held entry's TTL is above this (30 days)
RESTORED = 66_000  # ms: a restored entry's TTL is at most this (the reader's ttl=60 s + jitter)

WORKER = textwrap.dedent("""
    import contextlib, json, os, signal, sqlite3, sys, time
    import cachedeco

    url, prefix, db, mode, n, batch = sys.argv[1:7]
    reg = cachedeco.Registry(url, prefix=prefix)

    @cachedeco.cached(registry=reg)
    def get_event(event_id: str) -> dict:
        return {}

    queued = False  # set once every call returned: a kill before would lose unreturned calls

    def flush(records):
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn, conn:
            conn.executemany("INSERT INTO events VALUES (?, ?)",
                             [(r["id"], r["v"]) for r in records])
        if mode == "kill-in-flush" and queued:  # the rows are committed, the ack never comes
            os.kill(os.getpid(), signal.SIGKILL)

    @cachedeco.write_behind(get_event, flush=flush, batch_size=int(batch),
                            flush_interval=3600, claim_after=0.5)
    def record_event(event_id: str, v: int) -> dict:
        return {"id": event_id, "v": v}

    if mode in ("queue-and-exit", "kill-in-flush"):
        for i in range(int(n)):
            record_event(f"e{i}", i)
        if mode == "queue-and-exit":
            os._exit(0)
        queued = True
        reg.flush()
    else:  # deliver: what the dead process left, claimed once it has been idle long enough
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            reg.flush()
            if reg.stats().write_behind_pending == 0:  # the stream's length, as last seen
                break
            time.sleep(0.05)
        stats = reg.stats()
        reg.close()
        print(json.dumps({"flushed": stats.write_behind_flushed,
                          "duplicates": stats.write_behind_duplicates}))
""")


def run_worker(tmp_path: Path, url: str, prefix: str, db: Path, *, mode: str, n: int,
               batch: int) -> subprocess.CompletedProcess[str]:
    """Run :data:`WORKER` in ``mode`` ("queue-and-exit", "kill-in-flush" or "deliver") with
    ``n`` records and ``batch_size=batch``, writing to the events table at ``db``."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [url, prefix, db, mode, n, batch]
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=60, check=False)


def stream_of(prefix: str, writer: Any) -> str:
    """The stream of a @write_behind function: an internal key, hash-tagged by its name."""
    return f"{prefix}:~wb:{{{writer.__module__}.{writer.__qualname__}}}"


def ttls(raw: Any, keys: list[str]) -> list[int]:
    """The PTTL of each key (ms)."""
    return [int(raw.pttl(k)) for k in keys]
