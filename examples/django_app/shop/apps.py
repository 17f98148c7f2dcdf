from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"

    def ready(self) -> None:
        from cachedeco.contrib.django import invalidate_on_save

        from .models import Product

        # A save or a delete (the admin, a shell, a view) drops what the cached readers
        # would otherwise serve until their TTL, once the transaction commits.
        invalidate_on_save(Product, ["product:{pk}", "products"])
