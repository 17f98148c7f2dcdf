"""A store asks a tag key's remaining lifetime (``PTTL``, to extend it if short) only while
this process does not know it to be long enough: the first store carrying a tag asks, the
next ones do not, and a tag key that vanished meanwhile is still created again."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cachedeco import Registry
from cachedeco.flows.spec import spec_of
from tests.support.commands import commandstats, ran
from tests.support.deployments import Deployment

pytestmark = pytest.mark.deployments("redis", "sentinel")


def test_only_the_first_store_with_a_tag_asks_its_lifetime(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url)

    @reg.cached(ttl=60, tags=["team:{x}", "all"])
    def f(x: int) -> int:
        return x * 10

    before = commandstats(deployment.raw)
    assert f(1) == 10
    first = ran(before, commandstats(deployment.raw))
    assert first.get("pttl") is None  # the tag keys were missing: created, nothing to ask
    f.invalidate(1)
    before = commandstats(deployment.raw)
    assert f(1) == 10  # existing tag keys, lifetimes known from the store that made them
    again = ran(before, commandstats(deployment.raw))
    assert again.get("pttl") is None
    assert again["evalsha"] == 1
    before = commandstats(deployment.raw)
    assert f(2) == 20  # "all" and the implicit tag are known; "team:2" is new
    assert ran(before, commandstats(deployment.raw)).get("pttl") is None


def test_another_process_pays_one_question_per_tag(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    first, second = make_registry(deployment.url), make_registry(deployment.url)

    def make(reg: Registry) -> Callable[[int], int]:
        @reg.cached(ttl=60, tags=["all"])
        def f(x: int) -> int:
            return x

        return f

    make(first)(1)  # creates the tag keys ("all" and the function's own)
    other = make(second)
    before = commandstats(deployment.raw)
    other(2)  # this "process" knows nothing yet: asks both
    assert ran(before, commandstats(deployment.raw)).get("pttl") == 2
    before = commandstats(deployment.raw)
    other(3)
    assert ran(before, commandstats(deployment.raw)).get("pttl") is None


def test_a_vanished_tag_key_is_created_again(
        make_registry: Callable[..., Registry], deployment: Deployment) -> None:
    reg = make_registry(deployment.url)

    @reg.cached(ttl=60, tags=["all"])
    def f(x: int) -> int:
        return x

    f(1)
    tag = reg.keyspace.tag("all")
    assert deployment.raw.exists(tag) == 1
    deployment.raw.delete(tag)  # gone behind the process's back (evicted, say)
    assert f(2) == 2
    assert deployment.raw.exists(tag) == 1
    assert deployment.raw.pttl(tag) > 0
    b = spec_of(f).bound()
    entry, tokens = b.slot.backend().read(b.key((2,), {}), b.tags((2,), {}))
    assert entry is not None and entry.tags == tokens  # current under the new token
