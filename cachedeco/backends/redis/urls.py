"""Backend URLs, parsed and checked without connecting: their kind, hosts, credentials and
options, and a form without the password for messages.

``redis+cluster://[user[:password]@]host:port[,host:port…]`` — any reachable nodes; the rest
of the cluster is discovered. ``redis+sentinel://[user[:password]@]host:port[,…]/service[/db]``
— the sentinels; credentials apply to the primary (a sentinel's own password goes in the
backend option ``sentinel_kwargs={"password": …}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cachedeco.errors import ConfigurationError

__all__ = ["SCHEMES", "Target", "kind_of_url", "memory_size", "parse_url", "redact",
           "sentinel_settings"]

SCHEMES = ("memory", "redis", "rediss", "unix", "redis+cluster", "redis+sentinel")


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
        return "memory"
    if scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ConfigurationError(f"backend {name!r}: no host in {redact(url)!r}")
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ConfigurationError(f"backend {name!r}: database {db!r} is not a number")
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"backend {name!r}: bad port in {redact(url)!r}")
        return "redis"
    if scheme == "unix":
        return "redis"
    if not parts.netloc:
        raise ConfigurationError(f"backend {name!r}: no hosts in {redact(url)!r}")
    return "cluster" if scheme == "redis+cluster" else "sentinel"


def redact(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def memory_size(url: str, default: int) -> int:
    """``memory://?maxsize=N``."""
    query = parse_qs(urlsplit(url).query)
    try:
        return int(query.get("maxsize", [default])[0])
    except ValueError as exc:
        raise ConfigurationError(f"memory backend: bad maxsize in {url!r}") from exc


DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


def parse_url(kind: str, url: str) -> Target:
    """Hosts, credentials and (for sentinel) the service and db of a scale-out URL."""
    parts = urlsplit(url)
    userinfo, _, netloc = parts.netloc.rpartition("@")
    username, has_password, password = userinfo.partition(":")
    hosts = tuple(_host(item, DEFAULT_PORTS[kind], url) for item in netloc.split(","))
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{kind} URL {redact(url)!r}: query options are not supported; "
                                 "pass them as backend options")
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
