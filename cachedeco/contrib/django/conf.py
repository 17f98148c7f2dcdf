"""``settings.CACHEDECO``: the arguments of ``cachedeco.configure()``, as a dict."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from cachedeco.api.registry import Registry
from cachedeco.api.registry import registry as default_registry
from cachedeco.errors import ConfigurationError

SETTING = "CACHEDECO"


def cachedeco_settings() -> dict[str, Any] | None:
    """``settings.CACHEDECO`` as a dict (None when it is not set), checked to be a dict."""
    value = getattr(settings, SETTING, None)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict of the arguments of "
                                   f"cachedeco.configure(), not {type(value).__name__}")
    return dict(value)


def configure_from_settings(registry: Registry | None = None) -> Registry:
    """Configure `registry` from `settings.CACHEDECO`; the app does it when Django is ready.

    `CACHEDECO = {"backend": "redis://127.0.0.1:6379/0", "prefix": "shop", "ttl": 600}`:
    every key is an argument of [`Registry`][cachedeco.Registry] (`backend`, `backends`,
    `prefix`, `ttl`, `jitter`, `on_error`, `encryption_key`, connection options, …) and those
    left out take their defaults. Without the setting the registry is left as it is.

    Args:
        registry: The registry to configure; `None`: the default registry
            (`cachedeco.registry`, which every decorator without `registry=` uses).

    Returns:
        The registry.

    Raises:
        ImproperlyConfigured: The setting is not a dict, or cachedeco rejects a value in it
            (the registry is then left as it was).
    """
    chosen = default_registry if registry is None else registry
    options = cachedeco_settings()
    if options is None:
        return chosen
    try:
        return chosen.configure(**options)
    except (ConfigurationError, TypeError) as exc:
        raise ImproperlyConfigured(f"settings.{SETTING}: {exc}") from exc
