"""Pure building blocks, no I/O and no redis: the stored envelope, expiry policy, key space,
keys, codecs and counters. Imports nothing above it."""
