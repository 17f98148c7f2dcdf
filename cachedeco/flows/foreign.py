"""Values stored as a reader's entry by something other than the reader's own load: a
``@write_through`` or ``@write_behind`` writer, or ``f.set()``.

On a backend that serializes, the reader decodes such a value as its return type (the
fields of a writer's dict make the reader's dataclass). memory:// keeps objects, so there
the value is made the reader's type the same way when it is stored, and both backends serve
a reader the same type. Only the default serializer rebuilds types (pickle and custom
serializers keep what was stored), and only a reader whose annotation it rebuilds (a
dataclass, a model, a datetime...: not plain JSON types) needs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from cachedeco.core.codec.factory import Codec, make_codec
from cachedeco.errors import ConfigurationError, SerializationError
from cachedeco.flows.bound import Bound

__all__ = ["adopting", "rebuilds"]

#: How the typed codecs of :mod:`cachedeco.core.codec.json` say they rebuild a type.
_TYPED = ("typed", "model")


def rebuilds(serializer: object) -> bool:
    """Whether a registry or function setting names the default serializer (orjson), the
    one that decodes a stored value as the reader's annotation says."""
    return serializer is None or serializer == "orjson"


def adopting(bound: Bound, hint: Callable[[], Any], write: Codec | None = None) -> Bound:
    """``bound`` (on memory://) storing what it is given as the reader would decode it from
    Redis: encoded with ``write`` (default: the reader's own codec), decoded as ``hint()``,
    the reader's return annotation. ``bound`` as it is when that annotation is not rebuilt
    or cannot be resolved (memory:// never needs it)."""
    try:
        resolved = hint()
    except ConfigurationError:
        return bound
    read = make_codec("orjson", name=bound.name, annotation=lambda: resolved)
    if getattr(read, "decodes", ("orjson",))[0] not in _TYPED:
        return bound
    encode = (write or read).dumps
    exact = resolved if isinstance(resolved, type) else None

    def convert(value: Any) -> Any:
        if exact is not None and type(value) is exact:  # the reader's type already
            return value
        data = encode(value)  # a value that does not encode raises, as it would on Redis
        try:
            return read.loads(data)
        except SerializationError as exc:  # on Redis: stored, then a miss for its readers
            return bound.undecodable(exc)

    return dataclasses.replace(bound, convert=convert)
