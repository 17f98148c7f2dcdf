# GENERATED from _async/__init__.py by tools/unasync.py: do not edit.
"""One flavour of the code ``tools/unasync.py`` generates (the asyncio one is the source)."""
