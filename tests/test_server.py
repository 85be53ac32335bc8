"""The launcher of private redis-server processes (the tests' fallback and bench's default)."""

from __future__ import annotations

import os

import pytest
import redis

from atomic_chat_store.server import (
    BINARY_ENV,
    RedisServer,
    ServerNotFoundError,
    ServerStartError,
)


def test_a_private_server_answers_and_leaves_nothing_behind():
    with RedisServer() as server:
        directory = server.directory
        assert directory is not None and os.path.isdir(directory)
        assert server.url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(server.url)
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("appendonly") == {"appendonly": "no"}
        client.close()
    assert not os.path.exists(directory)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(server.url, socket_connect_timeout=1).ping()


def test_a_port_served_by_another_server_is_never_handed_out():
    with RedisServer() as first:
        taken = RedisServer(port=first.port)
        with pytest.raises(ServerStartError):
            taken.start()
        assert taken.directory is None  # cleaned up
        assert redis.Redis.from_url(first.url).ping()


def test_a_missing_binary_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "no-such-redis-server"))
    with pytest.raises(ServerNotFoundError, match=BINARY_ENV):
        RedisServer()
    monkeypatch.delenv(BINARY_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServerNotFoundError, match="apt-get install redis-server"):
        RedisServer()
