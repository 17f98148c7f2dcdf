"""The embedded default backend: in-process, with leases and a write-behind queue."""
