"""A FastAPI service with cachedeco: the lifespan configures the registry and closes it
(flushing write-behind records) at shutdown; routes call cached data functions; a request
collects the tags it changed and they are invalidated before its response is sent.

    python examples/fastapi_app.py                          # a tour through FastAPI's TestClient
    python examples/fastapi_app.py redis://127.0.0.1:6379/0 # the same with the cache in Redis
    CACHEDECO_BACKEND=redis://127.0.0.1:6379/0 uvicorn examples.fastapi_app:app  # serve it

($CACHEDECO_PREFIX sets the key prefix, default shop-example.)

Needs `pip install 'cachedeco[fastapi]'` (and `httpx2` for the tour's TestClient, `uvicorn`
to serve).

* ``get_product`` is ``@cached`` and tagged ``product:{id}`` and ``products``; the route
  ``GET /products/{id}`` calls it (the route itself is not cached: its arguments include the
  request).
* ``PATCH /products/{id}`` renames through ``@write_through``: the new row becomes the
  cached entry, so no reader sees the old name.
* ``POST /admin/prices`` changes every price and invalidates the ``products`` tag through the
  per-request ``Invalidations`` dependency.
* ``POST /products/{id}/views`` records a page view with ``@write_behind``: cached at once,
  written to the database in batches, and flushed at shutdown by the lifespan.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from pydantic import BaseModel

import cachedeco
from cachedeco.contrib.fastapi import Invalidations, invalidations, registry_dependency
from cachedeco.contrib.starlette import lifespan


class Product(BaseModel):
    id: int
    name: str
    price: float


class Rename(BaseModel):
    name: str


class Database:
    """A stand-in for the real database: a few ms per query, and a count of the queries."""

    def __init__(self) -> None:
        self.products = {1: {"name": "kettle", "price": 25.0}, 2: {"name": "teapot", "price": 18.0}}
        self.views: list[dict[str, Any]] = []
        self.queries = 0

    async def query(self) -> None:
        self.queries += 1
        await asyncio.sleep(0.005)


db = Database()


# --- data functions: cached, written through, written behind -----------------------------------


@cachedeco.cached(ttl=300, key="product:{product_id}", tags=["product:{product_id}", "products"])
async def get_product(product_id: int) -> Product | None:
    """One product, read through the cache (None, cached too, when there is none)."""
    await db.query()
    row = db.products.get(product_id)
    return None if row is None else Product(id=product_id, **row)


@cachedeco.write_through(get_product)
async def rename_product(product_id: int, name: str) -> Product:
    """UPDATE the row; the returned product becomes get_product's entry."""
    await db.query()
    db.products[product_id]["name"] = name
    return Product(id=product_id, **db.products[product_id])


@cachedeco.cached(ttl=60, key="views:{product_id}")
async def last_view(product_id: int) -> dict[str, Any] | None:
    """The last page view of a product (served from the cache before it is written)."""
    await db.query()
    return next((v for v in reversed(db.views) if v["product_id"] == product_id), None)


async def insert_views(views: list[dict[str, Any]]) -> None:
    """The bulk INSERT behind record_view: one query per batch."""
    await db.query()
    db.views.extend(views)


@cachedeco.write_behind(last_view, flush=insert_views, batch_size=500, flush_interval=5.0,
                        coalesce=False)  # every view is written, not only a product's latest
async def record_view(product_id: int, visitor: str) -> dict[str, Any]:
    """Build the view record; cachedeco caches it now and writes it later, in batches."""
    return {"product_id": product_id, "visitor": visitor}


# --- the routes -------------------------------------------------------------------------------

router = APIRouter()
Changes = Annotated[Invalidations, invalidations()]
Cache = Annotated[cachedeco.Registry, Depends(registry_dependency())]


@router.get("/products/{product_id}")
async def read_product(product_id: int) -> Product:
    product = await get_product(product_id)
    if product is None:
        raise HTTPException(404, "no such product")
    return product


@router.patch("/products/{product_id}")
async def patch_product(product_id: int, body: Rename) -> Product:
    if await get_product(product_id) is None:
        raise HTTPException(404, "no such product")
    return await rename_product(product_id, body.name)


@router.post("/admin/prices")
async def raise_prices(percent: float, changes: Changes) -> dict[str, Any]:
    await db.query()
    for row in db.products.values():
        row["price"] = round(row["price"] * (1 + percent / 100), 2)
    changes.add("products")  # every cached product: invalidated before the response
    return {"repriced": len(db.products)}


@router.post("/products/{product_id}/views")
async def view_product(product_id: int, visitor: str) -> dict[str, Any]:
    return await record_view(product_id, visitor)


@router.get("/products/{product_id}/views/last")
async def read_last_view(product_id: int) -> dict[str, Any] | None:
    return await last_view(product_id)


@router.get("/cache/stats")
def cache_stats(cache: Cache) -> dict[str, int]:
    stats = cache.stats()
    return {"hits": stats.hits, "misses": stats.misses,
            "write_behind_pending": stats.write_behind_pending}


def create_app(backend: str) -> FastAPI:
    """The app, its registry configured from `backend` at start-up and closed at shutdown."""
    prefix = os.environ.get("CACHEDECO_PREFIX", "shop-example")
    app = FastAPI(title="shop", lifespan=lifespan(backend, prefix=prefix, ttl=300))
    app.include_router(router)
    return app


app = create_app(os.environ.get("CACHEDECO_BACKEND", "memory://"))


def tour(backend: str) -> None:
    """Requests through FastAPI's TestClient, which runs the lifespan as a server would."""
    from fastapi.testclient import TestClient

    with TestClient(create_app(backend)) as client:
        cachedeco.registry.clear()  # a clean start for the tour (SCAN under the prefix)
        for _ in range(3):
            client.get("/products/1")
        print("GET x3      ", client.get("/products/1").json(), f"({db.queries} query)")
        client.patch("/products/1", json={"name": "electric kettle"})
        print("after PATCH ", client.get("/products/1").json()["name"],
              "(the write-through stored it: never the old name)")
        client.post("/admin/prices", params={"percent": 10})
        print("after prices", client.get("/products/1").json()["price"],
              "(the products tag was invalidated before the response)")
        for visitor in ("ada", "grace", "alan"):
            client.post("/products/2/views", params={"visitor": visitor})
        print("views        3 recorded,", len(db.views), "written so far; last view",
              client.get("/products/2/views/last").json())
        print("cache stats ", client.get("/cache/stats").json())
        cachedeco.registry.clear()  # the served app's fake database starts afresh: so do we
    print(f"shutdown     {len(db.views)} views written by the lifespan's flush")


if __name__ == "__main__":
    tour(*sys.argv[1:2] or ["memory://"])
