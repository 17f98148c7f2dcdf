"""The registry's operations that are not tied to one function: tags, patterns, clear.

A base of :class:`cachedeco.runtime.registry.Registry`, kept apart so that each file holds one
idea: what an invalidation does when the backend answers, and when it does not (it is kept
for auto-recovery, :mod:`cachedeco.runtime.recovery`).
"""

from __future__ import annotations

from collections.abc import Iterable

from cachedeco.backends.base import BACKEND_ERRORS
from cachedeco.backends.open import BackendSlot
from cachedeco.core.entry import new_tag_token
from cachedeco.core.keys.templates import escape_text
from cachedeco.core.keyspace import KeySpace, escape_glob
from cachedeco.core.stats import Stats
from cachedeco.errors import ConfigurationError
from cachedeco.runtime.changes import TAGS
from cachedeco.runtime.guard import Breaker, Guard
from cachedeco.runtime.recovery import Recovery

__all__ = ["Invalidation", "check_tags"]


def check_tags(tags: Iterable[object]) -> None:
    """Each tag to invalidate is a non-empty str (rendered: ``"product:42"``), else a
    ConfigurationError, which names a list passed as one tag."""
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            hint = (" (the tags are separate arguments: invalidate_tags(*tags))"
                    if isinstance(tag, list | tuple | set | frozenset) else "")
            raise ConfigurationError(f"a tag must be a non-empty string, not {tag!r}{hint}")


class Invalidation:
    """Tag, pattern and whole-prefix invalidation over a registry's backends."""

    keyspace: KeySpace
    prefix: str
    tag_ttl: float
    enabled: bool
    recovery: Recovery
    _stats: Stats
    _breakers: dict[str, Breaker]
    _guards: dict[str, Guard]

    def slot(self, name: str) -> BackendSlot:
        """The backend slot called ``name`` (the registry's)."""
        raise NotImplementedError

    def invalidate_tags(self, *tags: str, backend: str = "default") -> None:
        """Make every entry stored with any of `tags` a miss, in every process.

        One round trip for any number of tags, whatever the number of entries: each tag gets
        a new token, and an entry that recorded another token is a miss.

        Args:
            *tags: Tags as rendered (`"user:7"`, not the template `"user:{id}"`).
            backend: The name of the backend whose entries to invalidate.

        Raises:
            BackendError: Under `on_error="raise"`, the backend could not take the
                invalidation now (it is kept and retried all the same: auto-recovery).
        """
        keys = self._to_send(tags, backend)
        if not keys:
            return
        try:
            self.slot(backend).backend().invalidate_tags(keys, new_tag_token(True),
                                                         self._tag_px())
            self._breakers[backend].success()
            self.recovery.recent.note(backend, TAGS, keys, self._tag_px())
        except BACKEND_ERRORS as exc:
            self.recovery.invalidate(backend, keys, self._tag_px(), exc)
            self._guards[backend].kept(exc, action="invalidate tags")

    async def ainvalidate_tags(self, *tags: str, backend: str = "default") -> None:
        """The asyncio form of [`invalidate_tags`][cachedeco.Registry.invalidate_tags]: the
        same arguments."""
        keys = self._counted(tags, backend)
        if not keys:
            return
        if self._breakers[backend].open():  # straight to auto-recovery
            await self.recovery.ainvalidate(backend, keys, self._tag_px(), None)
            self._guards[backend].kept(None, action="invalidate tags")
            return
        try:
            await self.slot(backend).abackend().invalidate_tags(keys, new_tag_token(True),
                                                                self._tag_px())
            self._breakers[backend].success()
            self.recovery.recent.note(backend, TAGS, keys, self._tag_px())
        except BACKEND_ERRORS as exc:
            await self.recovery.ainvalidate(backend, keys, self._tag_px(), exc)
            self._guards[backend].kept(exc, action="invalidate tags")
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled on the way: made again
                self.recovery.invalidate(backend, keys, self._tag_px(), None, failed=False)
            raise

    def _to_send(self, tags: tuple[str, ...], backend: str) -> list[str]:
        """The tag keys an invalidation sends now (see :meth:`_counted`); none when the
        backend's breaker is open: the change went to auto-recovery."""
        keys = self._counted(tags, backend)
        if not keys or not self._breakers[backend].open():
            return keys
        self.recovery.invalidate(backend, keys, self._tag_px(), None)
        self._guards[backend].kept(None, action="invalidate tags")
        return []

    def _counted(self, tags: tuple[str, ...], backend: str) -> list[str]:
        """The tag keys of an invalidation (checked and counted); none when caching is off.
        The backend is looked up (an unknown name is an error) and the registry in use."""
        keys = self._tag_keys(tags)
        if not keys or not self.enabled:
            return []
        self._stats.invalidations += 1
        self.slot(backend)
        self.recovery.ensure()  # the registry is in use: what a spool holds is delivered
        return keys

    def _tag_keys(self, tags: tuple[str, ...]) -> list[str]:
        check_tags(tags)
        # The same escaping as a rendered tag template, so "item:50%" names f("50%")'s tag.
        return [self.keyspace.tag(escape_text(tag)) for tag in dict.fromkeys(tags)]

    def _tag_px(self) -> int:
        return int(self.tag_ttl * 1000)

    def _pattern(self, glob: str) -> str:
        if not isinstance(glob, str) or not glob:
            raise ConfigurationError(f"a pattern must be a non-empty string, not {glob!r}")
        return f"{escape_glob(self.prefix)}:{glob}"

    def invalidate_pattern(self, glob: str, *, backend: str = "default") -> int:
        """Drop the entries whose key after the prefix matches `glob`.

        SCAN and UNLINK in batches within the prefix, never KEYS: O(keys scanned), for ad-hoc
        clean-ups (tags are the cheap way). cachedeco's own keys (`prefix:~…`: tag tokens,
        leases, write-behind queues) are spared.

        Args:
            glob: A Redis glob over the key after `prefix:` (`"analysis:*"`).
            backend: The name of the backend to clean.

        Returns:
            How many entries were dropped.
        """
        pattern = self._pattern(glob)
        if not self.enabled:
            return 0
        self._stats.invalidations += 1
        self.recovery.ensure()  # the registry is in use: what a spool holds is delivered
        try:
            return self.slot(backend).backend().delete_matching(pattern, self.keyspace.internal)
        except BACKEND_ERRORS as exc:
            raise self._guards[backend].error(exc, action="invalidate a pattern") from exc

    async def ainvalidate_pattern(self, glob: str, *, backend: str = "default") -> int:
        """The asyncio form of
        [`invalidate_pattern`][cachedeco.Registry.invalidate_pattern]: the same arguments."""
        pattern = self._pattern(glob)
        if not self.enabled:
            return 0
        self._stats.invalidations += 1
        self.recovery.ensure()  # the registry is in use: what a spool holds is delivered
        try:
            return await self.slot(backend).abackend().delete_matching(pattern,
                                                                       self.keyspace.internal)
        except BACKEND_ERRORS as exc:
            raise self._guards[backend].error(exc, action="invalidate a pattern") from exc

    def clear(self, *, backend: str = "default") -> int:
        """Drop every entry under the prefix (SCAN + UNLINK; never KEYS or FLUSHDB).

        Args:
            backend: The name of the backend to clear.

        Returns:
            How many entries were dropped.
        """
        return self.invalidate_pattern("*", backend=backend)

    async def aclear(self, *, backend: str = "default") -> int:
        """The asyncio form of [`clear`][cachedeco.Registry.clear]: the same arguments."""
        return await self.ainvalidate_pattern("*", backend=backend)
