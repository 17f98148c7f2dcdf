"""The registry core, the failure guard, single-flight and the hand-written sync/async
primitives. Never names a decorator."""
