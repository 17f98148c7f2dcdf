"""The backend conformance suite, run over every backend."""
