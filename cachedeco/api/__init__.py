"""The public decorators, ``Lock`` and ``Registry``, re-exported by ``cachedeco``."""
