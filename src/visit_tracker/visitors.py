"""Unique visitors without personal data (Plausible's recipe).

A visitor's id is a keyed BLAKE2b hash of the counter's namespace, the client's address and its
User-Agent, keyed with a random salt of the current UTC day. Neither the address nor the
User-Agent is stored or logged anywhere; the id alone cannot be turned back into them, and once
the store deletes the day's salt (two days later) not even a search over every address can.
The salt lives in the store, so every worker and instance gives one visitor the same id.

Ids change with the day, so a visitor is one visitor per day: a month's unique visitors are
the union of its days' (see `stores/sketch.py`), which counts a person once on each day they
came, never once per hit.
"""

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from visit_tracker.stores.base import day_of, now_ms
from visit_tracker.stores.sketch import ID_BITS


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who made a request, as far as the request tells: never stored, only hashed."""

    address: str
    """The client's address: the socket's, or a trusted proxy's X-Forwarded-For; an IPv6
    client's /64 network, which one device keeps while it changes addresses."""
    user_agent: str


def visitor_id(visitor: Visitor, *, namespace: str, salt: bytes) -> int:
    """The visitor's id in the namespace for the day whose salt this is: 63 bits."""
    identity = "\0".join((namespace, visitor.address, visitor.user_agent))
    digest = hashlib.blake2b(
        identity.encode("utf-8", "surrogatepass"), key=salt, digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") >> (64 - ID_BITS)


class VisitorIds:
    """Makes visitor ids with the current day's salt, asked of the store once a day."""

    def __init__(self, salt_of: Callable[[int], Awaitable[bytes]]) -> None:
        self._salt_of = salt_of
        self._day: int | None = None
        self._salt = b""

    async def id_of(self, visitor: Visitor, *, namespace: str) -> int:
        """The visitor's id in the namespace today."""
        day = day_of(now_ms())
        if day != self._day:
            salt = await self._salt_of(day)
            self._day, self._salt = day, salt
        return visitor_id(visitor, namespace=namespace, salt=self._salt)


class RecentVisitors:
    """The visitors this process recorded lately, per counter and hour: a visitor seen again
    within the hour needs no new record, since its hour and its day already hold it.

    Bounded: two generations of at most `capacity` entries each; when the newer one fills, the
    older is dropped. An entry is a 64-bit hash of (counter, hour, visitor id): two colliding
    would make one visitor be skipped, at odds of one in 2**64 per pair. A counter deleted by
    another process may miss, for the rest of the hour, a visitor this one had recorded.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self._capacity = capacity
        self._new: set[int] = set()
        self._old: set[int] = set()

    def recorded(self, counter: object, hour: int, visitor: int) -> bool:
        entry = hash((counter, hour, visitor))
        return entry in self._new or entry in self._old

    def note(self, counter: object, hour: int, visitor: int) -> None:
        if len(self._new) >= self._capacity:
            self._old, self._new = self._new, set()
        self._new.add(hash((counter, hour, visitor)))

    def forget(self) -> None:
        """Forget everything: after a counter of this process is deleted."""
        self._new.clear()
        self._old.clear()
