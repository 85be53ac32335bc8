"""From a URL to a redis-py client, sync or async.

One table of URL schemes, so that topologies other than a single server (Sentinel, Cluster)
are added as rows without changing the stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio

DEFAULT_URL = "redis://localhost:6379/0"

_SYNC: dict[str, Callable[..., Any]] = {
    "redis": redis.Redis.from_url,
    "rediss": redis.Redis.from_url,
    "unix": redis.Redis.from_url,
}
_ASYNC: dict[str, Callable[..., Any]] = {
    "redis": redis.asyncio.Redis.from_url,
    "rediss": redis.asyncio.Redis.from_url,
    "unix": redis.asyncio.Redis.from_url,
}


def _factory(table: dict[str, Callable[..., Any]], url: str) -> Callable[..., Any]:
    if not isinstance(url, str):
        raise TypeError(f"a Redis URL must be a str, not {type(url).__name__}")
    scheme = urlsplit(url).scheme
    try:
        return table[scheme]
    except KeyError:
        known = ", ".join(f"{name}://" for name in table)
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}; use one of {known}") from None


def client_from_url(url: str = DEFAULT_URL, **kwargs: Any) -> redis.Redis:
    client: redis.Redis = _factory(_SYNC, url)(url, **kwargs)
    return client


def async_client_from_url(url: str = DEFAULT_URL, **kwargs: Any) -> redis.asyncio.Redis:
    client: redis.asyncio.Redis = _factory(_ASYNC, url)(url, **kwargs)
    return client


def sync_client_factory(url: str, **kwargs: Any) -> Callable[[], redis.Redis]:
    factory = _factory(_SYNC, url)
    return lambda: factory(url, **kwargs)


def async_client_factory(url: str, **kwargs: Any) -> Callable[[], redis.asyncio.Redis]:
    factory = _factory(_ASYNC, url)
    return lambda: factory(url, **kwargs)
