"""Client address and scheme behind trusted proxies: believed from them, ignored from anyone else.

The layer is checked as an ASGI app in front of a small app that reports the scope it was given
(the product itself never reveals a client's address). The real app and the real server show
the forwarded scheme where it is visible: the absolute URL of FastAPI's redirect of a path with
a trailing slash.
"""

import asyncio
import ipaddress
from collections.abc import Mapping
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from tests.server import running_server
from visit_tracker.api.observer import RequestObserver
from visit_tracker.api.proxies import (
    PEERS_REMEMBERED,
    TrustedProxies,
    address_of,
    behind_proxies,
)
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

PROXIES = "10.0.0.0/8,192.0.2.10,fd00:1::/64"
"""A private network of proxies, one proxy elsewhere, an IPv6 network of proxies."""


async def report_scope(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the client address and scheme it was given, for the test to read."""
    assert scope["type"] == "http"
    body = f"{scope['client'][0]} {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def seen(
    *, peer: str, headers: Mapping[str, str] | list[tuple[str, str]], trusted: str = PROXIES
) -> tuple[str, str]:
    """The (client address, scheme) the app behind the layer sees for a request from `peer`."""
    app = behind_proxies(report_scope, trusted_proxies=trusted)
    # Not entered as a context: `report_scope` has no lifespan to run.
    address, scheme = TestClient(app, client=(peer, 40000)).get("/", headers=headers).text.split()
    return address, scheme


@pytest.mark.parametrize(
    "text",
    [
        "10.0.12.34", " 10.0.12.34 ", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4",
        "1.2.3.04", "1.2.3", "1.2.3.4.5", "1.2.3.4 5", "1.2.3.\u0664", "0x1.2.3.4", "1.2.3.4\x00",
        "", "unknown", "::1", "::ffff:10.0.0.1", "2001:db8::1", "fe80::1%eth0", "2001:db8::g",
    ],
)  # fmt: skip
def test_an_address_is_read_as_the_standard_library_reads_it(text: str) -> None:
    """A bare entry of a forwarded header is an address exactly when `ipaddress` says so and
    it has no zone, the same address, IPv4-mapped ones as IPv4."""
    try:
        expected = ipaddress.ip_address(text.strip())
    except ValueError:
        assert address_of(text) is None
        return
    if isinstance(expected, ipaddress.IPv6Address):
        if expected.scope_id is not None:
            assert address_of(text) is None
            return
        if expected.ipv4_mapped is not None:
            expected = expected.ipv4_mapped
    assert address_of(text) == expected


def test_an_entry_with_a_zone_is_no_client_address() -> None:
    """An IPv6 entry with a zone, which `ipaddress` takes with any text after its `%`, never
    becomes the client's address: the walk ends there, at the trusted proxy to its right."""
    forwarded = {"X-Forwarded-For": '::1%"><script>, 192.0.2.10'}
    assert seen(peer="10.1.2.3", headers=forwarded) == ("192.0.2.10", "http")
    assert address_of("fe80::1%eth0") is None


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("203.0.113.7:51234", "203.0.113.7"),
        (" 203.0.113.7:51234 ", "203.0.113.7"),
        ("203.0.113.7:0", "203.0.113.7"),
        ("203.0.113.7:65535", "203.0.113.7"),
        ("203.0.113.7:00080", "203.0.113.7"),
        ("[2001:db8::1]:51234", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:DB8:0::1]:1", "2001:db8::1"),
        ("[::ffff:10.0.0.1]:51234", "10.0.0.1"),
        # Without brackets every colon belongs to the IPv6 address: no port is split off.
        ("::1:80", "::1:80"),
    ],
)
def test_an_address_is_read_from_an_rfc_7239_node(text: str, address: str) -> None:
    """IPv4 with a port, and IPv6 in brackets with or without one, are read as their address."""
    assert address_of(text) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "text",
    [
        "203.0.113.7:",  # a colon without a port
        "203.0.113.7:65536",  # past the highest port
        "203.0.113.7:99999",
        "203.0.113.7:123456",  # more than five digits
        "203.0.113.7:8٤",  # a digit, but not an ASCII one
        "203.0.113.7:80:80",  # two ports
        "203.0.113.7 :80",
        "01.2.3.4:80",  # an IPv4 address the bare form refuses too
        "unknown:80",
        "[::1",  # brackets not closed
        "::1]:80",  # nor opened
        "[::1]:",
        "[::1]80",
        "[ ::1]",
        "[1.2.3.4]",  # brackets hold IPv6 only
        "[1.2.3.4]:80",
        "[fe80::1%eth0]",  # a zone is no part of RFC 7239's IPv6 address
        "[2001:db8::g]:80",
    ],
)
def test_a_malformed_node_holds_no_address(text: str) -> None:
    """A port or brackets outside RFC 7239's node syntax leave an entry that is no address."""
    assert address_of(text) is None


def test_forwarded_headers_from_an_untrusted_client_are_ignored() -> None:
    """A client that is no trusted proxy keeps its own address and scheme whatever it claims."""
    spoofed = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    assert seen(peer="203.0.113.9", headers=spoofed) == ("203.0.113.9", "http")
    assert seen(peer="2001:db8::9", headers=spoofed) == ("2001:db8::9", "http")


def test_a_trusted_proxy_names_the_client_and_scheme() -> None:
    """From a trusted proxy, X-Forwarded-For gives the client and X-Forwarded-Proto the scheme."""
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    assert seen(peer="10.1.2.3", headers=forwarded) == ("198.51.100.7", "https")
    assert seen(peer="192.0.2.10", headers=forwarded) == ("198.51.100.7", "https")


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        # Two proxies: the outer one (192.0.2.10) appended the client it received the request from.
        ([("X-Forwarded-For", "198.51.100.7, 192.0.2.10")], "198.51.100.7"),
        # Whatever the client wrote itself stays left of what the first proxy appended.
        (
            [("X-Forwarded-For", "1.1.1.1, 8.8.8.8, 198.51.100.7, 192.0.2.10, 10.0.0.5")],
            "198.51.100.7",
        ),
        # Proxies that add a header line each instead of appending to one.
        (
            [("X-Forwarded-For", "1.1.1.1, 198.51.100.7"), ("X-Forwarded-For", "10.0.0.5")],
            "198.51.100.7",
        ),
        # Every hop a trusted proxy: the request came from inside; the earliest hop is its client.
        ([("X-Forwarded-For", "10.9.9.9, 10.0.0.5")], "10.9.9.9"),
        # No proxy writes a non-address: a trusted host sent it as a client, and is the client.
        ([("X-Forwarded-For", "198.51.100.7, unknown, 10.0.0.5")], "10.0.0.5"),
        # Nothing usable at all: the proxy itself stays the client.
        ([("X-Forwarded-For", "198.51.100.7, unknown")], "10.0.0.1"),
        ([("X-Forwarded-For", "")], "10.0.0.1"),
    ],
)
def test_a_chain_of_proxies_resolves_to_the_rightmost_untrusted_address(
    headers: list[tuple[str, str]], client: str
) -> None:
    """Walking X-Forwarded-For from the right, the first address no trusted proxy owns wins."""
    assert seen(peer="10.0.0.1", headers=headers) == (client, "http")


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("198.51.100.7:51234, 192.0.2.10:443, 10.0.0.5:8080", "198.51.100.7"),
        ("198.51.100.7, [fd00:1::3]:443, 10.0.0.5", "198.51.100.7"),
        ("[2001:db8:5::7]:51234, [fd00:1::3]", "2001:db8:5::7"),
        # A trusted proxy seen by the next one as an IPv4-mapped IPv6 address.
        ("198.51.100.7:51234, [::ffff:10.0.0.5]:443", "198.51.100.7"),
        # Every hop trusted: the earliest is the client, its port dropped.
        ("10.9.9.9:51234, 10.0.0.5:443", "10.9.9.9"),
        # A malformed entry still ends the walk: the trusted hop to its right is the client.
        ("198.51.100.7:51234, 192.0.2.10:99999, 10.0.0.5:443", "10.0.0.5"),
        ("198.51.100.7, 10.0.0.5:", "10.0.0.1"),
    ],
)
def test_a_chain_of_proxies_with_ports_walks_past_the_trusted_hops(
    forwarded_for: str, client: str
) -> None:
    """Entries with ports or brackets are walked like bare ones, and name the client without
    its port."""
    assert seen(peer="10.0.0.1", headers={"X-Forwarded-For": forwarded_for}) == (client, "http")


def test_ipv6_proxies_and_clients() -> None:
    """IPv6 proxies are matched by network and IPv6 clients are read from X-Forwarded-For."""
    forwarded = {"X-Forwarded-For": "2001:db8:5::7, fd00:1::3", "X-Forwarded-Proto": "https"}
    assert seen(peer="fd00:1::2", headers=forwarded) == ("2001:db8:5::7", "https")
    assert seen(peer="fd00:2::2", headers=forwarded) == ("fd00:2::2", "http")
    # The address is written in its one canonical form, whatever form the proxy used.
    forwarded = {"X-Forwarded-For": "2001:DB8:5:0:0::7"}
    assert seen(peer="fd00:1::2", headers=forwarded) == ("2001:db8:5::7", "http")


def test_an_ipv4_proxy_is_trusted_when_the_server_sees_it_as_ipv4_mapped_ipv6() -> None:
    """A server on `::` sees IPv4 peers as ::ffff:a.b.c.d; a trusted IPv4 proxy stays trusted."""
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    assert seen(peer="::ffff:10.1.2.3", headers=forwarded) == ("198.51.100.7", "https")
    assert seen(peer="::ffff:192.0.2.10", headers=forwarded) == ("198.51.100.7", "https")
    assert seen(peer="::ffff:192.0.2.11", headers=forwarded) == ("::ffff:192.0.2.11", "http")


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [
        ("https", "https"),
        ("HTTPS", "https"),
        ("http", "http"),
        ("javascript", "http"),
        # Appended to by a chain: the value the trusted peer added, the last, counts.
        ("http, https", "https"),
    ],
)
def test_x_forwarded_proto_sets_only_a_real_scheme(proto: str, scheme: str) -> None:
    """X-Forwarded-Proto from a trusted proxy becomes the scheme only if it is http or https."""
    forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": proto}
    assert seen(peer="10.0.0.1", headers=forwarded) == ("198.51.100.7", scheme)


def test_x_forwarded_proto_counts_without_x_forwarded_for() -> None:
    """A trusted proxy that forwards only the scheme changes the scheme, not the client."""
    assert seen(peer="10.0.0.1", headers={"X-Forwarded-Proto": "https"}) == ("10.0.0.1", "https")


def test_a_layer_that_sees_more_peers_than_it_remembers_trusts_exactly_its_proxies() -> None:
    """The verdicts one layer remembers per peer never lend one peer's trust to another, and
    forgetting them, when more peers come than it keeps, trusts no one new nor drops a proxy."""
    app = behind_proxies(report_scope, trusted_proxies=PROXIES)
    assert isinstance(app, TrustedProxies)

    async def client_seen(peer: str) -> str:
        answer: list[bytes] = []

        async def send(message: Message) -> None:
            answer.append(message.get("body", b""))

        headers = [(b"x-forwarded-for", b"198.51.100.7")]
        scope = {"type": "http", "client": (peer, 40000), "scheme": "http", "headers": headers}
        await app(scope, receive_nothing, send)
        return b"".join(answer).decode().split()[0]

    async def many_peers() -> None:
        for n in range(PEERS_REMEMBERED * 2 + 1):
            peer = f"198.18.{n // 256}.{n % 256}"
            assert await client_seen(peer) == peer
            assert await client_seen(peer) == peer  # as remembered
            assert len(app.peers) <= PEERS_REMEMBERED  # forgotten past that
            if n % 256 == 0:
                assert await client_seen("10.1.2.3") == "198.51.100.7"

    asyncio.run(many_peers())


async def receive_nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def test_without_trusted_proxies_the_app_is_not_wrapped() -> None:
    """With no proxy trusted the application is served as it is, so it pays nothing for this."""
    assert behind_proxies(report_scope, trusted_proxies="") is report_scope
    assert isinstance(create_app(Settings(store="memory://")), RequestObserver)


@pytest.mark.parametrize(
    ("peer", "location"),
    [
        ("10.0.0.1", "https://counter.example.com/healthz"),
        ("203.0.113.9", "http://counter.example.com/healthz"),
    ],
)
def test_the_app_builds_its_urls_with_the_scheme_a_trusted_proxy_forwarded(
    peer: str, location: str
) -> None:
    """create_app honours X-Forwarded-Proto from a trusted proxy, and only from it."""
    app = create_app(Settings(store="memory://", trusted_proxies=PROXIES))
    forwarded = {
        "Host": "counter.example.com",
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Proto": "https",
    }
    with TestClient(app, client=(peer, 40000), follow_redirects=False) as client:
        response = client.get("/healthz/", headers=forwarded)
    assert response.status_code == 307
    assert response.headers["location"] == location


@pytest.mark.parametrize(
    ("arguments", "scheme"),
    [(("--trusted-proxies", "127.0.0.1"), "https"), ((), "http")],
)
def test_the_real_server_trusts_exactly_the_proxies_it_was_given(
    arguments: tuple[str, ...], scheme: str
) -> None:
    """A served request from 127.0.0.1 has its forwarded scheme believed only if 127.0.0.1 is a
    trusted proxy: the setting reaches the worker processes."""
    forwarded = {
        "Host": "counter.example.com",
        "X-Forwarded-For": "198.51.100.7",
        "X-Forwarded-Proto": "https",
    }
    with running_server("--store", "memory://", *arguments) as server:
        response = httpx2.get(f"{server.url}/healthz/", headers=forwarded)
    assert response.status_code == 307
    assert response.headers["location"] == f"{scheme}://counter.example.com/healthz"


def test_the_real_server_reads_the_client_from_an_entry_with_a_port() -> None:
    """A served request forwarded from `address:port` is rate-limited as that client, whatever
    its port, and not as the proxy that sent it."""
    limits = ("--rate-limit-hits", "0.001", "--rate-limit-hits-burst", "1")
    trusted = ("--trusted-proxies", "127.0.0.1")
    with running_server("--store", "memory://", *trusted, *limits) as server:

        def hit(forwarded_for: str) -> int:
            url = f"{server.url}/v1/counters/site/home/hits"
            return httpx2.post(url, headers={"X-Forwarded-For": forwarded_for}).status_code

        assert hit("198.51.100.1:51234") == 200
        assert hit("198.51.100.1:51235") == 429
        assert hit("[2001:db8::1]:51234") == 200


def test_rate_limits_hold_each_forwarded_client_to_its_own_bucket(tmp_path: Path) -> None:
    """Behind a trusted proxy, each client it forwards has a bucket of its own."""
    settings = Settings(
        store=f"sqlite:///{tmp_path}/visits.db",
        trusted_proxies="10.0.0.1",
        rate_limit_hits=0.001,
        rate_limit_hits_burst=2,
    )
    with TestClient(create_app(settings), client=("10.0.0.1", 5000)) as proxy:

        def hits(client: str, times: int) -> list[int]:
            headers = {"X-Forwarded-For": client}
            return [
                proxy.post("/v1/counters/site/home/hits", headers=headers).status_code
                for _ in range(times)
            ]

        assert hits("198.51.100.1", 3) == [200, 200, 429]
        assert hits("198.51.100.2", 2) == [200, 200]
