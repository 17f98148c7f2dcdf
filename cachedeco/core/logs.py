"""The package's log lines: all on logger ``"cachedeco"``; a line about one registry names its
prefix, so a service with several registries (or several services on one log) can tell whose
backend is down, in the text and on the record.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["PREFIX_FIELD", "logger", "say"]

logger: Final = logging.getLogger("cachedeco")
#: The attribute of a log record that holds the registry's prefix (for a handler or a filter
#: that routes by registry, e.g. a JSON formatter's field).
PREFIX_FIELD: Final = "cachedeco_prefix"


def say(prefix: str | None, level: int, message: str, *args: object,
        exc_info: bool = False) -> None:
    """Log ``message % args`` as ``cachedeco[PREFIX]: …`` (``cachedeco: …`` when no
    registry is concerned), with the prefix on the record as :data:`PREFIX_FIELD` (None
    then: every line of the package has the field, so a format may name it)."""
    if prefix is None:
        logger.log(level, "cachedeco: " + message, *args, exc_info=exc_info,
                   extra={PREFIX_FIELD: None})
    else:
        logger.log(level, "cachedeco[%s]: " + message, prefix, *args, exc_info=exc_info,
                   extra={PREFIX_FIELD: prefix})
