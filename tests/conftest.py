"""Wires the shared fixtures (defined and documented in :mod:`tests.support.fixtures`)."""

from hypothesis import HealthCheck, settings

from tests.support.fixtures import (
    _sentinel_deployment,
    _sweepers,
    amake_registry,
    aredis_client,
    cluster_client,
    cluster_url,
    deployment,
    events,
    fresh_redis,
    fresh_sentinel,
    make_registry,
    prefix,
    pytest_generate_tests,
    redis_client,
    redis_url,
    reg,
    sentinel_ports,
    sentinel_primary,
    sentinel_url,
)
from tests.support.leaks import no_leaked_threads, shared_threads

__all__ = [
    "_sentinel_deployment",
    "_sweepers",
    "amake_registry",
    "aredis_client",
    "cluster_client",
    "cluster_url",
    "deployment",
    "events",
    "fresh_redis",
    "fresh_sentinel",
    "make_registry",
    "no_leaked_threads",
    "prefix",
    "pytest_generate_tests",
    "redis_client",
    "redis_url",
    "reg",
    "sentinel_ports",
    "sentinel_primary",
    "sentinel_url",
    "shared_threads",
]

# Property tests judge correctness, not speed: on a loaded 2-core machine generating examples
# can be slow, and neither a per-example deadline nor the "too slow" health check says
# anything about cachedeco. No example database is written into the checkout either.
settings.register_profile("cachedeco", deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("cachedeco")
