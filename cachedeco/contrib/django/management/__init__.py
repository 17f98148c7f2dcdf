"""Django's management commands of ``cachedeco.contrib.django``."""
