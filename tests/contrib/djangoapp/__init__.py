"""A tiny Django app for tests/contrib/test_django.py: one model, one cached reader, one view."""
