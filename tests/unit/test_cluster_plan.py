"""Which primaries ``invalidate_pattern``/``clear`` scan on Cluster, from redis-py's parsed
``CLUSTER NODES`` reply: every reachable primary, a slotless one included."""

from __future__ import annotations

from cachedeco.backends.redis.cluster_plan import listed_primaries


def test_every_reachable_primary_slots_or_not() -> None:
    listed = {
        "10.0.0.1:7000": {"flags": "myself,master", "slots": [["0", "8191"]]},
        "10.0.0.2:7001": {"flags": "master", "slots": [["8192", "16383"]]},
        "10.0.0.3:7002": {"flags": "master", "slots": []},  # receiving a slot
        "10.0.0.4:7003": {"flags": "slave", "slots": []},
        "10.0.0.5:7004": {"flags": "master,fail", "slots": []},
        "10.0.0.6:7005": {"flags": "master,fail?", "slots": []},
        "10.0.0.7:7006": {"flags": "master,handshake", "slots": []},
        ":7007": {"flags": "master,noaddr", "slots": []},
    }
    assert listed_primaries(listed) == [("10.0.0.1", 7000), ("10.0.0.2", 7001),
                                        ("10.0.0.3", 7002)]
