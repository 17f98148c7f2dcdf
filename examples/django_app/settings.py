"""Settings of the example project: one app, SQLite, and cachedeco configured from CACHEDECO."""

import os
import tempfile
from pathlib import Path

SECRET_KEY = "example only"  # an example, not a deployment
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
ROOT_URLCONF = "shop.urls"
MIDDLEWARE: list[str] = []
INSTALLED_APPS = ["cachedeco.contrib.django", "shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB",
                               str(Path(tempfile.gettempdir()) / "cachedeco-django-shop.db")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# Every key is an argument of cachedeco.configure(); read when the apps are ready.
CACHEDECO = {
    "backend": os.environ.get("CACHEDECO_BACKEND", "memory://"),
    "prefix": os.environ.get("CACHEDECO_PREFIX", "shop-django"),
    "ttl": 600,
}
