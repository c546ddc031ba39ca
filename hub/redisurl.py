"""HUB_REDIS_URL read into what the hub connects to: one Redis, a Cluster's seeds, or Sentinels.

A ValueError says what is wrong, never repeating the URL (it may hold a password).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

_SPLIT = re.compile(
    r"(?P<scheme>[A-Za-z0-9+.-]*)://(?:(?P<auth>[^@/?#]*)@)?(?P<hosts>[^/?#]*)(?P<rest>.*)"
)


@dataclass(frozen=True)
class Topology:
    """`single`: one node (a Cluster when it says so); `cluster`: seed nodes; `sentinel`:
    the sentinels' addresses and the master's name. `nodes` are connection options as
    `redis_options` makes them; for Sentinel, `data` holds the data nodes' options less
    their address (credentials, TLS, database)."""

    kind: Literal["single", "cluster", "sentinel"]
    nodes: tuple[dict[str, Any], ...]
    master: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def parse_topology(url: str) -> Topology:
    match = _SPLIT.fullmatch(url)
    if match is None:
        return Topology("single", (redis_options(url),))
    scheme, auth, hosts, rest = match.group("scheme", "auth", "hosts", "rest")
    scheme = scheme.lower()
    prefix = f"{auth}@" if auth is not None else ""
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(scheme.split("+")[0], prefix, hosts, rest)
    if "," not in hosts:
        return Topology("single", (redis_options(url),))
    if scheme not in ("redis", "rediss"):
        raise ValueError("a list of cluster nodes takes redis:// or rediss://")
    seeds = tuple(redis_options(f"{scheme}://{prefix}{host}{rest}") for host in _hosts(hosts))
    if seeds[0].get("db"):
        raise ValueError("a Redis Cluster has only database 0")
    return Topology("cluster", seeds)


def _hosts(hosts: str) -> list[str]:
    listed = [host.strip() for host in hosts.split(",")]
    if not all(listed):
        raise ValueError("an empty host in the list of nodes")
    return listed


def _sentinel(scheme: str, prefix: str, hosts: str, rest: str) -> Topology:
    path, _, query = rest.partition("?")
    names = [part for part in path.split("/") if part]
    if not names or len(names) > 2:
        raise ValueError("a Sentinel URL ends in /<master-name> or /<master-name>/<db>")
    db = f"/{names[1]}" if len(names) == 2 else ""
    suffix = f"{db}?{query}" if query else db
    sentinels = []
    for host in _hosts(hosts):
        options = redis_options(f"redis://{prefix}{host}")
        options["port"] = options["port"] if ":" in host.rsplit("]", 1)[-1] else 26379
        sentinels.append(options)
    data = redis_options(f"{scheme}://{prefix}localhost{suffix}")
    data.pop("host")
    data.pop("port")
    return Topology("sentinel", tuple(sentinels), unquote(names[0]), data)


def _database(text: str, where: str) -> int:
    if not (text.isascii() and text.isdecimal()):
        raise ValueError(f"{where} must be a database number (redis://host:6379/0)")
    return int(text)


def redis_options(url: str) -> dict[str, Any]:
    """host/port or path, username, password and db of a redis://, rediss:// or unix:// URL
    (`tls` for rediss://, with its `ssl_*` query options). A ValueError says what is wrong,
    never repeating the URL (it may hold a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [IPv6 address]; the message would repeat the host part
        raise ValueError("not a usable URL: its host part cannot be read") from None
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    options: dict[str, Any] = {}
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    if parts.scheme == "rediss":
        options["tls"] = True
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        if parts.hostname or not parts.path:
            raise ValueError("a unix:// URL takes an absolute path: unix:///run/redis.sock")
        options["path"] = unquote(parts.path)
    else:
        if port == 0:
            raise ValueError("not a usable URL: the port must be 1-65535")
        options["host"] = parts.hostname or "localhost"
        options["port"] = port or 6379
        if db := parts.path.strip("/"):
            options["db"] = _database(db, "the path")
    if "db" in query:
        options["db"] = _database(query["db"][0], "db=")
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
        if name in query:
            options[name] = query[name][0]
    if options.get("ssl_cert_reqs", "required").lower() not in ("none", "optional", "required"):
        raise ValueError("ssl_cert_reqs= must be none, optional or required")
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    return options
