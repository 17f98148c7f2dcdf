"""The one model of the test app."""

from __future__ import annotations

from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=100)

    class Meta:
        app_label = "shop"
