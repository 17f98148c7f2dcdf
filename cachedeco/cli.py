"""The operator's command line: ``python -m cachedeco stats|invalidate-tags|clear|inspect``.

Every command takes ``--backend URL`` (default: ``$CACHEDECO_BACKEND``) and ``--prefix P``
(default: ``$CACHEDECO_PREFIX`` or ``cachedeco``). Keys are listed with SCAN, never KEYS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson

from cachedeco.api.registry import Registry
from cachedeco.core.codec.crypto import is_encrypted
from cachedeco.core.entry import Entry, decode_entry
from cachedeco.core.keyspace import FAMILIES, escape_glob
from cachedeco.errors import CacheError

__all__ = ["main"]

PREVIEW = 400  # characters of a payload shown by inspect


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cachedeco", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", default=os.environ.get("CACHEDECO_BACKEND"),
                        help="backend URL, e.g. redis://127.0.0.1:6379/0 ($CACHEDECO_BACKEND)")
    common.add_argument("--prefix", default=os.environ.get("CACHEDECO_PREFIX", "cachedeco"),
                        help="key prefix ($CACHEDECO_PREFIX, default cachedeco)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", parents=[common], help="count what the backend holds under the prefix")
    tags = sub.add_parser("invalidate-tags", parents=[common], help="invalidate tags")
    tags.add_argument("tags", nargs="+", metavar="TAG")
    clear = sub.add_parser("clear", parents=[common], help="delete every key under the prefix")
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    inspect = sub.add_parser("inspect", parents=[common], help="show one entry")
    inspect.add_argument("key", help="a key, with or without the prefix")
    return parser


def stats(registry: Registry) -> dict[str, Any]:
    """Counts of entries, tombstones, tags and other keys under the prefix, plus server info."""
    client = getattr(registry.slot("default").backend(), "client", None)
    if client is None:
        return {"note": "the memory backend lives inside each process; nothing to inspect"}
    counts: Counter[str] = Counter()
    for raw in client.scan_iter(match=escape_glob(registry.prefix) + ":*", count=1000):
        key = raw.decode() if isinstance(raw, bytes) else str(raw)
        family = registry.keyspace.family(key)
        if family == "entries":
            kind = "tombstones" if client.getrange(key, 0, 3) == b"cdT:" else "entries"
        else:
            kind = FAMILIES.get(family, "other keys of cachedeco's own")
        counts[kind] += 1
    info = client.info("memory")
    server = info if "used_memory_human" in info else next(iter(info.values()), {})
    return {"prefix": registry.prefix, **dict(sorted(counts.items())),
            "used_memory": server.get("used_memory_human")}


def inspect(registry: Registry, key: str) -> dict[str, Any]:
    """One entry's envelope, TTL and a preview of its payload."""
    if not key.startswith(registry.prefix + ":"):
        key = f"{registry.prefix}:{key}"
    backend = registry.slot("default").backend()
    raw = backend.raw(key)
    if raw is None:
        return {"key": key, "found": False}
    entry = raw if isinstance(raw, Entry) else decode_entry(raw)
    client = getattr(backend, "client", None)
    out: dict[str, Any] = {"key": key, "found": True, "marker": entry.marker}
    if client is not None:
        out["pttl_ms"] = client.pttl(key)
    if entry.soft:
        out["soft_expiry"] = dt.datetime.fromtimestamp(entry.soft, dt.UTC).isoformat()
        out["fresh_for_s"] = round(entry.soft - time.time(), 3)
        out["load_ms"] = round(entry.delta * 1000, 3)
        out["tag_tokens"] = list(entry.tags)
    out["value"] = _preview(entry.value)
    return out


def _preview(value: Any) -> Any:
    if is_encrypted(value):  # a sensitive function's: only its size is shown
        return f"<{len(value)} bytes, encrypted>"
    if isinstance(value, bytes):
        try:
            text = orjson.dumps(orjson.loads(value)).decode()
        except orjson.JSONDecodeError:
            return f"<{len(value)} bytes, not JSON>"
        return text if len(text) <= PREVIEW else text[:PREVIEW] + "…"
    return repr(value)[:PREVIEW]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit status 0 on success, 1 on a cachedeco error, 2 on bad usage."""
    args = _parser().parse_args(argv)
    if not args.backend:
        print("cachedeco: give --backend URL (or set CACHEDECO_BACKEND)", file=sys.stderr)
        return 2
    try:
        registry = Registry(args.backend, prefix=args.prefix, on_error="raise")
        if args.command == "stats":
            result: Any = stats(registry)
        elif args.command == "inspect":
            result = inspect(registry, args.key)
        elif args.command == "invalidate-tags":
            registry.invalidate_tags(*args.tags)
            result = {"invalidated": args.tags}
        else:
            if not args.yes and not _confirm(f"delete every key under {args.prefix!r}?"):
                return 1
            result = {"deleted": registry.clear()}
        registry.close()
    except CacheError as exc:
        print(f"cachedeco: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"cachedeco: {question} pass --yes to confirm", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
