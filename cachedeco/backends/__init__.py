"""Backends: the small contracts every backend implements, and their homes (memory, Redis,
Redis Cluster, Sentinel). Imports only ``core`` and ``errors``."""
