"""Redis backends: commands as data, scripts, and ``_async/`` sources with generated ``_sync/``
twins for the single server, Cluster, Sentinel, leases and queues."""
