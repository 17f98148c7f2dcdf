"""The flows of a decorated call: binding, read-through, leases, write-behind delivery;
``_async/`` sources with generated ``_sync/`` twins."""
