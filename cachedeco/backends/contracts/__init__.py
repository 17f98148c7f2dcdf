"""The lease, write-behind queue and tally contracts a backend hands out beside its cache core."""
