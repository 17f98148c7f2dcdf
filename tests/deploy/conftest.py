"""Wires the fixture of the ACL tests (defined in :mod:`tests.support.acl`)."""

from tests.support.acl import confined_url

__all__ = ["confined_url"]
