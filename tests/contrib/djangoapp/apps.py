"""The test app: its products' tags are invalidated from the model's signals."""

from __future__ import annotations

from django.apps import AppConfig

from cachedeco.contrib.django import invalidate_on_save


class ShopConfig(AppConfig):
    name = "tests.contrib.djangoapp"
    label = "shop"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from tests.contrib.djangoapp.models import Product

        invalidate_on_save(Product, ["product:{pk}", "products"])
