"""The client's address and scheme behind the reverse proxies the operator trusts.

A request whose socket peer is a trusted proxy gets `scope["client"]` from `X-Forwarded-For`
and `scope["scheme"]` from `X-Forwarded-Proto`. Each proxy appends the address it received the
request from, and anything further left may have been written by the client itself, so the
client is the right-most address that is not itself a trusted proxy. From any other peer both
headers are ignored: a client can send whatever it likes. Everything after this layer, the
direct routes included, reads the client's address from `scope["client"][0]` alone, and finds
a valid IP address there.

Why not granian's `granian.utils.proxies.wrap_asgi_with_proxy_headers`, which walks the same
way: it returns a plain function, which ASGI tools that tell ASGI 3 apps by their being
coroutine functions (starlette's TestClient, uvicorn) take for an ASGI 2 app; it misses IPv4
proxies seen by a server listening on `::`, where they appear as IPv4-mapped IPv6 addresses
(`::ffff:10.0.0.1`); it ignores `X-Forwarded-Proto` sent without `X-Forwarded-For`; and it can
hand on as the client an entry that is no address at all.
"""

import ipaddress
import re
import socket

from starlette.types import ASGIApp, Receive, Scope, Send

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR = b"x-forwarded-for"
FORWARDED_PROTO = b"x-forwarded-proto"
SCHEMES = frozenset({"http", "https"})
UNKNOWN_PORT = 0
"""The client's port is not forwarded; 0 says so, as other ASGI servers do."""
NODE = re.compile(r"(?:(?P<ipv4>[0-9.]+)|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{1,5}))?")
"""An address as RFC 7239 writes a node: IPv4, or IPv6 in brackets, either maybe with a port."""
HIGHEST_PORT = 65535
PEERS_REMEMBERED = 1024
"""How many peers' verdicts `TrustedProxies` keeps: it forgets them all when more come, as
when clients reach the server directly, past the proxies."""


def parse_trusted_proxies(text: str) -> list[Network]:
    """The networks of a comma-separated list of IP addresses and CIDR networks ("" is none).

    Raises `ValueError` naming the first entry that is neither; a network written with host
    bits set (`10.0.0.1/8`) is refused rather than guessed at.
    """
    if not text.strip():
        return []
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            raise ValueError("an entry is empty: a comma too many?")
        try:
            networks.append(ipaddress.ip_network(entry))
        except ValueError:
            raise ValueError(problem_with(entry)) from None
    return networks


def problem_with(entry: str) -> str:
    """Why `entry`, which `ipaddress.ip_network` refused, is not a trusted proxy."""
    try:
        loose = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return f"{entry!r} is neither an IP address nor a CIDR network such as 10.0.0.0/8"
    return f"{entry!r} has host bits set: write the network {loose} or one address"


def written(network: Network) -> str:
    """A network as written in settings: a lone address without its `/32` or `/128`."""
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def address_of(text: str) -> Address | None:
    """The IP address `text` holds, an IPv4-mapped IPv6 one as IPv4; None if it holds none,
    or an IPv6 address with a zone (`fe80::1%eth0`): a zone names an interface of the host that
    wrote it, and `ipaddress` takes any text after the `%`, markup and line breaks included.

    Besides a bare address, `text` may hold one as RFC 7239 writes a node, the form some load
    balancers (Azure Application Gateway) give X-Forwarded-For entries: IPv4 with a port
    (`192.0.2.43:47011`), IPv6 in brackets with or without one (`[2001:db8:cafe::17]:47011`).
    The port is dropped.
    """
    text = text.strip()
    address: Address | None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = node_address(text)
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:  # `%` and anything after it: no address of a client
            return None
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def node_address(node: str) -> Address | None:
    """The address of an RFC 7239 node such as `192.0.2.43:47011` or `[2001:db8:cafe::17]`;
    None if `node` is no such node or its port is above 65535."""
    match = NODE.fullmatch(node)
    if match is None or int(match["port"] or 0) > HIGHEST_PORT:
        return None
    try:
        if match["ipv6"] is not None:
            return ipaddress.IPv6Address(match["ipv6"])
        return ipaddress.IPv4Address(match["ipv4"])
    except ValueError:
        return None


class TrustedProxies:
    """Puts the client's address and scheme, as trusted proxies forwarded them, in the scope."""

    def __init__(self, app: ASGIApp, *, proxies: list[Network]) -> None:
        self.app = app
        # Lone addresses are looked up in a set; only real networks are searched one by one.
        self.addresses = frozenset(n.network_address for n in proxies if n.num_addresses == 1)
        self.networks = tuple(n for n in proxies if n.num_addresses > 1)
        # The same for IPv4 as packed bytes, which the common case never leaves.
        self.packed = frozenset(a.packed for a in self.addresses if a.version == 4)
        self.ipv4_networks = tuple(
            (int(n.netmask), int(n.network_address)) for n in self.networks if n.version == 4
        )
        self.peers: dict[str, bool] = {}
        """Whether each peer seen lately is a trusted proxy: the peers of a server behind
        proxies are those few proxies, and `is_trusted` of text costs more than the lookup."""

    def is_trusted(self, address: Address) -> bool:
        return address in self.addresses or any(address in net for net in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (peer := scope.get("client")):
            trusted = self.peers.get(peer[0])
            if trusted is None:
                trusted = self.peer_is_trusted(peer[0])
            if trusted:
                self.believe_forwarded_headers(scope)
        await self.app(scope, receive, send)

    def peer_is_trusted(self, peer: str) -> bool:
        """Whether `peer` is a trusted proxy's address, remembered for the peer's next request
        (among the last `PEERS_REMEMBERED` peers)."""
        verdict = self.hop(peer)
        trusted = verdict is not None and verdict[1]
        if len(self.peers) >= PEERS_REMEMBERED:
            self.peers.clear()
        self.peers[peer] = trusted
        return trusted

    def hop(self, text: str) -> tuple[str, bool] | None:
        """The address `text` holds, written as `str` of it writes it, and whether a trusted
        proxy owns it; None if `text` holds no address."""
        try:  # the common case, read by the C library without `ipaddress` objects
            packed = socket.inet_pton(socket.AF_INET, text.strip())
        except (OSError, ValueError):
            address = address_of(text)
            return None if address is None else (str(address), self.is_trusted(address))
        return socket.inet_ntop(socket.AF_INET, packed), packed in self.packed or any(
            int.from_bytes(packed) & mask == network for mask, network in self.ipv4_networks
        )

    def believe_forwarded_headers(self, scope: Scope) -> None:
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope["headers"]:
            if name == FORWARDED_FOR:
                forwarded_for.append(value.decode("latin-1"))
            elif name == FORWARDED_PROTO:
                proto = value.decode("latin-1")
        if forwarded_for:
            client = self.client_in(",".join(forwarded_for))
            if client is not None:
                scope["client"] = (client, UNKNOWN_PORT)
        if proto is not None:
            # A chain of proxies may append: the last value is the one our peer vouches for.
            scheme = proto.rpartition(",")[2].strip().lower()
            if scheme in SCHEMES:
                scope["scheme"] = scheme

    def client_in(self, forwarded_for: str) -> str | None:
        """The right-most address of `forwarded_for` that no trusted proxy owns.

        An entry that is no address ends the walk: no trusted proxy wrote it, so the hop to its
        right, a trusted host itself, is the client. If every hop is trusted, the left-most is.
        """
        client = None
        for text in reversed(forwarded_for.split(",")):
            hop = self.hop(text)
            if hop is None:
                break
            client, trusted = hop
            if not trusted:
                break
        return client


def behind_proxies(app: ASGIApp, *, trusted_proxies: str) -> ASGIApp:
    """`app` reading client and scheme from the trusted proxies' headers; `app` itself, not
    wrapped and so not slowed down, when no proxy is trusted."""
    proxies = parse_trusted_proxies(trusted_proxies)
    return TrustedProxies(app, proxies=proxies) if proxies else app
