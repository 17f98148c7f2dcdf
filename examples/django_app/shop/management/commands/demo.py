"""``manage.py demo``: the tables, one product, and what the cache does around its changes."""

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction
from django.test import Client

from shop.models import Product
from shop.queries import product_card


class Command(BaseCommand):
    help = "Create the tables and a product, then read, save and delete it through the cache."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", run_syncdb=True, verbosity=0)
        Product.objects.all().delete()
        kettle = Product.objects.create(name="kettle", price="25.00")
        client = Client()
        url = f"/products/{kettle.pk}/"
        for _ in range(3):
            card = client.get(url).json()
        stats = product_card.stats()
        self.stdout.write(f"GET x3        {card} (hits={stats.hits} misses={stats.misses})")

        kettle.name = "electric kettle"
        kettle.save()  # post_save: product:<pk> and products invalidated
        self.stdout.write(f"after save    {client.get(url).json()['name']} (never the old name)")

        with transaction.atomic():
            kettle.price = "27.50"
            kettle.save()
            inside = client.get(url).json()["price"]
        self.stdout.write(f"in the transaction {inside}, after the commit "
                          f"{client.get(url).json()['price']} (invalidated on commit)")

        kettle.delete()
        self.stdout.write(f"after delete  GET {url} -> {client.get(url).status_code}")
