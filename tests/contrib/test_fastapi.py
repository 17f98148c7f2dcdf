"""cachedeco.contrib.starlette and .fastapi with FastAPI's (Starlette's) TestClient, on a real
Redis: the lifespan configures the registry at start-up and flushes and closes it at shutdown,
routes hit the cache, and a request's collected tags are invalidated before its response."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, which name
# aliases local to Shop.__init__.
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import pytest
import redis
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from cachedeco import MISS, ConfigurationError, Registry
from cachedeco.contrib.fastapi import Invalidations, invalidations, registry_dependency
from cachedeco.contrib.starlette import lifespan
from tools.servers import Server


class Shop:
    """A FastAPI app over `reg`: a cached reader, a write-behind writer whose flushed records
    land in `self.flushed`, and routes using the per-request dependencies."""

    def __init__(self, reg: Registry, **lifespan_settings: Any) -> None:
        self.names = {1: "kettle", 2: "teapot"}
        self.loads: list[int] = []
        self.flushed: list[dict[str, Any]] = []

        @reg.cached(ttl=60, key="product:{product_id}", tags=["product:{product_id}"])
        async def get_product(product_id: int) -> dict[str, Any]:
            self.loads.append(product_id)
            return {"id": product_id, "name": self.names[product_id]}

        async def persist(records: list[dict[str, Any]]) -> None:
            self.flushed.extend(records)

        @reg.write_behind(get_product, flush=persist, flush_interval=60)
        async def save_product(product_id: int, name: str) -> dict[str, Any]:
            return {"id": product_id, "name": name}

        self.get_product = get_product
        self.app = app = FastAPI(lifespan=lifespan(registry=reg, **lifespan_settings))
        changes = Annotated[Invalidations, invalidations(reg)]
        cache_registry = Annotated[Registry, Depends(registry_dependency(reg))]

        @app.get("/products/{product_id}")
        async def read(product_id: int) -> dict[str, Any]:
            return await get_product(product_id)

        @app.put("/products/{product_id}")
        async def put(product_id: int, name: str) -> dict[str, Any]:
            return await save_product(product_id, name)

        @app.post("/products/{product_id}/rename")
        async def rename(product_id: int, name: str, changed: changes) -> dict[str, Any]:
            self.names[product_id] = name  # the database write
            changed.add(f"product:{product_id}", f"product:{product_id}")
            return {"invalidating": list(changed.tags)}

        @app.post("/products/{product_id}/fail")
        async def fail(product_id: int, changed: changes) -> None:
            changed.add(f"product:{product_id}")
            raise RuntimeError("the write failed half-way")

        @app.get("/registry")
        def registry(cache: cache_registry) -> dict[str, Any]:
            return {"same": cache is reg, "prefix": cache.prefix}


@pytest.fixture
def idle(make_registry: Callable[..., Registry]) -> Registry:
    """A registry on memory://, to be configured by the lifespan (closed after the test)."""
    return make_registry("memory://", prefix="not-configured")


def test_lifespan_configures_the_registry_and_routes_hit_redis(
        idle: Registry, redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    shop = Shop(idle, backend=redis_url, prefix=prefix)
    assert idle.prefix == "not-configured"  # nothing happens before start-up
    with TestClient(shop.app) as client:
        assert idle.prefix == prefix
        assert client.get("/products/1").json() == {"id": 1, "name": "kettle"}
        assert client.get("/products/1").json() == {"id": 1, "name": "kettle"}
        assert shop.loads == [1]
        assert redis_client.exists(shop.get_product.key(1)) == 1
        assert client.get("/registry").json() == {"same": True, "prefix": prefix}


def test_shutdown_flushes_write_behind_and_the_registry_starts_again(
        idle: Registry, redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    shop = Shop(idle, backend=redis_url, prefix=prefix)
    with TestClient(shop.app) as client:
        assert client.put("/products/2", params={"name": "pot"}).json() == {"id": 2,
                                                                           "name": "pot"}
        assert client.get("/products/2").json() == {"id": 2, "name": "pot"}  # cached at once
    # flush_interval is 60 s: only the shutdown delivered it
    assert shop.flushed == [{"id": 2, "name": "pot"}]
    assert idle.stats().write_behind_pending == 0
    assert shop.loads == []
    with TestClient(shop.app) as client:  # a new loop, new connections: the entry is in Redis
        assert client.get("/products/2").json() == {"id": 2, "name": "pot"}
    assert shop.loads == []
    assert shop.flushed == [{"id": 2, "name": "pot"}]  # delivered once


def test_collected_tags_are_invalidated_before_the_response(
        idle: Registry, redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    shop = Shop(idle, backend=redis_url, prefix=prefix)
    with TestClient(shop.app) as client:
        client.get("/products/1")
        client.get("/products/2")
        renamed = client.post("/products/1/rename", params={"name": "urn"})
        assert renamed.json() == {"invalidating": ["product:1"]}
        assert client.get("/products/1").json() == {"id": 1, "name": "urn"}
        assert client.get("/products/2").json() == {"id": 2, "name": "teapot"}
        assert shop.loads == [1, 2, 1]


def test_tags_are_invalidated_when_the_route_raises(
        idle: Registry, redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    shop = Shop(idle, backend=redis_url, prefix=prefix)
    with TestClient(shop.app, raise_server_exceptions=False) as client:
        client.get("/products/1")
        assert client.post("/products/1/fail").status_code == 500
        client.get("/products/1")
        assert shop.loads == [1, 1]


def test_lifespan_nests_in_the_apps_own_and_keeps_its_state(
        idle: Registry, redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    shop = Shop(idle)
    cache = lifespan(redis_url, registry=idle, prefix=prefix)
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with cache(app):
            await shop.get_product(1)  # warm the cache: the registry is configured here
            events.append(f"started {idle.prefix}")
            yield {"greeting": "hello"}
            events.append("stopping")
        events.append("closed")

    app = FastAPI(lifespan=own)

    @app.get("/")
    async def root(request: Request) -> dict[str, Any]:
        return {"greeting": request.state.greeting, **await shop.get_product(1)}

    with TestClient(app) as client:
        assert client.get("/").json() == {"greeting": "hello", "id": 1, "name": "kettle"}
    assert shop.loads == [1]
    assert events == [f"started {prefix}", "stopping", "closed"]
    assert redis_client.exists(shop.get_product.key(1)) == 1


def test_a_plain_starlette_app_with_the_default_registry(redis_url: str, prefix: str,
                                                         redis_client: redis.Redis) -> None:
    import cachedeco

    loads: list[str] = []

    @cachedeco.cached(ttl=60)
    def greeting(name: str) -> str:
        loads.append(name)
        return f"hello {name}"

    async def home(request: Request) -> JSONResponse:
        return JSONResponse({"text": greeting(request.query_params["name"]),
                             "key": greeting.key(request.query_params["name"])})

    app = Starlette(routes=[Route("/", home)], lifespan=lifespan(redis_url, prefix=prefix))
    try:
        with TestClient(app) as client:
            first = client.get("/", params={"name": "ada"}).json()
            assert client.get("/", params={"name": "ada"}).json() == first
            assert first["text"] == "hello ada" and loads == ["ada"]
            assert first["key"].startswith(prefix + ":")
            assert redis_client.exists(first["key"]) == 1
    finally:
        cachedeco.registry.close()
        cachedeco.configure("memory://")


def test_settings_without_a_backend_and_a_registry_as_backend_are_refused(
        idle: Registry) -> None:
    with pytest.raises(ConfigurationError, match="no backend"):
        lifespan(prefix="shop")
    with pytest.raises(ConfigurationError, match=r"lifespan\(registry=reg\)"):
        lifespan(idle)


def test_shutdown_with_redis_down_logs_and_still_closes(
        idle: Registry, fresh_redis: Server, prefix: str,
        caplog: pytest.LogCaptureFixture) -> None:
    shop = Shop(idle, backend=fresh_redis.url, prefix=prefix, socket_timeout=0.5,
                socket_connect_timeout=0.5)
    with TestClient(shop.app) as client:
        assert client.put("/products/2", params={"name": "pot"}).status_code == 200
        fresh_redis.kill()
    assert shop.flushed == []
    assert "not flushed at shutdown" in caplog.text


async def test_tags_are_invalidated_before_the_response_starts(
        amake_registry: Callable[..., Registry], redis_url: str) -> None:
    # Straight through ASGI: a TestClient returns only once the app has finished, which
    # would hide an invalidation made after the response was sent.
    shop = Shop(amake_registry(redis_url))
    await shop.get_product(1)
    at_response_start: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            at_response_start.append(await shop.get_product.get(1))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/products/1/rename",
             "raw_path": b"/products/1/rename", "query_string": b"name=urn", "root_path": "",
             "headers": [], "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    await shop.app(scope, receive, send)
    assert at_response_start == [MISS]


@pytest.mark.parametrize(("tag", "said"), [(42, "not 42"), ("", "not ''"),
                                           (["a", "b"], "separate arguments")])
def test_a_bad_tag_is_refused_when_added_not_when_the_route_ends(tag: Any, said: str) -> None:
    changes = Invalidations()
    changes.add("product:1")
    with pytest.raises(ConfigurationError, match=said):
        changes.add(tag)
    assert changes.tags == ("product:1",)  # still invalidated when the route ends
