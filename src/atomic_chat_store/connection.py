"""From a URL to a redis-py client, sync or async: one server, a Sentinel-managed master, or a
Cluster.

URL forms (``[...]`` is optional)::

    redis://[user:password@]host[:port][/db][?option=value&...]       one server (redis-py's own)
    rediss://...                                                       the same over TLS
    unix://[user:password@]/path/to/redis.sock[?db=N&...]             one server, Unix socket

    redis+sentinel://[user:password@]host[:port][,host[:port]...][/service_name[/db]][?...]
    rediss+sentinel://...     TLS to the master and to the sentinels

    redis+cluster://[user:password@]host[:port][,host[:port]...][/0][?...]
    rediss+cluster://...      TLS to every node

- Sentinel: the hosts are sentinels (default port 26379); any one that answers is enough, so one
  sentinel down changes nothing. ``service_name`` defaults to ``mymaster`` and ``db`` to 0. This
  is a superset of the ``redis+sentinel://`` URL of LlamaIndex's ``RedisChatStore``
  (llama-index-storage-chat-store-redis 0.8), which takes one host: its URLs mean the same here,
  but for three things. Credentials are percent-decoded (as redis-py does for ``redis://``; the
  seed took them verbatim). ``rediss+sentinel://`` verifies certificates unless
  ``?ssl_cert_reqs=none`` is given (the seed turned verification off). The seed retried without
  credentials when a sentinel said it had no password; here an empty ``sentinel_password=``
  says so (redis-py 8 authenticates with ``HELLO 3 AUTH default <password>``, which a sentinel
  without a password accepts anyway; a named user it does not know is refused).
- Cluster: the hosts are startup nodes (default port 6379). A Cluster has only db 0: ``/0`` is
  accepted, any other db refused.
- Hosts: a name, an IPv4 address, or an IPv6 address in brackets (``[::1]:26379``); an empty host
  is ``localhost``, as in redis-py. The user name and password are percent-decoded: encode
  ``@ : / ? # %`` in them.
- Credentials: in a Sentinel URL the user and password are the *master's*. The sentinels get the
  same ones (those of the URL, not of keyword arguments) unless the query gives
  ``sentinel_username`` and/or ``sentinel_password``; then they get exactly those (an empty
  ``sentinel_password=`` means the sentinels need no password).

Query parameters (percent-decoded; typed ones parsed by redis-py's own
``redis.connection.URL_QUERY_ARGUMENT_PARSERS``) set the connections to the data nodes (the
server, the Sentinel-managed master, the Cluster's nodes), as ``redis.Redis.from_url`` does:

- every scheme: ``socket_timeout``, ``socket_connect_timeout`` (float seconds),
  ``socket_read_size``, ``max_connections`` (int), ``protocol`` (2 or 3), ``legacy_responses``
  (bool), ``client_name``, ``encoding``, ``encoding_errors``, ``decode_responses``, ``lib_name``,
  ``lib_version`` (strings, passed on as given, as redis-py does), ``username``, ``password``
  (the user info wins over these two), ``db`` (int; wins over the path, as in redis-py);
- not with ``unix://``: ``socket_keepalive`` (bool);
- not with a Cluster (its clients do not take them): ``retry_on_timeout`` (bool),
  ``health_check_interval`` (int seconds);
- TLS schemes only: ``ssl_cert_reqs`` (none, optional, required), ``ssl_ca_certs``,
  ``ssl_ca_data``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname`` (bool),
  ``ssl_include_verify_flags``, ``ssl_exclude_verify_flags`` (``ssl.VerifyFlags`` names,
  comma-separated); and, not with a Cluster: ``ssl_ca_path``, ``ssl_password``, ``ssl_ciphers``,
  ``ssl_min_version`` (an ``ssl.TLSVersion`` number);
- Sentinel only: ``sentinel_username``, ``sentinel_password`` (see Credentials).

Refused: an unknown parameter, one the URL's kind of client does not take, one given twice, a
value that does not parse, and ``timeout`` (a BlockingConnectionPool's) and ``retry_on_error``
(exception classes), which redis-py would take and then fail on at the first command. A parameter
with an empty value is ignored, as redis-py does (but see ``sentinel_password``).

The sentinels' own connections get the ``socket_*``, ``ssl_*`` and ``client_name`` options too,
and TLS with ``rediss+sentinel://``; they do not retry (the next sentinel is asked instead).

Keyword arguments given with the URL (``client_kwargs``) extend its options; where both give the
same option the URL wins, as with redis-py's ``from_url``. With Sentinel, ``sentinel_kwargs``
(a dict, updating what the sentinels get), ``min_other_sentinels`` and ``force_master_ip`` go to
``redis.sentinel.Sentinel``.

:func:`sync_client_factory` and :func:`async_client_factory` parse and check the URL at once and
return a callable that builds the client. Calling it does not connect, except for the sync
``RedisCluster``, whose constructor connects to discover the slots: call it on first use.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, unquote

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
import redis.retry
import redis.sentinel
from redis.backoff import NoBackoff
from redis.connection import URL_QUERY_ARGUMENT_PARSERS as REDIS_PY_PARSERS

from .errors import InvalidUrlError

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_SERVICE_NAME = "mymaster"  # the seed's default, and Sentinel's usual one

Kind = Literal["standalone", "unix", "sentinel", "cluster"]

# scheme -> (kind, TLS)
SCHEMES: Mapping[str, tuple[Kind, bool]] = MappingProxyType(
    {
        "redis": ("standalone", False),
        "rediss": ("standalone", True),
        "unix": ("unix", False),
        "redis+sentinel": ("sentinel", False),
        "rediss+sentinel": ("sentinel", True),
        "redis+cluster": ("cluster", False),
        "rediss+cluster": ("cluster", True),
    }
)
DEFAULT_PORTS: Mapping[Kind, int] = MappingProxyType(
    {"standalone": 6379, "sentinel": 26379, "cluster": 6379}
)

# The query parameters and the kinds of URL that take each one; redis-py's table parses the typed
# ones, the others are strings passed on as given, as redis-py's parse_url does. The sets follow
# what the connection classes (sync and async) accept: a Unix socket has no keepalive, and the
# Cluster clients take neither these three nor the second set of TLS options.
_ALL: frozenset[Kind] = frozenset({"standalone", "unix", "sentinel", "cluster"})
_TCP = _ALL - {"unix"}
_NOT_CLUSTER = _ALL - {"cluster"}
_TCP_NOT_CLUSTER = _TCP - {"cluster"}
QUERY_PARAMETERS: Mapping[str, frozenset[Kind]] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "socket_timeout", "socket_connect_timeout", "socket_read_size", "max_connections",
                "protocol", "legacy_responses", "client_name", "encoding", "encoding_errors",
                "decode_responses", "lib_name", "lib_version", "username", "password", "db",
            ),
            _ALL,
        ),
        "socket_keepalive": _TCP,
        "retry_on_timeout": _NOT_CLUSTER,
        "health_check_interval": _NOT_CLUSTER,
        "sentinel_username": frozenset({"sentinel"}),
        "sentinel_password": frozenset({"sentinel"}),
    }
)  # fmt: skip
TLS_QUERY_PARAMETERS: Mapping[str, frozenset[Kind]] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_certfile", "ssl_keyfile",
                "ssl_check_hostname", "ssl_include_verify_flags", "ssl_exclude_verify_flags",
            ),
            _TCP,
        ),
        **dict.fromkeys(
            ("ssl_ca_path", "ssl_password", "ssl_ciphers", "ssl_min_version"), _TCP_NOT_CLUSTER
        ),
    }
)  # fmt: skip
REFUSED_QUERY_PARAMETERS: Mapping[str, str] = MappingProxyType(
    {
        "timeout": "a BlockingConnectionPool option, and these clients use a ConnectionPool",
        "retry_on_error": "it takes exception classes: pass it as a keyword argument",
    }
)
SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})
SECRET_OPTIONS = frozenset({"password", "sentinel_password", "ssl_password"})
CERT_REQS = ("none", "optional", "required")
# redis-py's own parsers for typed query values (int, float, bool, verify flags)
PARSERS = cast("Mapping[str, Callable[[str], Any]]", REDIS_PY_PARSERS)

# What the sentinels' own connections share with the master's (besides their credentials).
_SHARED_WITH_SENTINELS = re.compile(r"socket_|ssl$|ssl_|client_name$")
_SENTINEL_MANAGER_ARGS = ("min_other_sentinels", "force_master_ip")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9._-]+")  # Sentinel's documented charset for master names
_HOST_NAME = re.compile(r"[^\s\[\]@/?#,:]+")  # looser than DNS: names are the resolver's business


@dataclass(frozen=True)
class RedisTarget:
    """What a Redis URL says, without any I/O. ``hosts`` are (host, port) pairs: the server, the
    sentinels or the Cluster's startup nodes (empty for ``unix``, whose socket is ``path``).
    ``db`` is None when the URL gives none. ``sentinel_username`` / ``sentinel_password`` are what
    the sentinels get. ``options`` are the other query parameters, parsed."""

    kind: Kind
    tls: bool
    hosts: tuple[tuple[str, int], ...]
    service_name: str | None = None
    db: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    path: str | None = None

    def __repr__(self) -> str:
        shown = {
            name: ("***" if name in SECRET_OPTIONS else value)
            for name, value in self.options.items()
        }
        return (
            f"RedisTarget(kind={self.kind!r}, tls={self.tls}, hosts={self.hosts!r}, "
            f"service_name={self.service_name!r}, db={self.db!r}, username={self.username!r}, "
            f"password={_masked(self.password)}, sentinel_username={self.sentinel_username!r}, "
            f"sentinel_password={_masked(self.sentinel_password)}, options={shown!r}, "
            f"path={self.path!r})"
        )


def _masked(secret: str | None) -> str:
    return "None" if secret is None else "'***'"


def parse_url(url: str) -> RedisTarget:
    """Parse a Redis URL (see the module's docstring) without connecting to anything.

    Raises :class:`InvalidUrlError` naming the part that is wrong, never repeating a password,
    and ``TypeError`` for a URL that is not a ``str``.
    """
    if not isinstance(url, str):
        raise TypeError(f"a Redis URL must be a str, not {type(url).__name__}")
    scheme, separator, rest = url.partition("://")
    known = ", ".join(f"{name}://" for name in SCHEMES)
    if not separator:
        raise InvalidUrlError("scheme", f"the URL has no scheme; use one of {known}")
    if scheme.lower() not in SCHEMES:
        shown = repr(scheme) if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else "given"
        raise InvalidUrlError("scheme", f"the scheme {shown} is not supported; use one of {known}")
    kind, tls = SCHEMES[scheme.lower()]

    # netloc ends at the first / ? #, the path at ? #, the query at # (the fragment is ignored,
    # as redis-py does).
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    netloc, remainder = rest[:end], rest[end:]
    remainder = remainder.partition("#")[0]
    raw_path, _, query = remainder.partition("?")
    userinfo, at, host_list = netloc.rpartition("@")
    try:
        return _target(kind, tls, scheme.lower(), userinfo, host_list, raw_path, query)
    except InvalidUrlError as error:
        if at or "@" not in rest[end:]:
            raise
        # No '@' before the host but one after it: an unencoded / ? # in a password cut the
        # URL short, and any part shown could hold some of the password.
        raise InvalidUrlError(
            error.part,
            "not shown, as an '@' follows the host: the URL may hold a password in the wrong "
            "place; percent-encode '/', '?' and '#' in the user name and password",
        ) from None


def _target(
    kind: Kind, tls: bool, scheme: str, userinfo: str, host_list: str, raw_path: str, query: str
) -> RedisTarget:
    username, password = _userinfo(userinfo)
    options = _query(query, kind, tls, scheme)
    query_username = options.pop("username", None)
    query_password = options.pop("password", None)
    username = username if username is not None else query_username
    password = password if password is not None else query_password
    query_db = options.pop("db", None)
    sentinel_credentials = {name: options.pop(name) for name in SENTINEL_OPTIONS if name in options}

    path: str | None = None
    service_name: str | None = None
    hosts: tuple[tuple[str, int], ...] = ()
    path_db: int | None = None
    if kind == "unix":
        path = unquote(raw_path)
        if not path:
            raise InvalidUrlError("path", "a unix:// URL needs the socket's path")
    else:
        hosts = _hosts(host_list, DEFAULT_PORTS[kind])
        if kind == "standalone" and len(hosts) > 1:
            raise InvalidUrlError(
                "host",
                f"{scheme}:// takes one host, not {len(hosts)}; for several use "
                "redis+sentinel:// (sentinels) or redis+cluster:// (cluster nodes)",
            )
        if kind == "sentinel":
            service_name, path_db = _sentinel_path(raw_path)
        else:
            path_db = _db_path(raw_path)
    db = query_db if query_db is not None else path_db
    if kind == "cluster" and db not in (None, 0):
        raise InvalidUrlError("db", f"a Redis Cluster has only db 0, not {db}")

    sentinel_username = sentinel_password = None
    if kind == "sentinel":
        if sentinel_credentials:
            sentinel_username = sentinel_credentials.get("sentinel_username") or None
            sentinel_password = sentinel_credentials.get("sentinel_password") or None
        else:
            sentinel_username, sentinel_password = username, password
    return RedisTarget(
        kind=kind,
        tls=tls,
        hosts=hosts,
        service_name=service_name,
        db=db,
        username=username,
        password=password,
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
        options=MappingProxyType(options),
        path=path,
    )


def _userinfo(userinfo: str) -> tuple[str | None, str | None]:
    raw_username, _, raw_password = userinfo.partition(":")
    return unquote(raw_username) or None, unquote(raw_password) or None


def _hosts(host_list: str, default_port: int) -> tuple[tuple[str, int], ...]:
    if not host_list:
        return (("localhost", default_port),)
    hosts: list[tuple[str, int]] = []
    for entry in host_list.split(","):
        host = _host(entry, default_port)
        if host in hosts:
            raise InvalidUrlError("host", f"{entry!r} is given twice")
        hosts.append(host)
    return tuple(hosts)


def _host(entry: str, default_port: int) -> tuple[str, int]:
    if not entry:
        raise InvalidUrlError("host", "an empty entry in the list of hosts")
    if entry.startswith("["):
        name, closing, after = entry[1:].partition("]")
        if not closing:
            raise InvalidUrlError("host", f"{entry!r} opens '[' without closing it")
        host = unquote(name)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidUrlError("host", f"{entry!r} is not an IPv6 address in brackets") from None
        if after and not after.startswith(":"):
            raise InvalidUrlError("host", f"{entry!r}: after ']' only ':port' may follow")
        port_text = after[1:]
    else:
        name, _, port_text = entry.partition(":")
        if ":" in port_text:
            raise InvalidUrlError(
                "host", f"{entry!r}: an IPv6 address goes in brackets, e.g. [::1]:26379"
            )
        host = unquote(name) or "localhost"
        if not _HOST_NAME.fullmatch(host):
            raise InvalidUrlError("host", f"{entry!r} is not a host name")
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise InvalidUrlError("port", f"{port_text!r} in {entry!r} is not a number from 1 to 65535")
    return host, int(port_text)


def _db(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise InvalidUrlError("db", f"{text!r} {where} is not a database number (0, 1, ...)")
    return int(text)


def _db_path(raw_path: str) -> int | None:
    segment = unquote(raw_path).strip("/")
    return None if not segment else _db(segment, "in the path")


def _sentinel_path(raw_path: str) -> tuple[str, int | None]:
    segments = raw_path[1:].split("/") if raw_path else []
    if segments and segments[-1] == "" and len(segments) > 1:
        segments.pop()  # a trailing slash
    if len(segments) > 2:
        raise InvalidUrlError(
            "path", "a Sentinel URL's path is /service_name or /service_name/db, no more"
        )
    service_name = unquote(segments[0]) if segments else ""
    if not service_name:
        service_name = DEFAULT_SERVICE_NAME
    elif not _SERVICE_NAME.fullmatch(service_name):
        raise InvalidUrlError(
            "service name", f"{service_name!r}: use letters, digits and '.', '-', '_' only"
        )
    db = _db(unquote(segments[1]), "after the service name") if len(segments) > 1 else None
    return service_name, db


def _accepted(kind: Kind, tls: bool) -> frozenset[str]:
    tables = (QUERY_PARAMETERS, TLS_QUERY_PARAMETERS) if tls else (QUERY_PARAMETERS,)
    return frozenset(name for table in tables for name, kinds in table.items() if kind in kinds)


def _query(query: str, kind: Kind, tls: bool, scheme: str) -> dict[str, Any]:
    accepted = _accepted(kind, tls)
    options: dict[str, Any] = {}
    seen: set[str] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        shown = "(not shown)" if name in SECRET_OPTIONS else repr(value)
        if name not in accepted:
            raise InvalidUrlError("query parameter", _why_not(name, kind, tls, scheme))
        if name in seen:
            raise InvalidUrlError("query parameter", f"{name!r} is given twice")
        seen.add(name)
        if value == "":
            if name in SENTINEL_OPTIONS:
                options[name] = ""
            continue  # as redis-py does
        parser = PARSERS.get(name)
        if parser is not None:
            try:
                parsed = parser(value)
            except (TypeError, ValueError):
                part = "db" if name == "db" else "query parameter"
                raise InvalidUrlError(part, f"{name}={shown} is not a valid value") from None
        else:
            parsed = value
        if name == "db" and parsed < 0:
            raise InvalidUrlError("db", f"db={shown} is negative")
        if name == "protocol" and parsed not in (2, 3):
            raise InvalidUrlError("query parameter", f"protocol={shown}: use 2 or 3")
        if name == "ssl_cert_reqs" and value not in CERT_REQS:
            raise InvalidUrlError(
                "query parameter", f"ssl_cert_reqs={shown}: use one of {', '.join(CERT_REQS)}"
            )
        options[name] = parsed
    return options


def _why_not(name: str, kind: Kind, tls: bool, scheme: str) -> str:
    if name in REFUSED_QUERY_PARAMETERS:
        return f"{name!r} cannot be given in a URL: {REFUSED_QUERY_PARAMETERS[name]}"
    if not tls and name in _accepted(kind, True):
        return f"{name!r} is a TLS option: use {scheme.replace('redis', 'rediss', 1)}://"
    if name in QUERY_PARAMETERS or name in TLS_QUERY_PARAMETERS:
        return f"{name!r} is not supported with {scheme}://"
    return f"unknown parameter {name!r}; known: {', '.join(sorted(_accepted(kind, tls)))}"


# ----------------------------------------------------------------------------- client factories


def _normalized(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest}"


def _data_node_kwargs(target: RedisTarget, client_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for the data nodes' connections: the URL wins over client_kwargs."""
    merged = dict(client_kwargs)
    merged.update(target.options)
    if target.tls:
        merged["ssl"] = True
    if target.username is not None:
        merged["username"] = target.username
    if target.password is not None:
        merged["password"] = target.password
    if target.db is not None and target.kind != "cluster":
        merged["db"] = target.db
    return merged


@dataclass(frozen=True)
class _SentinelPlan:
    sentinels: list[tuple[str, int]]
    sentinel_kwargs: dict[str, Any]
    manager_kwargs: dict[str, Any]
    master_kwargs: dict[str, Any]
    service_name: str


def _sentinel_plan(target: RedisTarget, client_kwargs: Mapping[str, Any]) -> _SentinelPlan:
    kwargs = dict(client_kwargs)
    extra_sentinel_kwargs = kwargs.pop("sentinel_kwargs", None) or {}
    manager_kwargs = {name: kwargs.pop(name) for name in _SENTINEL_MANAGER_ARGS if name in kwargs}
    master_kwargs = _data_node_kwargs(target, kwargs)
    sentinel_kwargs = {
        name: value for name, value in master_kwargs.items() if _SHARED_WITH_SENTINELS.match(name)
    }
    if target.sentinel_username is not None:
        sentinel_kwargs["username"] = target.sentinel_username
    if target.sentinel_password is not None:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel_kwargs.update(extra_sentinel_kwargs)
    assert target.service_name is not None
    return _SentinelPlan(
        list(target.hosts), sentinel_kwargs, manager_kwargs, master_kwargs, target.service_name
    )


class SentinelMaster(redis.Redis):
    """The client of a Sentinel-managed master: a ``redis.Redis`` that, closed, also closes the
    connections to its sentinels (redis-py leaves them to the caller, who here never sees the
    ``Sentinel`` object)."""

    def close(self) -> None:
        try:
            super().close()
        finally:
            manager = getattr(getattr(self, "connection_pool", None), "sentinel_manager", None)
            if manager is not None and self.auto_close_connection_pool:
                manager.close()


class AsyncSentinelMaster(redis.asyncio.Redis):
    """The asyncio twin of :class:`SentinelMaster`: ``aclose()`` closes the sentinels' too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            manager = getattr(self.connection_pool, "sentinel_manager", None)
            closes_pool = close_connection_pool or (
                close_connection_pool is None and self.auto_close_connection_pool
            )
            if manager is not None and closes_pool:
                await manager.aclose()


# A sentinel that does not answer is skipped for the next one at once: redis-py's default retries
# (10, with backoff) would spend seconds on it before asking the others, at every discovery.
def _build_sync_sentinel(plan: _SentinelPlan) -> SentinelMaster:
    sentinel_kwargs = {"retry": redis.retry.Retry(NoBackoff(), 0), **plan.sentinel_kwargs}
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        plan.sentinels,
        sentinel_kwargs=sentinel_kwargs,
        **plan.manager_kwargs,
        **plan.master_kwargs,
    )
    client: SentinelMaster = manager.master_for(  # type: ignore[no-untyped-call]
        plan.service_name, redis_class=SentinelMaster
    )
    return client


def _build_async_sentinel(plan: _SentinelPlan) -> AsyncSentinelMaster:
    sentinel_kwargs = {"retry": redis.asyncio.retry.Retry(NoBackoff(), 0), **plan.sentinel_kwargs}
    manager = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        plan.sentinels,
        sentinel_kwargs=sentinel_kwargs,
        **plan.manager_kwargs,
        **plan.master_kwargs,
    )
    client: AsyncSentinelMaster = manager.master_for(
        plan.service_name, redis_class=AsyncSentinelMaster
    )
    return client


def _build_sync_cluster(
    hosts: Iterable[tuple[str, int]], kwargs: Mapping[str, Any]
) -> redis.cluster.RedisCluster:
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in hosts]  # type: ignore[no-untyped-call]
    return redis.cluster.RedisCluster(startup_nodes=nodes, **kwargs)


def _build_async_cluster(
    hosts: Iterable[tuple[str, int]], kwargs: Mapping[str, Any]
) -> redis.asyncio.cluster.RedisCluster:
    nodes = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in hosts]
    return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **kwargs)


def sync_client_factory(url: str, **client_kwargs: Any) -> Callable[[], Any]:
    """Check ``url`` now (:class:`InvalidUrlError`) and return a callable that builds its sync
    client: ``redis.Redis`` (redis://, rediss://, unix://, via ``redis.Redis.from_url``), a
    Sentinel ``master_for`` client (:class:`SentinelMaster`, a ``redis.Redis``), or
    ``redis.cluster.RedisCluster``.
    Each call builds a new client. Only the RedisCluster's constructor connects."""
    target = parse_url(url)
    if target.kind in ("standalone", "unix"):
        return functools.partial(redis.Redis.from_url, _normalized(url), **client_kwargs)
    if target.kind == "sentinel":
        return functools.partial(_build_sync_sentinel, _sentinel_plan(target, client_kwargs))
    return functools.partial(
        _build_sync_cluster, target.hosts, _data_node_kwargs(target, client_kwargs)
    )


def async_client_factory(url: str, **client_kwargs: Any) -> Callable[[], Any]:
    """The asyncio twin of :func:`sync_client_factory`: ``redis.asyncio.Redis``, a Sentinel
    ``master_for`` client (:class:`AsyncSentinelMaster`, a ``redis.asyncio.Redis``), or
    ``redis.asyncio.cluster.RedisCluster``.
    Calling it never connects; it may be called inside or outside a running event loop."""
    target = parse_url(url)
    if target.kind in ("standalone", "unix"):
        return functools.partial(redis.asyncio.Redis.from_url, _normalized(url), **client_kwargs)
    if target.kind == "sentinel":
        return functools.partial(_build_async_sentinel, _sentinel_plan(target, client_kwargs))
    return functools.partial(
        _build_async_cluster, target.hosts, _data_node_kwargs(target, client_kwargs)
    )


# The two wrappers keep their old annotations for their callers; for a redis+cluster:// URL the
# client is a RedisCluster, which has the same command methods.
def client_from_url(url: str = DEFAULT_URL, **kwargs: Any) -> redis.Redis:
    """A new sync client for ``url`` (see :func:`sync_client_factory`)."""
    client: redis.Redis = sync_client_factory(url, **kwargs)()
    return client


def async_client_from_url(url: str = DEFAULT_URL, **kwargs: Any) -> redis.asyncio.Redis:
    """A new async client for ``url`` (see :func:`async_client_factory`)."""
    client: redis.asyncio.Redis = async_client_factory(url, **kwargs)()
    return client
