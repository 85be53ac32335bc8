"""The store over TLS: ``rediss://`` to a server on a TLS port only (Debian's redis-server links
OpenSSL 3), with a CA the tests make (trustme). Certificates are verified by default; mutual TLS
needs the client certificate; Sentinel and Cluster run every link over TLS."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from atomic_chat_store import (
    AsyncRedisChatStore,
    ChatMessage,
    ChatStoreError,
    OutcomeUnknownError,
    RedisChatStore,
    RetryPolicy,
)
from atomic_chat_store.keys import key_slot
from topologies import (
    ClusterTopology,
    SentinelTopology,
    TlsMaterial,
    TlsServer,
    start_cluster,
    start_sentinel,
)
from tour import TTL_SECONDS, assert_stored, run_async, run_sync

pytestmark = pytest.mark.topology

SHORT = RetryPolicy(attempts=3, timeout=1.5, backoff_base=0.01, backoff_cap=0.1)


def with_query(url: str, **parameters: str) -> str:
    return f"{url}?{urlencode(parameters)}"


def ca_only(tls: TlsMaterial | TlsServer) -> dict[str, str]:
    return {"ssl_ca_certs": str(tls.ca_file)}


def with_client_certificate(tls: TlsMaterial | TlsServer) -> dict[str, str]:
    return {
        **ca_only(tls),
        "ssl_certfile": str(tls.client_cert_file),
        "ssl_keyfile": str(tls.client_key_file),
    }


def causes(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def message(text: str) -> ChatMessage:
    return ChatMessage(content=text)


def on_server(server: TlsServer):
    return lambda _key: server.node.client()


# ---------------------------------------------------------------------------------------------
# Standalone


@pytest.mark.parametrize("how", ["url", "kwargs"])
def test_every_operation_over_tls(tls_server: TlsServer, how: str):
    """The CA given in the URL's query, or as a client keyword argument."""
    space = f"tls-{how}:"
    if how == "url":
        store = RedisChatStore.from_url(
            with_query(tls_server.url, **ca_only(tls_server)), ttl=TTL_SECONDS, namespace=space
        )
    else:
        store = RedisChatStore.from_url(
            tls_server.url, ttl=TTL_SECONDS, namespace=space, **ca_only(tls_server)
        )
    with store:
        run_sync(store, "conversation", "other")
    assert_stored(on_server(tls_server), f"{space}conversation".encode(), f"{space}other".encode())
    with tls_server.node.client() as client:
        client.flushdb()


async def test_every_operation_over_tls_async(tls_server: TlsServer):
    space = "tls-async:"
    url = with_query(tls_server.url, **ca_only(tls_server))
    async with AsyncRedisChatStore.from_url(url, ttl=TTL_SECONDS, namespace=space) as store:
        await run_async(store, "conversation", "other")
    assert_stored(on_server(tls_server), f"{space}conversation".encode(), f"{space}other".encode())
    with tls_server.node.client() as client:
        client.flushdb()


def test_certificate_verification_is_on_by_default(tls_server: TlsServer):
    """Without the CA the server's certificate is refused: a typed error that says so, at the
    first attempt (no retry can make an untrusted certificate trusted), and for a write never
    "may have been applied": the handshake failed before any command was sent."""
    with RedisChatStore.from_url(tls_server.url, retry=SHORT) as store:
        with pytest.raises(ChatStoreError) as read:
            store.count("conversation")
        with pytest.raises(ChatStoreError) as write:
            store.add_message("conversation", message("a"))
    for raised in (read.value, write.value):
        assert any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(raised)), raised
    assert getattr(read.value, "attempts", 1) == 1, f"retried: {read.value}"
    assert not isinstance(write.value, OutcomeUnknownError), write.value


async def test_certificate_verification_is_on_by_default_async(tls_server: TlsServer):
    async with AsyncRedisChatStore.from_url(tls_server.url, retry=SHORT) as store:
        with pytest.raises(ChatStoreError) as read:
            await store.get_messages("conversation")
        with pytest.raises(ChatStoreError) as write:
            await store.delete_last_message("conversation")
    for raised in (read.value, write.value):
        assert any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(raised)), raised
    assert getattr(read.value, "attempts", 1) == 1, f"retried: {read.value}"
    assert not isinstance(write.value, OutcomeUnknownError), write.value


def test_verification_can_only_be_turned_off_explicitly(tls_server: TlsServer):
    url = with_query(tls_server.url, ssl_cert_reqs="none")
    with RedisChatStore.from_url(url) as store:
        assert store.add_message("unverified", message("a")) == 1
        assert store.delete_messages("unverified")[0].content == "a"


def test_a_plaintext_url_on_the_tls_port_fails_typed(tls_server: TlsServer):
    url = tls_server.url.replace("rediss://", "redis://")
    with RedisChatStore.from_url(url, retry=SHORT) as store, pytest.raises(ChatStoreError):
        store.count("conversation")


def test_mutual_tls_needs_the_client_certificate(mutual_tls_server: TlsServer):
    server = mutual_tls_server
    without = with_query(server.url, **ca_only(server))
    # TLS 1.3: the server refuses the missing certificate after the client's handshake ends, so
    # the client sees an alert, or an EOF, or a reset: typed, whichever.
    with RedisChatStore.from_url(without, retry=SHORT) as store, pytest.raises(ChatStoreError):
        store.count("conversation")
    url = with_query(server.url, **with_client_certificate(server))
    with RedisChatStore.from_url(url, namespace="mutual:") as store:
        assert store.add_message("conversation", message("a")) == 1
        assert [m.content for m in store.get_messages("conversation")] == ["a"]
        store.delete_messages("conversation")


async def test_mutual_tls_needs_the_client_certificate_async(mutual_tls_server: TlsServer):
    server = mutual_tls_server
    without = with_query(server.url, **ca_only(server))
    async with AsyncRedisChatStore.from_url(without, retry=SHORT) as store:
        with pytest.raises(ChatStoreError):
            await store.count("conversation")
    options: dict[str, Any] = with_client_certificate(server)
    async with AsyncRedisChatStore.from_url(server.url, namespace="mutual:", **options) as store:
        assert await store.add_message("conversation", message("a")) == 1
        assert await store.delete_messages("conversation") is not None


# ---------------------------------------------------------------------------------------------
# Sentinel and Cluster over TLS


@pytest.fixture(scope="module")
def tls_sentinel() -> Iterator[SentinelTopology]:
    topology = start_sentinel(tls=True)
    yield topology
    topology.stop()


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[ClusterTopology]:
    topology = start_cluster(tls=True)
    yield topology
    topology.stop()


def certificates(topology: SentinelTopology | ClusterTopology) -> dict[str, str]:
    assert topology.tls is not None
    return with_client_certificate(topology.tls)


def test_every_operation_on_sentinel_over_tls(tls_sentinel: SentinelTopology):
    topology = tls_sentinel
    assert topology.url.startswith("rediss+sentinel://")
    url = with_query(topology.url, **certificates(topology))
    with RedisChatStore.from_url(url, ttl=TTL_SECONDS, namespace="s:") as store:
        run_sync(store, "conversation", "other")
    assert_stored(lambda _key: topology.master.client(), b"s:conversation", b"s:other")
    plain = redis.Redis(*topology.master.address, socket_timeout=2, retry=None)
    with pytest.raises(redis.ConnectionError):  # no plaintext port anywhere
        plain.ping()
    plain.close()


async def test_every_operation_on_sentinel_over_tls_async(tls_sentinel: SentinelTopology):
    topology = tls_sentinel
    url = with_query(topology.url, **certificates(topology))
    async with AsyncRedisChatStore.from_url(url, ttl=TTL_SECONDS, namespace="as:") as store:
        await run_async(store, "conversation", "other")
    assert_stored(lambda _key: topology.master.client(), b"as:conversation", b"as:other")


def test_sentinel_over_tls_without_the_ca_is_refused(tls_sentinel: SentinelTopology):
    # Typed; the reason is lost on the way: redis-py's MasterNotFoundError lists each sentinel's
    # error by its repr, which redis-py 8 shortens to "network:ConnectionError".
    store = RedisChatStore.from_url(tls_sentinel.url, retry=SHORT)
    with store, pytest.raises(ChatStoreError):
        store.count("conversation")


def on_cluster(topology: ClusterTopology):
    return lambda key: topology.primary_for_slot(key_slot(key)).client()


def test_every_operation_on_cluster_over_tls(tls_cluster: ClusterTopology):
    topology = tls_cluster
    assert topology.url.startswith("rediss+cluster://")
    url = with_query(topology.url, **certificates(topology))
    with RedisChatStore.from_url(url, ttl=TTL_SECONDS, namespace="c:") as store:
        run_sync(store, "conversation", "other")
    assert_stored(on_cluster(topology), b"c:conversation", b"c:other")


async def test_every_operation_on_cluster_over_tls_async(tls_cluster: ClusterTopology):
    topology = tls_cluster
    options: dict[str, Any] = certificates(topology)  # as keyword arguments, this time
    async with AsyncRedisChatStore.from_url(
        topology.url, ttl=TTL_SECONDS, namespace="ac:", **options
    ) as store:
        await run_async(store, "conversation", "other")
    assert_stored(on_cluster(topology), b"ac:conversation", b"ac:other")


def test_the_tests_ca_signed_the_servers_certificate(tls_server: TlsServer):
    """The CA file is the one the server's certificate chains to (so a refusal above is the
    missing CA, not a broken certificate)."""
    context = ssl.create_default_context(cafile=str(tls_server.ca_file))
    host, port = tls_server.node.address
    with (
        socket.create_connection((host, port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname=host) as wrapped,
    ):
        assert wrapped.getpeercert()["subjectAltName"]
    assert Path(tls_server.ca_file).read_text().startswith("-----BEGIN CERTIFICATE-----")
