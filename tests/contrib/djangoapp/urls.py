"""The test app's one route."""

from django.urls import path

from tests.contrib.djangoapp.views import product

urlpatterns = [path("products/<int:product_id>/", product)]
