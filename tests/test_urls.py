"""URL parsing and client factories, without any server: parse_url is sans-I/O, and the factories
build clients that do not connect until used (the sync RedisCluster aside, checked against a
closed port). The clients are checked by inspecting their pools and connection settings."""

from __future__ import annotations

import inspect
import re
from urllib.parse import quote

import hypothesis.strategies as st
import pytest
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.sentinel
from hypothesis import given

import atomic_chat_store.connection as connection
from atomic_chat_store.connection import (
    DEFAULT_URL,
    QUERY_PARAMETERS,
    REFUSED_QUERY_PARAMETERS,
    TLS_QUERY_PARAMETERS,
    AsyncSentinelMaster,
    RedisTarget,
    SentinelMaster,
    async_client_factory,
    async_client_from_url,
    client_from_url,
    parse_url,
    sync_client_factory,
)
from atomic_chat_store.errors import ChatStoreError, InvalidUrlError
from atomic_chat_store.server import free_port

SECRET = "Zq9-Secret"  # a password that must never appear in an error message

# --- accepted forms --------------------------------------------------------------------------


def test_invalid_url_error_is_a_chat_store_error_and_a_value_error() -> None:
    assert issubclass(InvalidUrlError, ChatStoreError)
    assert issubclass(InvalidUrlError, ValueError)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://sentinel-a",
            dict(kind="sentinel", tls=False, hosts=(("sentinel-a", 26379),),
                 service_name="mymaster", db=None),
        ),
        (
            "redis+sentinel://s1:26380,s2,10.0.0.3:5000/orders/4",
            dict(hosts=(("s1", 26380), ("s2", 26379), ("10.0.0.3", 5000)),
                 service_name="orders", db=4),
        ),
        (
            "redis+sentinel://[::1]:26379,[fe80::1]/svc",
            dict(hosts=(("::1", 26379), ("fe80::1", 26379)), service_name="svc"),
        ),
        ("redis+sentinel://h/svc/", dict(service_name="svc", db=None)),
        ("redis+sentinel://h//2", dict(service_name="mymaster", db=2)),
        ("redis+sentinel:///mymaster", dict(hosts=(("localhost", 26379),))),
        (
            "rediss+sentinel://h/s?ssl_cert_reqs=none",
            dict(tls=True, options={"ssl_cert_reqs": "none"}),
        ),
        (
            "redis+cluster://n1:7000,n2:7001,[::1]:7002",
            dict(kind="cluster", hosts=(("n1", 7000), ("n2", 7001), ("::1", 7002)), db=None,
                 service_name=None),
        ),
        ("redis+cluster://n1/0", dict(kind="cluster", hosts=(("n1", 6379),), db=0)),
        ("rediss+cluster://n1:7000?db=0", dict(kind="cluster", tls=True, db=0)),
        ("redis://h:6380/3", dict(kind="standalone", hosts=(("h", 6380),), db=3)),
        ("redis://", dict(kind="standalone", hosts=(("localhost", 6379),), db=None)),
        ("rediss://h", dict(kind="standalone", tls=True, hosts=(("h", 6379),))),
        ("redis://h/1?db=2", dict(db=2)),  # the query wins, as in redis-py
        ("REDIS+Sentinel://h/s", dict(kind="sentinel")),  # schemes are case-insensitive
        ("unix:///run/redis.sock?db=2", dict(kind="unix", path="/run/redis.sock", hosts=(), db=2)),
        ("redis://h/0#fragment", dict(db=0)),  # a fragment is ignored, as in redis-py
    ],
)  # fmt: skip
def test_accepted_forms(url: str, expected: dict[str, object]) -> None:
    target = parse_url(url)
    for name, value in expected.items():
        assert getattr(target, name) == value, name


def test_credentials_are_percent_decoded_and_are_the_masters() -> None:
    target = parse_url(f"redis+sentinel://app%40corp:{quote('p@ss:w/rd?#%', safe='')}@h/s")
    assert (target.username, target.password) == ("app@corp", "p@ss:w/rd?#%")
    # Without sentinel_* parameters the sentinels get the same ones, as in the seed.
    assert (target.sentinel_username, target.sentinel_password) == ("app@corp", "p@ss:w/rd?#%")


def test_sentinel_credentials_from_the_query() -> None:
    target = parse_url(
        "redis+sentinel://app:master-pw@h/s?sentinel_username=watcher&sentinel_password=s%26pw"
    )
    assert (target.username, target.password) == ("app", "master-pw")
    assert (target.sentinel_username, target.sentinel_password) == ("watcher", "s&pw")
    only_password = parse_url("redis+sentinel://app:master-pw@h/s?sentinel_password=spw")
    assert (only_password.sentinel_username, only_password.sentinel_password) == (None, "spw")
    none = parse_url("redis+sentinel://app:master-pw@h/s?sentinel_password=")
    assert (none.sentinel_username, none.sentinel_password) == (None, None)
    assert (none.username, none.password) == ("app", "master-pw")


def test_query_options_are_parsed_with_redis_pys_parsers() -> None:
    target = parse_url(
        "rediss+sentinel://h/s?socket_timeout=1.5&socket_connect_timeout=2&max_connections=7"
        "&socket_keepalive=no&health_check_interval=10&ssl_check_hostname=false"
        "&ssl_ca_certs=/etc/ca.pem&ssl_include_verify_flags=VERIFY_X509_STRICT,VERIFY_CRL_CHECK_LEAF"
        "&client_name=chat%20store&protocol=3&retry_on_timeout=yes"
    )
    assert dict(target.options) == {
        "socket_timeout": 1.5,
        "socket_connect_timeout": 2.0,
        "max_connections": 7,
        "socket_keepalive": False,
        "health_check_interval": 10,
        "ssl_check_hostname": False,
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_include_verify_flags": redis.connection.parse_ssl_verify_flags(
            "VERIFY_X509_STRICT,VERIFY_CRL_CHECK_LEAF"
        ),
        "client_name": "chat store",
        "protocol": 3,
        "retry_on_timeout": True,
    }


def test_an_empty_value_is_ignored_as_in_redis_py() -> None:
    assert dict(parse_url("redis://h?socket_timeout=&client_name=").options) == {}


def test_query_credentials_and_the_user_info() -> None:
    assert parse_url("unix:///s.sock?password=pw&username=u").password == "pw"
    both = parse_url("redis://u1:pw1@h?username=u2&password=pw2")
    assert (both.username, both.password) == ("u1", "pw1")  # the user info wins, as in redis-py


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://h",
        "redis://:pw@h:1/2",
        "redis://user:p%40ss@h:1?db=3&socket_timeout=2.5",
        "rediss://u:pw@[::1]:6380/1?ssl_cert_reqs=none&ssl_check_hostname=no",
        "redis://h/4?client_name=x&health_check_interval=3&max_connections=5",
        "unix://u:pw@/tmp/redis.sock?db=1",
        "unix:///tmp/redis.sock",
    ],
)
def test_plain_urls_mean_what_they_mean_to_redis_py(url: str) -> None:
    """The differential check: the same host, port, db, credentials and options as redis-py's
    own parse_url, for the URLs that redis-py takes."""
    theirs = redis.connection.parse_url(url)
    ours = parse_url(url)
    expected = {name: value for name, value in theirs.items() if name not in ("connection_class",)}
    got: dict[str, object] = dict(ours.options)
    if ours.kind == "unix":
        got["path"] = ours.path
    else:
        host, port = ours.hosts[0]
        got["host"] = host
        if "port" in theirs:
            got["port"] = port
    for name in ("username", "password", "db"):
        if getattr(ours, name) is not None:
            got[name] = getattr(ours, name)
    if "host" not in theirs and ours.kind != "unix":  # redis-py leaves it to the default
        expected["host"] = "localhost"
    assert got == expected
    assert ours.tls == (theirs.get("connection_class") is redis.connection.SSLConnection)


# --- the seed's URLs -------------------------------------------------------------------------

SEED_URLS = [
    "redis+sentinel://localhost:26379/mymaster/0",
    "redis+sentinel://sentinelhost/mymaster",
    "redis+sentinel://username:password@sentinelhost:26379/mymaster/0",  # its docstring's example
    "redis+sentinel://:password@10.0.0.1:26380/svc/3",
    "redis+sentinel://sentinelhost",
    "redis+sentinel://sentinelhost/",
    "redis+sentinel://h//2",
    "redis+sentinel:///mymaster",
    "redis+sentinel://[::1]:26379/mymaster",
    "rediss+sentinel://user:pw@h:26379/mymaster/1",
]


@pytest.mark.parametrize("url", SEED_URLS)
def test_the_seeds_sentinel_urls_mean_the_same(url: str) -> None:
    from llama_index.storage.chat_store.redis import RedisChatStore as SeedChatStore

    # The seed's parser reads nothing from the instance: called on a bare one, without I/O.
    seed = SeedChatStore.__new__(SeedChatStore)
    sentinel_args, sentinel_list, service_name, master_kwargs = seed._redis_sentinel_parser(url)
    target = parse_url(url)
    assert target.kind == "sentinel"
    assert target.tls == url.startswith("rediss")
    assert list(target.hosts) == sentinel_list
    assert target.service_name == service_name
    assert target.db == (int(master_kwargs["db"]) if "db" in master_kwargs else None)
    assert target.username == master_kwargs.get("username")
    assert target.password == master_kwargs.get("password")
    assert target.sentinel_username == sentinel_args.get("username")
    assert target.sentinel_password == sentinel_args.get("password")


# --- refused forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "part", "detail"),
    [
        ("http://h:1", "scheme", "'http'"),
        ("redis+sentinels://h", "scheme", "'redis+sentinels'"),
        ("localhost:6379", "scheme", "no scheme"),
        (f"redis://:{SECRET}@h1,h2", "host", "takes one host"),
        (f"redis+sentinel://:{SECRET}@h1,,h2/s", "host", "empty entry"),
        (f"redis+sentinel://:{SECRET}@h1:1,h1:1/s", "host", "twice"),
        (f"redis+sentinel://:{SECRET}@::1:26379/s", "host", "brackets"),
        (f"redis+sentinel://:{SECRET}@[::1/s", "host", "without closing"),
        (f"redis+sentinel://:{SECRET}@[not-v6]:1/s", "host", "not an IPv6"),
        (f"redis+sentinel://:{SECRET}@[::1]x/s", "host", "after ']'"),
        (f"redis+sentinel://:{SECRET}@h%20x/s", "host", "'h%20x'"),
        (f"redis+sentinel://:{SECRET}@h:0/s", "port", "'0'"),
        (f"redis+sentinel://:{SECRET}@h:65536/s", "port", "'65536'"),
        (f"redis+sentinel://:{SECRET}@h:2637a/s", "port", "'2637a'"),
        (f"redis+sentinel://:{SECRET}@h:-1/s", "port", "'-1'"),
        (f"redis+sentinel://:{SECRET}@h/my%20master", "service name", "'my master'"),
        (f"redis+sentinel://:{SECRET}@h/s/x", "db", "'x'"),
        (f"redis+sentinel://:{SECRET}@h/s/1/2", "path", "/service_name/db"),
        (f"redis://:{SECRET}@h/abc", "db", "'abc'"),
        (f"redis://:{SECRET}@h/0/1", "db", "'0/1'"),
        (f"redis://:{SECRET}@h?db=-1", "db", "negative"),
        (f"redis://:{SECRET}@h?db=one", "db", "'one'"),
        (f"redis+cluster://:{SECRET}@h/1", "db", "only db 0"),
        (f"redis+cluster://:{SECRET}@h?db=2", "db", "only db 0"),
        ("unix://", "path", "socket"),
        (f"redis://:{SECRET}@h?socket_timeout=soon", "query parameter", "socket_timeout='soon'"),
        (f"redis://:{SECRET}@h?socket_keepalive=1&socket_keepalive=0", "query parameter", "twice"),
        (f"redis://:{SECRET}@h?colour=blue", "query parameter", "unknown parameter 'colour'"),
        (f"redis://:{SECRET}@h?ssl_ca_certs=/ca.pem", "query parameter", "use rediss://"),
        (f"redis+sentinel://:{SECRET}@h?ssl_certfile=c", "query parameter", "rediss+sentinel://"),
        (f"rediss://:{SECRET}@h?ssl_cert_reqs=maybe", "query parameter", "'maybe'"),
        (f"rediss://:{SECRET}@h?ssl_include_verify_flags=NOPE", "query parameter", "'NOPE'"),
        (f"redis://:{SECRET}@h?protocol=4", "query parameter", "protocol='4'"),
        (f"redis://:{SECRET}@h?timeout=5", "query parameter", "BlockingConnectionPool"),
        (f"redis://:{SECRET}@h?retry_on_error=x", "query parameter", "keyword argument"),
        (f"redis://:{SECRET}@h?sentinel_password=x", "query parameter", "'sentinel_password'"),
        (f"redis+cluster://:{SECRET}@h?health_check_interval=3", "query parameter", "cluster"),
        (f"rediss+cluster://:{SECRET}@h?ssl_ciphers=HIGH", "query parameter", "cluster"),
        ("unix:///s.sock?socket_keepalive=yes", "query parameter", "unix://"),
        ("unix:///s.sock?ssl_ca_certs=x", "query parameter", "unix://"),
    ],
)  # fmt: skip
def test_refused_forms_name_the_part_and_never_the_password(
    url: str, part: str, detail: str
) -> None:
    with pytest.raises(InvalidUrlError) as refused:
        parse_url(url)
    assert refused.value.part == part
    assert detail in str(refused.value)
    assert str(refused.value).startswith(f"invalid Redis URL, {part}: ")
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("name", ["password", "sentinel_password", "ssl_password"])
def test_a_secret_query_value_is_never_shown(name: str) -> None:
    with pytest.raises(InvalidUrlError) as refused:
        parse_url(f"rediss+sentinel://h/s?{name}={SECRET}&{name}={SECRET}2")
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://user:{SECRET}/x@h/0",  # an unencoded / cuts the URL inside the password
        f"redis://user:{SECRET}?x@h/0",
        f"redis://user:{SECRET}#x@h/0",
        f"redis+sentinel://user:26379/{SECRET}@h/s",  # would look like a valid host and path
        f"redis+cluster://user:{SECRET[:4]}/{SECRET}@h1,h2",
    ],
)
def test_a_password_with_unencoded_delimiters_is_not_shown(url: str) -> None:
    with pytest.raises(InvalidUrlError) as refused:
        parse_url(url)
    message = str(refused.value)
    assert SECRET not in message and SECRET[:4] not in message
    assert "percent-encode" in message


def test_a_url_that_is_not_a_str() -> None:
    with pytest.raises(TypeError, match="bytes"):
        parse_url(b"redis://h")  # type: ignore[arg-type]


def test_repr_hides_the_passwords() -> None:
    target = parse_url(
        f"rediss+sentinel://u:{SECRET}@h/s?sentinel_password={SECRET}&ssl_password={SECRET}"
    )
    assert SECRET not in repr(target)
    assert "'***'" in repr(target)


# --- property-based: host lists and credentials ----------------------------------------------

host_names = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z][a-z0-9-]{0,15}){0,2}", fullmatch=True)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.none() | st.integers(1, 65535)
hosts_and_ports = st.lists(
    st.tuples(st.one_of(host_names, ipv4, ipv6), ports), min_size=1, max_size=6
)
# Anything but surrogates, which no URL can carry.
free_text = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20)


def format_host(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


@given(
    entries=hosts_and_ports,
    kind=st.sampled_from([("redis+sentinel", 26379), ("redis+cluster", 6379)]),
)
def test_host_lists_round_trip(
    entries: list[tuple[str, int | None]], kind: tuple[str, int]
) -> None:
    scheme, default_port = kind
    expected = [(host, default_port if port is None else port) for host, port in entries]
    url = f"{scheme}://" + ",".join(format_host(host, port) for host, port in entries)
    if len(set(expected)) < len(expected):
        with pytest.raises(InvalidUrlError, match="twice"):
            parse_url(url)
        return
    assert list(parse_url(url).hosts) == expected


@given(username=free_text, password=free_text)
def test_credentials_round_trip_as_in_redis_py(username: str, password: str) -> None:
    userinfo = f"{quote(username, safe='')}:{quote(password, safe='')}"
    theirs = redis.connection.parse_url(f"redis://{userinfo}@h:1/0")
    plain = parse_url(f"redis://{userinfo}@h:1/0")
    assert (plain.username, plain.password) == (theirs["username"], theirs["password"])
    assert (plain.username, plain.password) == (username, password)
    sentinel = parse_url(f"rediss+sentinel://{userinfo}@h1,h2/svc")
    assert (sentinel.username, sentinel.password) == (username, password)


@given(
    password=free_text,
    broken=st.sampled_from(
        ["h:0/s", "h:x/s", "h1,,h2/s", "h/s/x", "h/s?socket_timeout=x", "h/s?nope=1", "h/bad name"]
    ),
)
def test_a_password_is_never_in_an_error_message(password: str, broken: str) -> None:
    marked = f"{SECRET}{password}"
    encoded = quote(marked, safe="")
    with pytest.raises(InvalidUrlError) as refused:
        parse_url(f"redis+sentinel://user:{encoded}@{broken}")
    assert SECRET not in str(refused.value)
    assert encoded not in str(refused.value)


# --- the clients the factories build ---------------------------------------------------------


def sentinel_addresses(manager: redis.sentinel.Sentinel) -> list[tuple[str, int]]:
    return [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in manager.sentinels
    ]


def test_a_bad_url_is_refused_when_the_factory_is_made() -> None:
    for factory in (sync_client_factory, async_client_factory):
        with pytest.raises(InvalidUrlError, match="port"):
            factory("redis+sentinel://h:0/s")
    with pytest.raises(ValueError, match="scheme"):
        client_from_url("http://127.0.0.1:1")


def test_sync_sentinel_client() -> None:
    url = (
        "redis+sentinel://app:master-pw@s1:26380,[::1]/orders/2"
        "?sentinel_password=sentinel-pw&socket_timeout=1.5&client_name=chat"
    )
    client = sync_client_factory(url, max_connections=5)()
    try:
        assert isinstance(client, SentinelMaster) and isinstance(client, redis.Redis)
        pool = client.connection_pool
        assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
        assert pool.service_name == "orders" and pool.is_master
        assert pool.connection_class is redis.sentinel.SentinelManagedConnection
        assert pool.max_connections == 5
        kwargs = pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", "master-pw", 2)
        assert (kwargs["socket_timeout"], kwargs["client_name"]) == (1.5, "chat")
        manager = pool.sentinel_manager
        assert sentinel_addresses(manager) == [("s1", 26380), ("::1", 26379)]
        for sentinel in manager.sentinels:
            sentinel_kwargs = sentinel.connection_pool.connection_kwargs
            assert sentinel_kwargs["username"] is None
            assert sentinel_kwargs["password"] == "sentinel-pw"
            assert sentinel_kwargs["db"] == 0  # the master's db is not sent to the sentinels
            assert (sentinel_kwargs["socket_timeout"], sentinel_kwargs["client_name"]) == (
                1.5,
                "chat",
            )
            assert sentinel.connection_pool.connection_class is redis.connection.Connection
            assert sentinel.get_retry().get_retries() == 0
            assert sentinel.connection_pool._created_connections == 0  # nothing connected
    finally:
        client.close()


def test_tls_sentinel_client_has_tls_to_the_master_and_the_sentinels() -> None:
    url = "rediss+sentinel://h1,h2/s?ssl_cert_reqs=optional&ssl_ca_certs=/ca.pem&ssl_check_hostname=no"
    client = sync_client_factory(url)()
    try:
        pool = client.connection_pool
        assert pool.connection_class is redis.sentinel.SentinelManagedSSLConnection
        connection_kwargs = pool.connection_kwargs
        assert connection_kwargs["ssl_cert_reqs"] == "optional"
        assert connection_kwargs["ssl_ca_certs"] == "/ca.pem"
        assert connection_kwargs["ssl_check_hostname"] is False
        for sentinel in pool.sentinel_manager.sentinels:
            assert sentinel.connection_pool.connection_class is redis.connection.SSLConnection
            assert sentinel.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
            assert sentinel.connection_pool.connection_kwargs["ssl_cert_reqs"] == "optional"
    finally:
        client.close()


def test_the_url_wins_over_client_kwargs_which_extend_it() -> None:
    client = sync_client_factory(
        "redis+sentinel://u:url-pw@h/s/3?socket_timeout=1",
        socket_timeout=9, password="kw-pw", db=5, health_check_interval=7,
        sentinel_kwargs={"socket_timeout": 0.5, "password": "other"},
        min_other_sentinels=1,
    )()  # fmt: skip
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["socket_timeout"], kwargs["password"], kwargs["db"]) == (1.0, "url-pw", 3)
        assert kwargs["health_check_interval"] == 7
        manager = client.connection_pool.sentinel_manager
        assert manager.min_other_sentinels == 1
        sentinel_kwargs = manager.sentinels[0].connection_pool.connection_kwargs
        assert (sentinel_kwargs["socket_timeout"], sentinel_kwargs["password"]) == (0.5, "other")
    finally:
        client.close()
    plain = sync_client_factory("redis://h/2?socket_timeout=1", socket_timeout=9, db=4)()
    assert plain.connection_pool.connection_kwargs["socket_timeout"] == 1.0  # as redis-py
    assert plain.connection_pool.connection_kwargs["db"] == 2
    plain.close()


async def test_async_sentinel_client_inside_a_running_loop() -> None:
    url = "rediss+sentinel://app:pw@s1,s2:1234/svc/1?ssl_cert_reqs=none&sentinel_username=w&sentinel_password=spw"
    client = async_client_factory(url)()
    try:
        assert isinstance(client, AsyncSentinelMaster)
        assert isinstance(client, redis.asyncio.Redis)
        pool = client.connection_pool
        assert isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool)
        assert pool.connection_class is redis.asyncio.sentinel.SentinelManagedSSLConnection
        kwargs = pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("app", "pw", 1)
        manager = pool.sentinel_manager
        assert sentinel_addresses(manager) == [("s1", 26379), ("s2", 1234)]
        for sentinel in manager.sentinels:
            sentinel_kwargs = sentinel.connection_pool.connection_kwargs
            assert (sentinel_kwargs["username"], sentinel_kwargs["password"]) == ("w", "spw")
            assert sentinel_kwargs["ssl_cert_reqs"] == "none"
            assert (
                sentinel.connection_pool.connection_class is redis.asyncio.connection.SSLConnection
            )
            assert sentinel.get_retry().get_retries() == 0
    finally:
        await client.aclose()


async def test_async_cluster_client_inside_a_running_loop() -> None:
    url = "rediss+cluster://u:p%40w@n1:7000,[::1]:7001,n3/0?ssl_cert_reqs=none&socket_timeout=2"
    client = async_client_factory(url, require_full_coverage=False)()
    try:
        assert isinstance(client, redis.asyncio.cluster.RedisCluster)
        assert [(n.host, n.port) for n in client.startup_nodes] == [
            ("n1", 7000), ("::1", 7001), ("n3", 6379)
        ]  # fmt: skip
        kwargs = client.connection_kwargs
        assert kwargs["connection_class"] is redis.asyncio.connection.SSLConnection
        assert (kwargs["username"], kwargs["password"]) == ("u", "p@w")
        assert (kwargs["ssl_cert_reqs"], kwargs["socket_timeout"]) == ("none", 2.0)
        assert "db" not in kwargs
        assert client.nodes_manager.require_full_coverage is False  # a keyword argument, passed on
    finally:
        await client.aclose()


def test_sync_cluster_connects_only_when_the_factory_is_called() -> None:
    factory = sync_client_factory(f"redis+cluster://127.0.0.1:{free_port()}")  # no I/O yet
    with pytest.raises(redis.exceptions.RedisClusterException, match="connect"):
        factory()  # RedisCluster's constructor connects: the store calls this on first use


def test_plain_clients_are_redis_pys_from_url() -> None:
    client = sync_client_factory("REDIS://u:pw@h:1/3?socket_timeout=2", max_connections=4)()
    reference = redis.Redis.from_url("redis://u:pw@h:1/3?socket_timeout=2", max_connections=4)
    try:
        assert type(client) is redis.Redis
        assert client.connection_pool.max_connections == 4
        ours, theirs = client.connection_pool, reference.connection_pool
        assert ours.connection_class is theirs.connection_class
        for name in ("host", "port", "db", "username", "password", "socket_timeout"):
            assert ours.connection_kwargs[name] == theirs.connection_kwargs[name], name
    finally:
        client.close()
        reference.close()


async def test_the_wrappers() -> None:
    assert DEFAULT_URL == "redis://localhost:6379/0"
    sync_client = client_from_url()
    assert type(sync_client) is redis.Redis
    assert sync_client.connection_pool.connection_kwargs["host"] == "localhost"
    sync_client.close()
    async_client = async_client_from_url("redis+sentinel://h/s", socket_timeout=3)
    assert isinstance(async_client, AsyncSentinelMaster)
    assert async_client.connection_pool.connection_kwargs["socket_timeout"] == 3
    await async_client.aclose()


def test_each_call_builds_a_new_client() -> None:
    factory = sync_client_factory("redis+sentinel://h/s")
    first, second = factory(), factory()
    assert first is not second
    assert first.connection_pool.sentinel_manager is not second.connection_pool.sentinel_manager
    first.close()
    second.close()


# --- every documented query parameter reaches a connection -----------------------------------

SAMPLE_VALUES = {
    "socket_timeout": "1.5", "socket_connect_timeout": "2", "socket_read_size": "65536",
    "max_connections": "7", "protocol": "3", "legacy_responses": "true", "client_name": "me",
    "encoding": "utf-8", "encoding_errors": "strict", "decode_responses": "yes", "lib_name": "x",
    "lib_version": "1", "username": "u", "password": "p", "db": "1", "socket_keepalive": "true",
    "retry_on_timeout": "yes", "health_check_interval": "3", "sentinel_username": "su",
    "sentinel_password": "sp", "ssl_cert_reqs": "none", "ssl_ca_certs": "/ca.pem",
    "ssl_ca_data": "data", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem",
    "ssl_check_hostname": "false", "ssl_include_verify_flags": "VERIFY_X509_STRICT",
    "ssl_exclude_verify_flags": "VERIFY_X509_PARTIAL_CHAIN", "ssl_ca_path": "/certs",
    "ssl_password": "pw", "ssl_ciphers": "HIGH", "ssl_min_version": "771",
}  # fmt: skip
KIND_URLS = {
    "standalone": "redis://127.0.0.1:1",
    "unix": "unix:///tmp/atomic-chat-store-none.sock",
    "sentinel": "redis+sentinel://127.0.0.1:1/svc",
    "cluster": "redis+cluster://127.0.0.1:1",
}
ALL_PARAMETERS = {**QUERY_PARAMETERS, **TLS_QUERY_PARAMETERS}


def test_every_query_parameter_has_a_sample_and_is_documented() -> None:
    assert set(SAMPLE_VALUES) == set(ALL_PARAMETERS)
    for name in [*ALL_PARAMETERS, *REFUSED_QUERY_PARAMETERS]:
        assert f"``{name}``" in (connection.__doc__ or ""), name


def cluster_parameters(cluster_class: type) -> set[str]:
    function = cluster_class.__init__
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    return set(inspect.signature(function).parameters)


# redis-py 8 deprecates these two (for driver_info, which no URL can give) but still takes them.
@pytest.mark.filterwarnings("ignore:.*'lib_(name|version)':DeprecationWarning")
@pytest.mark.parametrize(
    ("name", "kind", "tls"),
    [
        (name, kind, tls)
        for name, kinds in ALL_PARAMETERS.items()
        for kind in kinds
        for tls in ((True,) if name in TLS_QUERY_PARAMETERS else (False, True))
        if not (tls and kind == "unix")
    ],
)
async def test_each_accepted_parameter_reaches_the_connections(
    name: str, kind: str, tls: bool
) -> None:
    """A parameter accepted for a kind of URL must be one its clients take: a connection object
    is made from the pool (no I/O), so a keyword the connection class refuses fails here, not at
    the first command. The sync RedisCluster connects in its constructor: its keyword filter is
    checked instead."""
    base = KIND_URLS[kind]
    if tls:
        base = base.replace("redis", "rediss", 1)
    value = "0" if (kind, name) == ("cluster", "db") else SAMPLE_VALUES[name]
    url = f"{base}?{name}={quote(value, safe='/,')}"
    if kind == "cluster":
        allowed = set(redis.cluster.REDIS_ALLOWED_KEYS) | cluster_parameters(
            redis.cluster.RedisCluster
        )
        assert name in allowed
        assert name in cluster_parameters(redis.asyncio.cluster.RedisCluster)
        client = async_client_factory(url)()
        await client.aclose()
        return
    sync_client = sync_client_factory(url)()
    connections = [sync_client.connection_pool.make_connection()]
    async_client = async_client_factory(url)()
    connections.append(async_client.connection_pool.make_connection())
    if kind == "sentinel":  # what is shared with the sentinels must suit them too
        for client in (sync_client, async_client):
            for sentinel in client.connection_pool.sentinel_manager.sentinels:
                connections.append(sentinel.connection_pool.make_connection())
    assert all(connections)
    sync_client.close()
    await async_client.aclose()


def test_the_query_parameter_names_follow_redis_py() -> None:
    # The typed parameters are redis-py's own (its table), bar the two refused ones.
    table = set(redis.connection.URL_QUERY_ARGUMENT_PARSERS)
    assert table - set(ALL_PARAMETERS) == set(REFUSED_QUERY_PARAMETERS)
    assert all(re.fullmatch(r"[a-z_]+", name) for name in ALL_PARAMETERS)


def test_parse_url_and_redis_target_are_sans_io_values() -> None:
    target = parse_url("redis+sentinel://h1,h2/s?socket_timeout=1")
    assert isinstance(target, RedisTarget)
    assert target == parse_url("redis+sentinel://h1,h2/s?socket_timeout=1")
    assert hash(target) == hash(parse_url("redis+sentinel://h1,h2/s?socket_timeout=1"))
    with pytest.raises(TypeError):
        target.options["socket_timeout"] = 2  # type: ignore[index]
