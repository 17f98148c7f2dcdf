"""The key space: every name cachedeco gives a Redis key, in one place.

Entries are ``prefix:<body>``, and no body starts with ``~`` (the key builder escapes it).
Every key of cachedeco's own is ``prefix:~<family>:…``, so ``clear()`` and
``invalidate_pattern()`` can spare them and an ACL user confined to ``~prefix:*`` reaches
all of them. Names that must share a Redis Cluster slot (a lease and its wake list, a queue
and its dead letters) carry one hash tag.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from cachedeco.errors import ConfigurationError

__all__ = [
    "FAMILIES",
    "RESERVED",
    "KeySpace",
    "LeaseName",
    "QueueNames",
    "check_prefix",
    "escape_glob",
    "hash_tagged",
]

RESERVED: Final = "~"  # what the part after "prefix:" of a key of cachedeco's own starts with
GROUP: Final = "cachedeco"  # the consumer group of every write-behind stream
#: Each family of cachedeco's own keys, by the name after ``prefix:~``, and what the operator's
#: ``stats`` calls them.
FAMILIES: Final = {
    "tag": "tag keys",
    "fn": "function tags",
    "lease": "leases",
    "leasewake": "lease wake lists",
    "lock": "locks",
    "lockwake": "lock wake lists",
    "wb": "write-behind",
    "stats": "service counters",
    "lineage": "lineage counter",
}


@dataclass(frozen=True, slots=True)
class LeaseName:
    """The keys of one lease: the key holding the token and the list its release pushes (and
    its waiting mark, :attr:`mark`), and
    for a ``lock=True`` lease the entry it guards when that entry shares its Cluster slot
    (``""`` otherwise): taking the lease then first looks whether a value landed there."""

    key: str
    wake: str
    entry: str = ""

    @property
    def mark(self) -> str:
        """The key a caller about to block on the wake list sets, so that the release pushes
        to it (in the wake list's slot)."""
        return self.wake + ":waiting"


@dataclass(frozen=True, slots=True)
class QueueNames:
    """The keys of one write-behind function's queue: its stream and its dead letters."""

    stream: str
    dead: str
    group: str = GROUP


def escape_glob(text: str) -> str:
    """Escape Redis glob characters so ``text`` matches only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def check_prefix(prefix: object) -> str:
    """A prefix: non-empty text without whitespace or braces, short enough for hashed keys."""
    if not isinstance(prefix, str) or not prefix or any(
            c.isspace() or c in "{}" for c in prefix):
        raise ConfigurationError(
            f"prefix must be a non-empty string without spaces or braces, not {prefix!r}")
    try:
        size = len(prefix.encode())
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"prefix {prefix!r} is not valid text") from exc
    if size + 2 + 32 > 250:  # room for ":#" and a hashed body in a 250-byte key
        raise ConfigurationError(f"prefix {prefix!r} is too long for 250-byte keys")
    return prefix


def hash_tagged(name: str) -> str:
    """``name`` with a Redis Cluster hash tag, so keys built around it share one slot; distinct
    names give distinct results.

    A name without braces is wrapped whole (``{name}`` hashes like ``name``, so the lease of an
    entry key lands in the entry's slot); one with a tag keeps it, behind ``=``; any other (a
    ``}`` but no tag) is replaced by its digest, behind ``#``.
    """
    start = name.find("{")
    if start >= 0 and name.find("}", start + 1) > start + 1:
        return "=" + name
    if "}" not in name:
        return "{" + name + "}"
    return "#{" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest() + "}"


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The names of one registry's keys, all under ``prefix:``."""

    prefix: str

    @property
    def root(self) -> str:
        """What every key starts with: ``prefix:``."""
        return self.prefix + ":"

    @property
    def internal(self) -> str:
        """What every key of cachedeco's own starts with: ``prefix:~``."""
        return f"{self.prefix}:{RESERVED}"

    def _own(self, family: str, rest: str) -> str:
        return f"{self.prefix}:{RESERVED}{family}:{rest}"

    def tag(self, tag: str) -> str:
        """The key holding a tag's current token (``tag`` already escaped)."""
        return self._own("tag", tag)

    def fn_tag(self, family: str) -> str:
        """The key of a function's implicit tag (``f.invalidate_all()``)."""
        return self._own("fn", family)

    @property
    def fn_tags(self) -> str:
        """A glob matching every function's implicit tag key (on a Cluster too, where a tag
        key's name ends with a hash tag): every entry carries one of them."""
        return f"{escape_glob(self.prefix)}:{RESERVED}fn:*"

    def lease(self, entry_key: str) -> LeaseName:
        """The ``lock=True`` lease of an entry, in the entry's Cluster slot."""
        tagged = hash_tagged(entry_key)
        return LeaseName(self._own("lease", tagged), self._own("leasewake", tagged),
                         "" if tagged.startswith("#") else entry_key)

    def lock(self, name: str) -> LeaseName:
        """The keys of ``cachedeco.lock(name)``."""
        tagged = hash_tagged(name)
        return LeaseName(self._own("lock", tagged), self._own("lockwake", tagged))

    def queue(self, function: str) -> QueueNames:
        """The write-behind stream of a function and its dead letters, in one Cluster slot."""
        stream = self._own("wb", hash_tagged(function))
        return QueueNames(stream, stream + ":dead")

    def tag_of(self, key: str) -> tuple[str, str] | None:
        """``("tag", tag)`` or ``("fn", family)`` for a key :meth:`tag` or :meth:`fn_tag`
        named, else None."""
        for family in ("tag", "fn"):
            head = self._own(family, "")
            if key.startswith(head):
                return family, key[len(head):]
        return None

    @property
    def stats(self) -> str:
        """The hash every process adds its counters to (``cachedeco stats`` reads it)."""
        return f"{self.internal}stats"

    @property
    def lineage(self) -> str:
        """The counter every process adds one to each second: the server lost changes when
        it goes back (:mod:`cachedeco.runtime.lineage`)."""
        return f"{self.internal}lineage"

    def family(self, key: str) -> str:
        """``"entries"`` for an entry key, else the family name of one of our own keys."""
        rest = key[len(self.root):] if key.startswith(self.root) else key
        if not rest.startswith(RESERVED):
            return "entries"
        family = rest[1:].split(":", 1)[0]
        return family if family in FAMILIES else "other"
