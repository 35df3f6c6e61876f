"""A request's bucket is named by a keyed hash of its client's address, an IPv6 one by its /64."""

import string

import pytest

from visit_tracker.rate_limits.clients import UNKNOWN_CLIENT, bucket_name, client_address

SECRET = b"k" * 32


@pytest.mark.parametrize(
    ("client", "address"),
    [
        (("203.0.113.7", 51000), "203.0.113.7"),
        (["203.0.113.7", 51000], "203.0.113.7"),
        (("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 443), "2001:db8:1:2::/64"),
        (("2001:db8:1:2::1", 443), "2001:db8:1:2::/64"),
        (("::ffff:203.0.113.7", 80), "203.0.113.7"),
        (("testclient", 50000), "testclient"),
        (None, UNKNOWN_CLIENT),
    ],
)
def test_the_address_a_bucket_belongs_to(client: tuple[str, int] | None, address: str) -> None:
    """IPv4 is taken as it is, IPv6 by its /64 network, IPv4-mapped IPv6 as IPv4."""
    assert client_address(client) == address


def test_bucket_names_hide_the_address_and_depend_on_the_secret() -> None:
    """The name is stable for one secret, differs with another, and shows no part of the address."""
    name = bucket_name("hits", "203.0.113.7", secret=SECRET)
    assert name == bucket_name("hits", "203.0.113.7", secret=SECRET)
    assert name != bucket_name("hits", "203.0.113.7", secret=b"x" * 32)
    assert name != bucket_name("reads", "203.0.113.7", secret=SECRET)
    digest = name.removeprefix("hits:")
    assert len(digest) == 32
    assert set(digest) <= set(string.hexdigits)
