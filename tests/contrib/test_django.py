"""cachedeco.contrib.django with Django's test client, on a real Redis and an in-memory SQLite
database: settings.CACHEDECO configures the default registry, model signals invalidate tags
after the commit, and ``manage.py cachedeco`` runs the operator CLI with those settings."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import django
import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client, override_settings

import cachedeco
from cachedeco import MISS, ConfigurationError, SerializationError
from cachedeco.contrib.django import configure_from_settings, invalidate_on_save
from tests.support.commands import commandstats, ran, sweep_prefix
from tests.support.deployments import TIMEOUT

PREFIX = f"t{uuid.uuid4().hex[:10]}"  # the project's prefix, swept after the module


@pytest.fixture(scope="module", autouse=True)
def project(redis_url: str) -> Iterator[None]:
    """Django set up once for this module (settings cannot be configured twice in a process),
    with the tables made; afterwards the default registry is back on memory://."""
    settings.configure(
        SECRET_KEY="tests", DEBUG=False, ALLOWED_HOSTS=["testserver"], USE_TZ=True,
        INSTALLED_APPS=["cachedeco.contrib.django", "tests.contrib.djangoapp"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        ROOT_URLCONF="tests.contrib.djangoapp.urls", MIDDLEWARE=[],
        CACHEDECO={"backend": redis_url, "prefix": PREFIX, "ttl": 60})
    django.setup()
    from tests.contrib.djangoapp.models import Product

    with connection.schema_editor() as editor:
        editor.create_model(Product)
    try:
        yield
    finally:
        cachedeco.registry.close()
        cachedeco.configure("memory://")
        with redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT) as client:
            sweep_prefix(client, PREFIX)


@pytest.fixture
def shared_threads() -> frozenset[str]:
    """The default registry runs for the module (closed after it)."""
    return frozenset({"cachedeco-lineage:lineage", "cachedeco-report:stats"})


@pytest.fixture
def loads() -> list[int]:
    from tests.contrib.djangoapp.views import LOADS

    LOADS.clear()
    return LOADS


def product(name: str) -> Any:
    from tests.contrib.djangoapp.models import Product

    return Product.objects.create(name=name)


def card(product_id: int) -> Any:
    from tests.contrib.djangoapp.views import product_card

    return product_card.get(product_id)


def test_settings_configure_the_default_registry(redis_url: str) -> None:
    assert cachedeco.registry.prefix == PREFIX
    assert cachedeco.registry.ttl == 60
    assert cachedeco.registry.slot("default").backend().client is not None  # Redis


def test_a_cached_view_hits_and_a_save_invalidates(loads: list[int], redis_url: str) -> None:
    from tests.contrib.djangoapp.views import product_card

    kettle = product("kettle")
    client = Client()
    for _ in range(2):
        assert client.get(f"/products/{kettle.pk}/").json() == {"id": kettle.pk,
                                                                "name": "kettle"}
    assert loads == [kettle.pk]
    with redis.Redis.from_url(redis_url, socket_timeout=TIMEOUT) as plain:
        assert plain.exists(product_card.key(kettle.pk)) == 1
    kettle.name = "urn"
    kettle.save()  # post_save: the tags are invalidated (at once: no transaction)
    assert card(kettle.pk) is MISS
    assert client.get(f"/products/{kettle.pk}/").json() == {"id": kettle.pk, "name": "urn"}
    assert loads == [kettle.pk, kettle.pk]


def test_a_delete_invalidates(loads: list[int]) -> None:
    pot = product("pot")
    client = Client()
    assert client.get(f"/products/{pot.pk}/").status_code == 200
    pk = pot.pk
    pot.delete()  # post_delete: the tags come from the instance before its pk is cleared
    assert card(pk) is MISS
    assert client.get(f"/products/{pk}/").status_code == 404


def test_invalidation_waits_for_the_commit(loads: list[int]) -> None:
    from tests.contrib.djangoapp.views import product_card

    mug = product("mug")
    product_card(mug.pk)
    with transaction.atomic():
        mug.name = "cup"
        mug.save()
        assert card(mug.pk) == {"id": mug.pk, "name": "mug"}  # not committed: still cached
    assert card(mug.pk) is MISS
    assert product_card(mug.pk) == {"id": mug.pk, "name": "cup"}


def test_a_rolled_back_save_invalidates_nothing(loads: list[int]) -> None:
    from tests.contrib.djangoapp.views import product_card

    jug = product("jug")
    product_card(jug.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        jug.name = "flask"
        jug.save()
        raise RuntimeError("rolled back")
    assert card(jug.pk) == {"id": jug.pk, "name": "jug"}


def test_tag_templates_are_checked_against_the_model() -> None:
    from tests.contrib.djangoapp.models import Product

    with pytest.raises(ConfigurationError, match="no attribute 'sku'"):
        invalidate_on_save(Product, ["product:{sku}"])
    with pytest.raises(ConfigurationError, match="strings or a function"):
        invalidate_on_save(Product, [42])  # type: ignore[list-item]


def test_registering_a_model_again_replaces_its_tags(loads: list[int]) -> None:
    from tests.contrib.djangoapp.models import Product
    from tests.contrib.djangoapp.views import product_card

    bowl = product("bowl")
    pk = bowl.pk
    product_card(pk)
    invalidate_on_save(Product, ["other:{pk}"], delete=False)  # none of the card's tags
    try:
        bowl.name = "dish"
        bowl.save()
        assert card(pk) == {"id": pk, "name": "bowl"}  # the old tags are gone
        bowl.delete()
        assert card(pk) == {"id": pk, "name": "bowl"}  # and so is post_delete
    finally:
        invalidate_on_save(Product, ["product:{pk}", "products"])  # as the app's ready()
    plate = product("plate")
    pk = plate.pk
    product_card(pk)
    plate.delete()
    assert card(pk) is MISS  # both receivers back


def test_a_tag_the_instance_cannot_give_is_a_serialization_error(loads: list[int]) -> None:
    from tests.contrib.djangoapp.models import Product
    from tests.contrib.djangoapp.views import product_card

    lamp = product("lamp")
    product_card(lamp.pk)
    invalidate_on_save(Product, ["product:{pk}", "name:{name.nope}"])
    try:
        with pytest.raises(SerializationError, match=r"'name:\{name.nope\}' from a Product: "
                           r"AttributeError: 'str' object has no attribute 'nope'"), \
                transaction.atomic():
            product("doomed")
        assert not Product.objects.filter(name="doomed").exists()  # rolled back
        lamp.name = "lantern"
        with pytest.raises(SerializationError, match="nope"):
            lamp.save()  # outside a transaction: the row is committed before the signal
        assert card(lamp.pk) is MISS  # so the tags that rendered are invalidated all the same
    finally:
        invalidate_on_save(Product, ["product:{pk}", "products"])  # as the app's ready()


def test_a_bad_setting_is_improperly_configured(redis_url: str) -> None:
    with override_settings(CACHEDECO={"backend": redis_url, "ttl": -1}), \
            pytest.raises(ImproperlyConfigured, match="ttl"):
        configure_from_settings()
    with override_settings(CACHEDECO=redis_url), \
            pytest.raises(ImproperlyConfigured, match="must be a dict"):
        configure_from_settings()
    assert cachedeco.registry.prefix == PREFIX  # left as it was


def run(*arguments: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("cachedeco", *arguments, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_management_command_runs_the_cli_with_the_settings(loads: list[int]) -> None:
    from tests.contrib.djangoapp.views import product_card

    lamp = product("lamp")
    product_card(lamp.pk)
    out, _ = run("stats")
    stats = json.loads(out)
    assert stats["prefix"] == PREFIX and stats["entries"] >= 1
    out, _ = run("inspect", f"product:{lamp.pk}")
    assert json.loads(out)["found"] is True
    out, _ = run("invalidate-tags", f"product:{lamp.pk}")
    assert json.loads(out) == {"invalidated": [f"product:{lamp.pk}"]}
    assert card(lamp.pk) is MISS
    out, _ = run("inspect", "nothing", "--prefix", "other")  # the command line wins
    assert json.loads(out) == {"key": "other:nothing", "found": False}


def test_the_management_command_takes_the_settings_backend_options(redis_url: str) -> None:
    # TLS, credentials, timeouts: the setting's backend options go with its backend
    options = {"backend": redis_url, "prefix": PREFIX, "ttl": 60, "client_name": "ops"}
    with redis.Redis.from_url(redis_url) as admin, override_settings(CACHEDECO=options):
        before = commandstats(admin)
        run("stats")
        assert ran(before, commandstats(admin)).get("client|setname", 0) >= 1
        before = commandstats(admin)
        run("stats", "--backend", redis_url)  # another backend given: not for it
        assert "client|setname" not in ran(before, commandstats(admin))


def test_the_management_command_passes_on_the_clis_errors() -> None:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("cachedeco", "invalidate-tags", "product:{id}", stdout=out, stderr=err)
    assert raised.value.returncode == 2
    assert "is a tag template" in err.getvalue()
    with pytest.raises(CommandError) as raised:
        call_command("cachedeco", "no-such-command", stdout=out, stderr=err)
    assert raised.value.returncode == 2
    assert "invalid choice" in err.getvalue()
