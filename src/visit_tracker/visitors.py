"""Unique visitors without personal data (Plausible's recipe).

A visitor's id is a keyed BLAKE2b hash of the counter's namespace, the client's address and its
User-Agent, keyed with a random salt of the current UTC day. Neither the address nor the
User-Agent is stored or logged anywhere; the id alone cannot be turned back into them, and once
the store deletes the day's salt (two days later) not even a search over every address can.
The salt lives in the store, so every worker and instance gives one visitor the same id.

Ids change with the day, so a visitor is one visitor per day: a month's unique visitors are
the union of its days' (see `stores/sketch.py`), which counts a person once on each day they
came, never once per hit.

Known bots are told by their User-Agent, from the crawler-user-agents list (a regular
expression per crawler, maintained by many contributors and released often); see `is_bot`.
"""

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache

import crawleruseragents

from visit_tracker.errors import StoreOutcomeUnknown, StoreUnavailable
from visit_tracker.stores.base import day_of, now_ms
from visit_tracker.stores.sketch import ID_BITS


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who made a request, as far as the request tells: never stored, only hashed."""

    address: str
    """The client's address: the socket's, or a trusted proxy's X-Forwarded-For; an IPv6
    client's /64 network, which one device keeps while it changes addresses."""
    user_agent: str


BOT_CHECK_LENGTH = 512
"""Characters of a User-Agent that are checked: a browser's is shorter, bots name themselves
near the start, and the list's regular expressions take time in proportion to the length
(50 ms for a User-Agent of 60,000 characters, which a request's head may hold)."""

BOT_CACHE_SIZE = 4096
"""User-Agents whose answer is kept, the least recently seen dropped first (at most about
2.6 MB): a site's traffic comes from far fewer distinct ones, and checking a browser's against
the whole list takes about 0.1 ms, a kept answer 70 ns."""

PEOPLES_PROXIES = re.compile(r"github-camo|GoogleImageProxy")
"""Image proxies the list names but that fetch an image for a person viewing it: GitHub's,
which shows every image of a README, and Gmail's. A badge or pixel seen through them is a
view by a person, not a crawl."""


def is_bot(user_agent: str) -> bool:
    """Whether a User-Agent is a known bot's: one the crawler-user-agents list matches, but not
    one of `PEOPLES_PROXIES`. An empty User-Agent is not a known bot."""
    return _listed_bot(user_agent[:BOT_CHECK_LENGTH])


@lru_cache(maxsize=BOT_CACHE_SIZE)
def _listed_bot(user_agent: str) -> bool:
    return crawleruseragents.is_crawler(user_agent) and not PEOPLES_PROXIES.search(user_agent)


def visitor_id(visitor: Visitor, *, namespace: str, salt: bytes) -> int:
    """The visitor's id in the namespace for the day whose salt this is: 63 bits."""
    return _id_by(_keyed(salt), visitor, namespace)


def _keyed(salt: bytes) -> hashlib.blake2b:
    """BLAKE2b keyed with a day's salt, to be copied for each id: the key costs a compression
    of its own, done once here rather than for every id."""
    return hashlib.blake2b(key=salt, digest_size=8)


def _id_by(keyed: hashlib.blake2b, visitor: Visitor, namespace: str) -> int:
    identity = "\0".join((namespace, visitor.address, visitor.user_agent))
    digest = keyed.copy()
    digest.update(identity.encode("utf-8", "surrogatepass"))
    return int.from_bytes(digest.digest(), "big") >> (64 - ID_BITS)


class VisitorIds:
    """Makes visitor ids with the current day's salt, asked of the store once a day: the
    requests that arrive while it is being asked wait for the same answer."""

    def __init__(self, salt_of: Callable[[int], Awaitable[bytes]]) -> None:
        self._salt_of = salt_of
        self._day: int | None = None
        self._salt: asyncio.Future[bytes] | None = None
        self._keyed: hashlib.blake2b | None = None
        """Keyed with the salt of `_day`, once it is in hand."""

    async def id_of(self, visitor: Visitor, *, namespace: str) -> int:
        """The visitor's id in the namespace today; `StoreUnavailable` if the day's salt
        cannot be had (asking for it again is safe: making a salt is idempotent)."""
        day = day_of(now_ms())
        if day == self._day and self._keyed is not None:  # nearly always
            return _id_by(self._keyed, visitor, namespace)
        if day != self._day or self._salt is None:
            self._day, self._salt, self._keyed = day, asyncio.ensure_future(self._fetch(day)), None
        salt = self._salt
        try:
            keyed = _keyed(await asyncio.shield(salt))
        except Exception:
            if self._salt is salt:  # the next request asks again
                self._salt = None
            raise
        if self._salt is salt:
            self._keyed = keyed
        return _id_by(keyed, visitor, namespace)

    async def _fetch(self, day: int) -> bytes:
        try:
            return await self._salt_of(day)
        except StoreOutcomeUnknown as error:  # the salt is made once whatever happened
            raise StoreUnavailable(f"the day's visitor salt could not be read: {error}") from error


class RecentVisitors:
    """The visitors this process recorded lately, per counter and hour: a visitor seen again
    within the hour needs no new record, since its hour and its day already hold it.

    Bounded: two generations of at most `capacity` entries each; when the newer one fills, the
    older is dropped. An entry is Python's hash of (counter, hour, visitor id): two colliding
    would make one visitor be skipped, at odds of about one in 2**61 per pair. A counter deleted
    by another process may miss, for the rest of the hour, a visitor this one had recorded.
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
