"""Private Redis deployments for the tests and benchmarks, one idea a module.

:mod:`.process` runs one ``redis-server`` child (start, wait, kill, pause, restart);
:mod:`.single`, :mod:`.cluster` and :mod:`.sentinel` build the three deployments from it;
:mod:`.cli` is ``python -m tools.servers up|down --env-file PATH``, what ``scripts/test`` runs.
Needs ``redis-server`` 7.0+ (and ``redis-cli`` for a cluster); Python side, the standard
library and redis-py (and ``cryptography`` for a TLS server's certificate: :mod:`.tls`).
"""

from tools.servers.cluster import Cluster, start_cluster
from tools.servers.process import Group, RedisProcess, RedisStartError
from tools.servers.sentinel import SentinelSetup, start_sentinel
from tools.servers.single import Server, start_single

__all__ = [
    "Cluster",
    "Group",
    "RedisProcess",
    "RedisStartError",
    "SentinelSetup",
    "Server",
    "start_cluster",
    "start_sentinel",
    "start_single",
]
