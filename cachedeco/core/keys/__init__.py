"""Cache keys: argument encoding, templates, the key builder and tag sets."""
