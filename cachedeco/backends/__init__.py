"""Backends: one small Protocol (``base``), the embedded memory backend and Redis."""
