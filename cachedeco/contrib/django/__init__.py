"""Django integration (``pip install 'cachedeco[django]'``): add ``"cachedeco.contrib.django"``
to ``INSTALLED_APPS`` and

- configuration from settings: ``CACHEDECO = {"backend": "redis://…", "prefix": "shop",
  "ttl": 600}`` is passed to ``cachedeco.configure()`` when the app registry is ready (every
  key is an argument of :class:`cachedeco.Registry`), and the default registry is closed at
  interpreter exit (which flushes the ``@write_behind`` queues);
- invalidation of tags from model signals: :func:`invalidate_on_save`;
- ``python manage.py cachedeco stats|invalidate-tags|inspect|clear``: the operator CLI with
  the backend and prefix of ``settings.CACHEDECO``.
"""

from cachedeco.contrib.django.conf import configure_from_settings
from cachedeco.contrib.django.signals import invalidate_on_save

__all__ = ["configure_from_settings", "invalidate_on_save"]
