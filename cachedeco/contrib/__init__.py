"""Framework integrations, each behind its own extra and imported only when used
(``import cachedeco`` imports none of them):

- :mod:`cachedeco.contrib.starlette`: an ASGI lifespan that configures a registry at start-up
  and flushes and closes it at shutdown (FastAPI, Starlette and any ASGI framework with a
  lifespan; needs no extra).
- :mod:`cachedeco.contrib.fastapi`: per-request dependencies, the registry and a collector of
  tags to invalidate (``pip install 'cachedeco[fastapi]'``).
- :mod:`cachedeco.contrib.django`: configuration from ``settings.CACHEDECO``, tag invalidation
  from model signals, and ``manage.py cachedeco`` (``pip install 'cachedeco[django]'``).
"""
