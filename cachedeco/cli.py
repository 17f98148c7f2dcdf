"""The operator's command line: ``python -m cachedeco stats|invalidate-tags|clear|inspect``.

Every command takes ``--backend URL`` (default: ``$CACHEDECO_BACKEND``), ``--prefix P``
(default: ``$CACHEDECO_PREFIX`` or ``cachedeco``) and any number of ``--option NAME=VALUE``
(a backend option, as given to the registry: ``--option ssl=true --option
ssl_ca_certs=/etc/ca.pem`` for a cluster over TLS; VALUE is read as JSON when it parses as
JSON, else as a string). Keys are listed with SCAN, never KEYS.
``stats`` shows what the backend holds under the prefix and, per function, the hits, misses
and hit ratio of the whole service (every process adds its counts to ``prefix:~stats`` every
few seconds). A backend that cannot be reached is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from inspect import Parameter, signature
from typing import Any, Final, cast

import orjson
import redis.exceptions

from cachedeco.api.registry import Registry
from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.redis.cluster_plan import plain_tag_key
from cachedeco.backends.redis.urls import redact
from cachedeco.core.codec.crypto import is_encrypted
from cachedeco.core.codec.json import read_bytes
from cachedeco.core.codec.signed_pickle import is_signed_pickle
from cachedeco.core.entry import Entry, decode_entry
from cachedeco.core.keyspace import FAMILIES, KeySpace, escape_glob
from cachedeco.core.stats import by_function, hit_ratio
from cachedeco.errors import CacheError

__all__ = ["backend_options", "main"]

PREVIEW: Final = 400  # characters of a payload shown by inspect
DEFAULT_PREFIX: Final = "cachedeco"
SCAN: Final = 1000  # keys per SCAN step
#: A tag template's placeholder: what a tag name given to invalidate-tags may not contain.
PLACEHOLDER: Final = re.compile(r"\{[A-Za-z_][\w.]*\}")
#: The registry's own arguments (those ``configure`` names): not backend options (the CLI sets
#: what it needs of them).
REGISTRY_ARGUMENTS: Final = frozenset(
    name for name, parameter in signature(Registry.configure).parameters.items()
    if name != "self" and parameter.kind is not Parameter.VAR_KEYWORD)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cachedeco", description="The operator's command line: what the cache holds, "
        "invalidations and one entry's inspection. Every command takes --backend URL "
        "(default: $CACHEDECO_BACKEND), --prefix P (default: $CACHEDECO_PREFIX or "
        "cachedeco) and --option NAME=VALUE (a backend option; VALUE read as JSON when it "
        "parses). Keys are listed with SCAN, never KEYS.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", default=os.environ.get("CACHEDECO_BACKEND"),
                        help="backend URL, e.g. redis://127.0.0.1:6379/0 ($CACHEDECO_BACKEND)")
    common.add_argument("--prefix", default=os.environ.get("CACHEDECO_PREFIX"),
                        help=f"key prefix ($CACHEDECO_PREFIX, default {DEFAULT_PREFIX})")
    common.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a backend option, e.g. ssl=true or ssl_ca_certs=/etc/ca.pem "
                             "(VALUE is JSON when it parses, else a string); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", parents=[common],
                   help="what the backend holds under the prefix, and hits and misses per function")
    tags = sub.add_parser("invalidate-tags", parents=[common], help="invalidate tags")
    tags.add_argument("tags", nargs="+", metavar="TAG",
                      help="a tag as rendered, e.g. product:42 (not a template)")
    tags.add_argument("--yes", action="store_true",  # a script may pass it to every change
                      help="accepted for scripts; invalidate-tags does not ask")
    doing = "delete every entry under the prefix (cachedeco's own keys stay)"
    clear = sub.add_parser("clear", parents=[common], help=doing, description=doing)
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    inspect = sub.add_parser("inspect", parents=[common],
                             help="show one entry, its tags and whether it is still valid")
    inspect.add_argument("key", help="a key, with or without the prefix")
    return parser


def _client(registry: Registry) -> Any:
    """The redis-py client of the default backend, or None on memory://."""
    return getattr(registry.slot("default").backend(), "client", None)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def stats(registry: Registry) -> dict[str, Any]:
    """The keys under the prefix by kind, server memory, and the service's counters."""
    client = _client(registry)
    if client is None:
        return {"prefix": registry.prefix,
                "note": "the memory backend lives inside each process; nothing to inspect"}
    counts: Counter[str] = Counter()
    for raw in client.scan_iter(match=escape_glob(registry.prefix) + ":*", count=SCAN):
        key = _text(raw)
        family = registry.keyspace.family(key)
        if family == "entries":
            kind = "tombstones" if client.getrange(key, 0, 3) == b"cdT:" else "entries"
        else:
            kind = FAMILIES.get(family, "other keys of cachedeco's own")
        counts[kind] += 1
    return {"prefix": registry.prefix, "keys": sum(counts.values()),
            **dict(sorted(counts.items())), "used_memory": _used_memory(client),
            "functions": functions(registry)}


def _used_memory(client: Any) -> str | None:
    """The server's memory in use, or None where the user may not ask (INFO is in
    ``@dangerous``, which an ACL user limited to the prefix lacks)."""
    try:
        info = client.info("memory")
    except redis.exceptions.NoPermissionError:
        return None
    server = info if "used_memory_human" in info else next(iter(info.values()), {})
    return cast(str | None, server.get("used_memory_human"))


def functions(registry: Registry) -> dict[str, dict[str, Any]]:
    """Per function, what every process reported: hits, misses, the hit ratio, and the other
    counters that are not zero (``(registry)``: registry-wide operations)."""
    table = registry.slot("default").backend().tally(registry.keyspace.stats).read()
    out: dict[str, dict[str, Any]] = {}
    for function, counts in sorted(by_function(table).items()):
        hits, misses, stale = (counts.pop(n, 0) for n in ("hits", "misses", "stale_hits"))
        row: dict[str, Any] = {"hits": hits, "misses": misses}
        if stale:
            row["stale_hits"] = stale
        if hits or misses or stale:
            row["hit_ratio"] = round(hit_ratio(hits, stale, misses), 4)
        row.update(sorted((n, v) for n, v in counts.items() if v))
        out[function or "(registry)"] = row
    return out


def inspect(registry: Registry, key: str) -> dict[str, Any]:
    """One entry's envelope, TTL, tags and validity, and a preview of its payload."""
    if not key.startswith(registry.prefix + ":"):
        key = f"{registry.prefix}:{key}"
    backend = registry.slot("default").backend()
    raw = backend.raw(key)
    if raw is None:
        return {"key": key, "found": False}
    entry = raw if isinstance(raw, Entry) else decode_entry(raw)
    client = getattr(backend, "client", None)
    out: dict[str, Any] = {"key": key, "found": True, "marker": entry.marker}
    if entry.is_tombstone:
        out.update(tombstone=True, valid=False)
    if client is not None:
        out["pttl_ms"] = client.pttl(key)
    if entry.soft:
        out["soft_expiry"] = dt.datetime.fromtimestamp(entry.soft, dt.UTC).isoformat()
        out["fresh_for_s"] = round(entry.soft - time.time(), 3)
        if entry.is_held:  # a write-behind record's, not flushed yet
            out["held"] = True
        else:
            out["load_ms"] = round(entry.delta * 1000, 3)
        out["tag_tokens"] = list(entry.tags)
        if client is not None:
            out["tags"] = tags = _tags(client, registry.keyspace, entry.tags)
            out["valid"] = all(t["current"] for t in tags)
    out["value"] = _preview(entry.value)
    return out


def _tags(client: Any, keyspace: KeySpace, tokens: Sequence[str]) -> list[dict[str, Any]]:
    """What each token of an entry stands for: the tag (or function) whose key holds it now,
    or, when no tag key holds it any more (invalidated or expired), an unknown, stale tag."""
    wanted = set(tokens)
    found: dict[str, tuple[str, str]] = {}
    for name, token in _tag_keys(client, keyspace):
        if token in wanted:
            found[token] = name
            if len(found) == len(wanted):
                break
    out: list[dict[str, Any]] = []
    for token in tokens:
        hit = found.get(token)
        out.append({"kind": "function" if hit is not None and hit[0] == "fn" else "tag",
                    "name": None if hit is None else hit[1], "current": hit is not None})
    return out


def _tag_keys(client: Any, keyspace: KeySpace) -> Iterator[tuple[tuple[str, str], str]]:
    """Every tag and function-tag key under the prefix, with the token it holds (SCAN)."""
    for family in ("tag", "fn"):
        match = escape_glob(keyspace.internal) + family + ":*"
        batch: list[str] = []
        for raw in client.scan_iter(match=match, count=SCAN):
            batch.append(_text(raw))
            if len(batch) >= SCAN:
                yield from _tokens(client, keyspace, batch)
                batch = []
        yield from _tokens(client, keyspace, batch)


def _tokens(client: Any, keyspace: KeySpace, keys: list[str]
            ) -> Iterator[tuple[tuple[str, str], str]]:
    if not keys:
        return
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        values = pipe.execute()
    for key, value in zip(keys, values, strict=True):
        name = keyspace.tag_of(plain_tag_key(key))
        if name is not None and value is not None:
            yield name, _text(value)


def _preview(value: Any) -> Any:
    """A payload as the operator may read it: JSON as text, a ``-> bytes`` function's value as
    Python writes bytes, others by their size and kind only (an encrypted one says nothing)."""
    if is_encrypted(value):  # a sensitive function's: only its size is shown
        return f"<{len(value)} bytes, encrypted>"
    if isinstance(value, bytes):
        try:
            text = orjson.dumps(orjson.loads(value)).decode()
        except orjson.JSONDecodeError:
            text = _not_json(value)
        return text if len(text) <= PREVIEW else text[:PREVIEW] + "…"
    return repr(value)[:PREVIEW]


def _not_json(value: bytes) -> str:
    """A payload that is not JSON: a ``-> bytes`` function's, a signed pickle (shown by its
    size: unpickling would run its code), or something else."""
    try:
        return repr(read_bytes(value))
    except ValueError:
        pass
    if is_signed_pickle(value):
        return f"<{len(value)} bytes, signed pickle>"
    return f"<{len(value)} bytes, not JSON>"


def backend_options(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The backend options among a registry's arguments (``settings.CACHEDECO``'s, say)."""
    return {name: value for name, value in settings.items() if name not in REGISTRY_ARGUMENTS}


def _options(given: Sequence[str]) -> dict[str, Any]:
    """``--option NAME=VALUE`` arguments as backend options; ValueError saying what is wrong."""
    options: dict[str, Any] = {}
    for item in given:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"--option {item!r}: give NAME=VALUE, e.g. ssl=true")
        if name in REGISTRY_ARGUMENTS:
            raise ValueError(f"--option {name}: not a backend option (use --backend and "
                             "--prefix; the CLI sets the rest itself)")
        try:
            options[name] = json.loads(text)
        except ValueError:
            options[name] = text
    return options


def main(argv: Sequence[str] | None = None, *,
         options: Mapping[str, Any] | None = None) -> int:
    """Run one command; exit status 0 on success, 1 on a cachedeco error or an unreachable
    backend, 2 on bad usage. ``options``: backend options from code (Django's settings),
    which ``--option`` arguments override."""
    args = _parser().parse_args(argv)
    if not args.backend:
        print("cachedeco: give --backend URL (or set CACHEDECO_BACKEND)", file=sys.stderr)
        return 2
    try:
        chosen = {**(options or {}), **_options(args.option)}
    except ValueError as exc:
        print(f"cachedeco: {exc}", file=sys.stderr)
        return 2
    if args.command == "invalidate-tags":
        templates = [t for t in args.tags if PLACEHOLDER.search(t)]
        if templates:
            print(f"cachedeco: {templates[0]!r} is a tag template, which names no tag: give "
                  "the tag with its values, e.g. 'product:42'", file=sys.stderr)
            return 2
    prefix = args.prefix or DEFAULT_PREFIX
    try:
        registry = Registry(args.backend, prefix=prefix, on_error="raise", **chosen)
        registry.recovery.active = False  # it exits at once: report, keep nothing to retry
        try:
            result = _run(registry, args)
        finally:
            registry.close()
    except BACKEND_ERRORS as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"cachedeco: cannot reach {redact(args.backend)} ({reason})", file=sys.stderr)
        return 1
    except CacheError as exc:
        print(f"cachedeco: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    if result is None:
        return 1
    if args.command == "stats" and not args.prefix:
        print(f"cachedeco: no --prefix given: read the default prefix {prefix!r}, which holds "
              f"{result.get('keys', 'no')} key(s) (pass --prefix or set CACHEDECO_PREFIX)",
              file=sys.stderr)
    return _emit(json.dumps(result, indent=2, default=str))


def _emit(text: str) -> int:
    """Print the result; a reader that stopped reading (``| head``) ends the command quietly,
    status 1, as Python's docs advise (no traceback about the broken pipe)."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        with contextlib.suppress(AttributeError, OSError, ValueError):  # a wrapped stdout
            fileno = sys.stdout.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)  # the flush at exit must not fail
            os.dup2(devnull, fileno)
            os.close(devnull)
        return 1
    return 0


def _run(registry: Registry, args: argparse.Namespace) -> dict[str, Any] | None:
    """One command's result (None: the user declined)."""
    if args.command == "stats":
        return stats(registry)
    if args.command == "inspect":
        return inspect(registry, args.key)
    if args.command == "invalidate-tags":
        registry.invalidate_tags(*args.tags)
        return {"invalidated": args.tags}
    if not args.yes and not _confirm(f"delete every entry under {registry.prefix!r}?"):
        return None
    return {"deleted": registry.clear()}


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"cachedeco: {question} pass --yes to confirm", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
