"""Backend URLs, parsed and checked without connecting: their kind, hosts, credentials and
options, and a form without the password for messages.

Everything is checked when the registry is built, whatever the backend will be used for:
the query options of a ``redis://``, ``rediss://`` or ``unix://`` URL (a name redis-py's
connections accept, and a value it would take: ``?socket_timeout=abc`` is a
ConfigurationError naming the option, not a ValueError at the first connection), the hosts
of a cluster or sentinel URL (which take no query options), and ``memory://?maxsize=N``.

``redis+cluster://[user[:password]@]host:port[,host:port…]`` — any reachable nodes; the rest
of the cluster is discovered. ``redis+sentinel://[user[:password]@]host:port[,…]/service[/db]``
— the sentinels; credentials apply to the primary (a sentinel's own password goes in the
backend option ``sentinel_kwargs={"password": …}``).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.connection import URL_QUERY_ARGUMENT_PARSERS

from cachedeco.errors import ConfigurationError

__all__ = ["SCHEMES", "Target", "kind_of_url", "memory_size", "parse_url", "redact",
           "refused_option", "refused_options", "sentinel_settings"]

SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "redis+sentinel")
_CONNECTIONS = {"redis": redis.Connection, "rediss": redis.SSLConnection,
                "unix": redis.UnixDomainSocketConnection}
_POOL_OPTIONS = frozenset({"max_connections", "timeout"})  # taken by the pool, not connections
_SECONDS = frozenset({"socket_timeout", "socket_connect_timeout", "timeout"})
_COUNTS = {"db": 0, "max_connections": 1, "health_check_interval": 0, "socket_read_size": 1}
_CERT_REQS = ("none", "optional", "required")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed scale-out URL."""

    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    service: str = ""
    db: int = 0


def kind_of_url(name: str, url: str) -> str:
    """Validate a backend URL and return its kind (memory, redis, cluster, sentinel)."""
    try:
        parts = urlsplit(url)
        # Cluster and sentinel URLs list several host:port pairs; only one-host URLs have a port.
        port = parts.port if parts.scheme.lower() in ("redis", "rediss") else None
    except ValueError as exc:
        raise ConfigurationError(f"backend {name!r}: malformed URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"backend {name!r}: unknown scheme {scheme!r} in {redact(url)!r}; "
            f"expected one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "memory":
        memory_size(url, 1)
        return "memory"
    if scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ConfigurationError(f"backend {name!r}: no host in {redact(url)!r}")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ConfigurationError(f"backend {name!r}: database {db!r} is not a number")
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"backend {name!r}: bad port in {redact(url)!r}")
    if scheme in _CONNECTIONS:
        _check_query(name, url, scheme)
        return "redis"
    if not parts.netloc:
        raise ConfigurationError(f"backend {name!r}: no hosts in {redact(url)!r}")
    kind = "cluster" if scheme == "redis+cluster" else "sentinel"
    parse_url(kind, url)  # hosts, credentials, no query: checked now, used at first connection
    return kind


def _query(url: str, what: str) -> dict[str, list[str]]:
    """A URL's query options (blank ones included), or ConfigurationError."""
    try:
        return parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise ConfigurationError(f"{what}: malformed query in {redact(url)!r}") from exc


@functools.cache
def _url_keywords(scheme: str) -> frozenset[str]:
    """The options a URL of ``scheme`` may carry: its connection class's keywords (along its
    bases, which take the rest as ``**kwargs``) and the pool's."""
    names: set[str] = set(_POOL_OPTIONS)
    for cls in _CONNECTIONS[scheme].__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            names.update(p.name for p in inspect.signature(init).parameters.values()
                         if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY)
    return frozenset(names - {"self"})


def _check_query(name: str, url: str, scheme: str) -> None:
    """Every query option of a redis, rediss or unix URL: a known name, a usable value."""
    accepted = _url_keywords(scheme)
    for option, values in _query(url, f"backend {name!r}").items():
        where = f"backend {name!r}: URL option {option!r} in {redact(url)!r}"
        if option not in accepted:
            hint = " (TLS options need rediss://)" if option.startswith("ssl") else ""
            raise ConfigurationError(f"{where} is not an option of a {scheme}:// "
                                     f"connection{hint}")
        reason = refused_option(option, values[0])
        if reason:
            raise ConfigurationError(f"{where}: {reason}")


def refused_options(kind: str, url: str, options: dict[str, Any]) -> str:
    """Why a backend of ``kind`` made from ``url`` cannot take these redis-py options ("" when
    it can): each must be a keyword of the connections it opens, or every call would fail on
    the first connection. One server's TLS comes with its scheme (``rediss://``); a cluster
    or sentinel URL's with ``ssl=True``, which its TLS options then need."""
    if kind in ("cluster", "sentinel"):
        tls = bool(options.get("ssl"))
        accepted = _url_keywords("rediss" if tls else "redis") | {"ssl"}
        accepted |= {"sentinel_kwargs"} if kind == "sentinel" else set()
        hint = "" if tls else " (TLS options need ssl=True)"
    else:
        scheme = urlsplit(url).scheme.lower()
        accepted = _url_keywords(scheme)
        hint = " (TLS options need rediss://)"
    for option in sorted(options):
        if option not in accepted:
            why = hint if option.startswith("ssl_") else ""
            if option == "ssl" and kind == "redis":
                why = " (one server's TLS comes with its URL's scheme, rediss://: leave ssl out)"
            elif option == "sentinel_kwargs":
                why = " (it is for a redis+sentinel:// URL)"
            return (f"option {option!r} is not one of the connections of a {kind} backend "
                    f"({redact(url)!r}){why}")
    return ""


def _seconds(value: str) -> bool:
    """Whether ``value`` is a finite number of seconds > 0."""
    try:
        seconds = float(value)
    except ValueError:
        return False
    return math.isfinite(seconds) and seconds > 0


def refused_option(option: str, value: object) -> str:
    """Why cachedeco refuses a connection option's value ("" when it does not).

    A URL gives strings; a registry's backend options may give objects, which only the
    options that break cachedeco whatever their type (``decode_responses``) are checked for.
    """
    if option == "decode_responses":  # a URL passes any text through: "false" is truthy too
        return "" if value is False else ("cachedeco stores bytes: a connection with "
                                          "decode_responses cannot hold its entries")
    if not isinstance(value, str):
        return ""
    if option in _SECONDS:
        return "" if _seconds(value) else f"{value!r} is not a finite number of seconds > 0"
    if option in _COUNTS:
        low = _COUNTS[option]
        return "" if value.isdigit() and int(value) >= low else (
            f"{value!r} is not an integer >= {low}")
    if option == "ssl_cert_reqs":
        return "" if value in _CERT_REQS else f"{value!r} is not one of {_CERT_REQS}"
    if option == "protocol":  # redis-py checks it only when it connects (parsed from 8.0 on)
        return "" if value in ("2", "3") else f"{value!r} is not 2 or 3 (RESP2 or RESP3)"
    parse = cast("Callable[[str], object] | None", URL_QUERY_ARGUMENT_PARSERS.get(option))
    if parse is not None:
        try:
            parse(value)
        except (TypeError, ValueError):
            return f"{value!r} is not a value redis-py accepts for it"
    return ""


def redact(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def memory_size(url: str, default: int) -> int:
    """``memory://?maxsize=N`` (N >= 1, the only option), else ``default``. A host, a path or
    credentials are refused: such a URL was meant for a server (``memory://redis:6379``)."""
    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise ConfigurationError(f"memory backend: {redact(url)!r} names a place, but the "
                                 "memory backend lives in the process: write memory:// (with "
                                 "?maxsize=N at most), or redis://host:port for a server")
    query = _query(url, "memory backend")
    unknown = sorted(set(query) - {"maxsize"})
    if unknown:
        raise ConfigurationError(f"memory backend: unknown URL option(s) {unknown} in {url!r}; "
                                 "the only one is maxsize")
    if "maxsize" not in query:
        return default
    value = query["maxsize"][0]
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"memory backend: maxsize={value!r} in {url!r} is not an "
                                 "integer >= 1")
    return int(value)


DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


def parse_url(kind: str, url: str) -> Target:
    """Hosts, credentials and (for sentinel) the service and db of a scale-out URL."""
    parts = urlsplit(url)
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username, has_password, password = userinfo.partition(":")
    hosts = tuple(_host(item, DEFAULT_PORTS[kind], url) for item in netloc.split(","))
    if parts.query or parts.fragment:
        options = sorted(parse_qs(parts.query, keep_blank_values=True)) or [parts.fragment]
        raise ConfigurationError(f"{kind} URL {redact(url)!r}: query options ({options}) are "
                                 "not supported; pass them as backend options")
    creds = (unquote(username) or None, unquote(password) if has_password else None)
    path = parts.path.strip("/")
    if kind == "cluster":
        if path not in ("", "0"):
            raise ConfigurationError(f"cluster URL {redact(url)!r}: a cluster has only db 0")
        return Target(hosts, *creds)
    service, _, db = path.partition("/")
    if not service or (db and not db.isdigit()) or "/" in db:
        raise ConfigurationError(
            f"sentinel URL {redact(url)!r}: expected redis+sentinel://host:port[,…]/service[/db]")
    return Target(hosts, *creds, service=unquote(service), db=int(db or 0))


def _host(item: str, default_port: int, url: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``."""
    item = item.strip()
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host or (port and not port.isdigit()) or not 0 < int(port or default_port) < 65536:
        raise ConfigurationError(f"bad host {item!r} in {redact(url)!r}")
    return host, int(port or default_port)


def sentinel_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The settings of the connections to the sentinels: the data connections' timeouts and
    retry, updated by the backend option ``sentinel_kwargs`` (popped from ``kwargs``)."""
    keep = ("socket_timeout", "socket_connect_timeout", "retry")
    settings = {name: kwargs[name] for name in keep if name in kwargs}
    settings.update(kwargs.pop("sentinel_kwargs", None) or {})
    return settings
