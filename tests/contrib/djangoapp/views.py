"""A cached reader (counting its loads) and the view that serves it."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, JsonResponse

import cachedeco
from tests.contrib.djangoapp.models import Product

LOADS: list[int] = []


@cachedeco.cached(ttl=60, key="product:{product_id}", tags=["product:{product_id}", "products"])
def product_card(product_id: int) -> dict[str, Any]:
    LOADS.append(product_id)
    product = Product.objects.get(pk=product_id)
    return {"id": product.pk, "name": product.name}


def product(request: HttpRequest, product_id: int) -> JsonResponse:
    try:
        return JsonResponse(product_card(product_id))
    except Product.DoesNotExist:
        raise Http404("no such product") from None
