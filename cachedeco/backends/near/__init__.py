"""The near cache: a backend wrapping a Redis backend, with decoded values kept in process
memory (:mod:`.store`) and kept coherent by Redis's server-assisted client-side caching
(:mod:`.tracker`, :mod:`.sources`); ``_async/`` holds the wrapper, ``_sync/`` its generated twin."""
