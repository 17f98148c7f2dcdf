"""What the tests share, importable as ``tests.support.<module>`` (a test module never imports
another test module): the deployments and their fixtures, one registry factory, server-side
helpers (command counts, sweeping a prefix, ACL users, counting connections), the backend
contract's driver, the write-behind events table and writers, and the cache flows."""
