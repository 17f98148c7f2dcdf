"""Cached readers: plain data (a dict), tagged by product and by model."""

from typing import Any

import cachedeco

from .models import Product


@cachedeco.cached(ttl=600, key="product:{product_id}", tags=["product:{product_id}", "products"])
def product_card(product_id: int) -> dict[str, Any] | None:
    product = Product.objects.filter(pk=product_id).first()
    if product is None:
        return None
    return {"id": product.pk, "name": product.name, "price": str(product.price)}
