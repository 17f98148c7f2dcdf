"""Wires the fixtures of the ACL tests (:mod:`tests.support.acl`) and of the lease tests
(:mod:`tests.support.leases`)."""

from tests.support.acl import confined_url
from tests.support.leases import aleases, name, raw

__all__ = ["aleases", "confined_url", "name", "raw"]
