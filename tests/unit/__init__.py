"""Pure tests: no server (keys, codecs, settings, single-flight, pure flows, typing)."""
