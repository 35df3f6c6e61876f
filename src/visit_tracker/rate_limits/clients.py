"""Which bucket a request draws from: a keyed hash of its client's address, never the address.

The hash is keyed with a random secret (BLAKE2b's own keying), so a bucket's name cannot be
turned back into an address by hashing every possible one without the secret. An IPv6 client
is limited by its /64 network: one host usually holds a whole /64 and can pick any address in
it, so a limit per address would hold it back not at all.
"""

import hashlib
import ipaddress
from collections.abc import Sequence

SECRET_BYTES = 32
UNKNOWN_CLIENT = "unknown"
"""Requests whose server names no client (a Unix socket) share one bucket."""


def client_address(client: Sequence[object] | None) -> str:
    """The address a request's bucket belongs to, from the ASGI scope's `client`."""
    if not client:
        return UNKNOWN_CLIENT
    host = str(client[0])
    if ":" not in host:  # IPv4, or a name: spare the parsing on the common case
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def bucket_name(route_class: str, address: str, *, secret: bytes) -> str:
    """`{route_class}:{keyed hash of the address}`: the same for every instance that shares
    the secret, and meaningless without it."""
    digest = hashlib.blake2b(address.encode(), key=secret, digest_size=16).hexdigest()
    return f"{route_class}:{digest}"
