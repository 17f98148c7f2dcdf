#!/usr/bin/env python3
"""A minimal Django project with cachedeco.contrib.django (run from anywhere):

    python examples/django_app/manage.py demo                  # a tour: cache, signals, commit
    python examples/django_app/manage.py migrate --run-syncdb  # then serve it:
    python examples/django_app/manage.py runserver             # GET /products/1/
    python examples/django_app/manage.py cachedeco stats       # the operator CLI

The backend and prefix come from $CACHEDECO_BACKEND (default memory://) and $CACHEDECO_PREFIX
(default shop-django), through settings.CACHEDECO; the SQLite file from $SHOP_DB.
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
