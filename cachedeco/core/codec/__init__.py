"""Codecs: a function's return value to bytes and back (:mod:`.factory` picks one)."""
