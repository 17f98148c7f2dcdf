"""One flavour of the code ``tools/unasync.py`` generates (the asyncio one is the source)."""
