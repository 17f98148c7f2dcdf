from django.urls import path

from .views import product

urlpatterns = [path("products/<int:product_id>/", product)]
