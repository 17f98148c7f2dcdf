"""The lease and write-behind queue contracts a backend hands out beside its cache core."""
