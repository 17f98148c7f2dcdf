"""``@write_behind`` (being built)."""

from __future__ import annotations

from typing import Any

from cachedeco.errors import ConfigurationError


def write_behind(target: Any = None, **kwargs: Any) -> Any:
    """Not available yet."""
    raise ConfigurationError("write_behind is not available yet")
