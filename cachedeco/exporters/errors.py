"""The error an exporter raises when its optional package is missing."""

from __future__ import annotations

from cachedeco.errors import ConfigurationError

__all__ = ["missing"]


def missing(extra: str, exc: ImportError) -> ConfigurationError:
    """``raise missing("prometheus", exc) from exc``: say which extra to install."""
    return ConfigurationError(f"{exc.name or 'a package'} is not installed: "
                              f"pip install 'cachedeco[{extra}]'")
