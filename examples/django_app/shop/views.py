from django.http import Http404, HttpRequest, JsonResponse

from .queries import product_card


def product(request: HttpRequest, product_id: int) -> JsonResponse:
    card = product_card(product_id)
    if card is None:
        raise Http404("no such product")
    return JsonResponse(card)
