"""Each feature written once, parametrized by deployment (memory, redis, cluster,
sentinel) where it is meant to hold on each."""
