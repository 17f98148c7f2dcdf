"""The exporters behind :mod:`cachedeco.metrics`: Prometheus (one process or many) and
OpenTelemetry. Each imports its third-party package only when used."""
