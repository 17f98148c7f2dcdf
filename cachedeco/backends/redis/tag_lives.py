"""What this process knows of its tag keys' remaining lifetimes, so a store need not ask.

Every store extends the tag keys its entry carries when they have less left than the entry
(see scripts.STORE), which takes a ``PTTL`` per tag key. The script returns what each tag key
has left after it ran; kept here, that lets later stores skip the question while the answer
still holds. It can only be too low, never too high: an invalidation gives a tag key a new
token with a whole lifetime, an extension only lengthens one (``PEXPIRE … GT``), and a tag key
that is gone (expired, evicted, deleted) is created again by the store that finds it missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["TagLives", "stored"]

#: How many tag keys are remembered before the memory starts over (a fresh start only costs
#: one ``PTTL`` per tag key and store, as without it).
LIMIT: Final = 10_000
#: Seconds of lifetime a tag key must have beyond what a store needs for the check to be
#: skipped (the memory is kept from a clock reading taken before the store was sent).
MARGIN: Final = 1.0


class TagLives:
    """Tag key -> the monotonic time before which it is known to exist."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def checks(self, tag_keys: Sequence[str], need_ms: int, now: float) -> str:
        """The STORE script's per-tag flags: "1" asks for the tag key's lifetime, "0" skips
        it (known to outlast ``need_ms`` from ``now``); "" when every tag key is to be asked."""
        until = self._until
        if not until:
            return ""
        need = now + need_ms / 1000 + MARGIN
        if len(tag_keys) == 1:  # the common case: the function's own tag only
            return "0" if until.get(tag_keys[0], 0.0) >= need else ""
        flags = "".join(["0" if until.get(tag, 0.0) >= need else "1" for tag in tag_keys])
        return "" if "0" not in flags else flags

    def note(self, tag_keys: Sequence[str], reply: Any, sent: float) -> None:
        """Keep what a STORE reply says each tag key had left (ms), measured no earlier than
        ``sent``, the monotonic time the store was sent; -1 (not asked, or not answered)
        leaves what was known, as a tag key's lifetime only grows."""
        if not isinstance(reply, list) or len(reply) != len(tag_keys) + 1:
            return
        until = self._until
        if len(until) > LIMIT:
            until.clear()
        for tag, left in zip(tag_keys, reply[1:], strict=True):
            if isinstance(left, int) and left > 0:
                until[tag] = max(until.get(tag, 0.0), sent + left / 1000)


def stored(reply: Any) -> bool:
    """Whether a STORE reply says the entry was stored (1, or the list of tag lifetimes)."""
    return bool(reply[0]) if isinstance(reply, list) else bool(reply)

