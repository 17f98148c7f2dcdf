"""One deployment's mechanics: failover, ACL, slots, round trips, outages, processes."""
