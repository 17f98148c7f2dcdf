"""A @cached reader of events and a @write_behind writer feeding it, on a registry."""

from __future__ import annotations

from typing import Any

import cachedeco
from cachedeco import Registry

__all__ = ["event_functions"]


def event_functions(reg: Registry, flush: Any, **options: Any) -> tuple[Any, Any]:
    """``(get_event, record_event)``: a @cached reader (ttl 60 s) on ``reg`` and a
    @write_behind writer of ``{"id": event_id, "v": v}`` records into it, flushed by ``flush``
    (``flush_interval`` 3600 s unless given)."""

    @cachedeco.cached(registry=reg, ttl=60)
    async def get_event(event_id: str) -> dict[str, Any] | None:
        return None

    options.setdefault("flush_interval", 3600)

    @cachedeco.write_behind(get_event, flush=flush, **options)
    async def record_event(event_id: str, v: int) -> dict[str, Any]:
        return {"id": event_id, "v": v}

    return get_event, record_event
