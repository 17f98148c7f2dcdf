"""``manage.py cachedeco``: the operator CLI with the project's settings."""
