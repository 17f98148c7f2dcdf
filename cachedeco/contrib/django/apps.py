"""The Django app ``cachedeco.contrib.django`` (label ``cachedeco``)."""

from __future__ import annotations

import atexit

from django.apps import AppConfig

from cachedeco.api.registry import registry
from cachedeco.contrib.django.conf import configure_from_settings


class CachedecoConfig(AppConfig):
    """Configures the default registry from ``settings.CACHEDECO`` once the apps are ready, and
    closes it at interpreter exit (Django has no shutdown signal)."""

    name = "cachedeco.contrib.django"
    label = "cachedeco"
    verbose_name = "cachedeco"

    def ready(self) -> None:
        configure_from_settings()
        atexit.register(registry.close)
