"""The `Store` protocol every backend implements, and the arithmetic they share.

A store applies a batch of hits atomically and tells each hit the counter value it produced,
so that concurrent visits get distinct, gap-free numbers however they are batched. A hit of a
known bot adds nothing to the value: it counts in the counter's bot hits, in the same step, and
is told the value as it stands; so is a repeated hit of a visitor on a counter that counts
each visitor once per so many minutes (`count_once_per`). In the same atomic step the counted
hits are added to the counter's hourly buckets `(counter, hour) -> hits`, and every hit but a
bot's, held back or not, to its daily page and referrer buckets `(counter, day, kind, value)
-> hits` and to its visitors (see `sketch.py`). A bucket is named by
its start in Unix milliseconds (UTC), taken from the store's clock when the batch is applied.
"""

import heapq
import re
import secrets
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, TypeAlias

LARGEST = 2**63 - 1
"""The largest value and time every store keeps exactly (a signed 64-bit integer)."""

LARGEST_SET = 2**53 - 1
"""The largest value a counter is created at, set to, added up to or imported at: the largest
whole number a JSON number carries exactly. It leaves 2**63 - 2**53 (over 9 * 10**18) hits of
room below `LARGEST`, so no hit ever fails, and fails its whole batch, for its counter's size."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What a namespace and a key look like (`fullmatch`): safe in URLs, keys and file names."""


class CounterId(NamedTuple):
    """Names one counter: a namespace and a key inside it.

    A named tuple rather than a dataclass: a batch looks its hits' counters up in dictionaries
    several times each, and a tuple's hash and equality run in C, a frozen dataclass's in
    Python. Like any named tuple it equals the plain tuple (namespace, key)."""

    namespace: str
    key: str


DEFAULT_COUNTER = CounterId("default", "visits")
"""The counter behind the original `POST /visit` and `GET /stats`."""


@dataclass(frozen=True, slots=True)
class Hit:
    """One visit to count, with the page it viewed and where it came from when they are known."""

    counter: CounterId
    page: str | None = None
    """The page's path, already cleaned of its query string."""
    referrer: str | None = None
    """The referring page's origin and path, already cleaned of its query string."""
    visitor: int | None = None
    """The visitor's id of the day (see `visitors.py`): no address, no User-Agent."""
    recorded_in: int | None = None
    """The start of the hour in which this process already recorded the visitor, if it did: a
    batch applied in that hour need not add it to the hour's and day's visitors, which hold it
    (a window still checks it). Applied later — the hour ended while the hit waited — it is
    added to the buckets of the hour it is counted in."""
    bot: bool = False
    """A known bot's hit: counted apart, in the counter's bot hits only, never in its value,
    history or visitors."""


MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

LONGEST_WINDOW = 1440
"""The most minutes `count_once_per` may be: a day, after which a visitor's id changes."""

ViewKind = Literal["page", "referrer"]
"""What a daily breakdown bucket counts: the pages viewed, or the referrers they came from."""

ViewBucket = tuple[CounterId, ViewKind, str]
"""A counter's page or referrer, whose daily hits a batch adds up."""


@dataclass(frozen=True, slots=True)
class CounterRecord:
    """Everything a store keeps about one counter: what export writes and restore reads."""

    counter: CounterId
    value: int
    created_at: int
    """Unix time in milliseconds of the counter's first hit."""
    updated_at: int
    """Unix time in milliseconds of its latest change."""
    admin_key_hash: str | None = None
    """SHA-256 (hexadecimal) of the counter's admin key; None while nobody owns the counter."""
    bot_hits: int = 0
    """Hits of known bots, which the value does not count."""
    count_once_per: int = 0
    """Minutes within which the value counts one hit per visitor (by visitor id); 0 counts
    every hit."""


@dataclass(frozen=True, slots=True)
class HourlyHits:
    """Some of a counter's hourly buckets, as (hour start, hits) in time order; an hour may
    hold 0 hits when it lists visitors only."""

    counter: CounterId
    hours: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class DailyViews:
    """A counter's pages and referrers of one UTC day, as (kind, value, hits) in that order."""

    counter: CounterId
    day: int
    views: tuple[tuple[ViewKind, str, int], ...]


SketchFamily = Literal["registers", "redis"]
"""How a store keeps a visitor sketch (see `sketch.py`): as 2**15 registers of the visitor ids'
bits (SQLite, PostgreSQL, memory), or as Redis's own HyperLogLog string (Redis, Redis Cluster)."""


@dataclass(frozen=True, slots=True)
class VisitorSketch:
    """A visitor bucket's HyperLogLog as its store keeps it, and the count it gives alone."""

    family: SketchFamily
    data: bytes
    """One byte per register (the rank, 0 when empty) for "registers"; the string Redis keeps
    for "redis"."""
    estimate: int


@dataclass(frozen=True, slots=True)
class VisitorBucket:
    """The visitors of one hour or day of a counter."""

    counter: CounterId
    span: int
    """HOUR_MS or DAY_MS."""
    start: int
    ids: tuple[int, ...]
    """The ids the bucket keeps: all its visitors when `sketch` is None."""
    sketch: VisitorSketch | None


HistoryEntry: TypeAlias = HourlyHits | DailyViews | VisitorBucket
"""A part of one counter's history, as export reads it and restore writes it."""

RestoreEntry: TypeAlias = CounterRecord | HistoryEntry
"""What restore reads: a counter's record, then (when history is replaced) its history."""


class Store(Protocol):
    """Where counts live. Every method either fully succeeds or raises `StoreError`.

    A networked store may also raise `StoreOutcomeUnknown` from a write whose confirmation was
    lost (the write may have been applied); `StoreError` always means nothing was applied.
    """

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        """Count every hit in one atomic step and return each hit's new value, in order."""
        ...

    async def value(self, counter: CounterId) -> int:
        """Return the counter's current value, 0 if it was never hit."""
        ...

    async def read(self, counter: CounterId) -> CounterRecord | None:
        """Return the counter's record, None if it does not exist."""
        ...

    async def create(
        self,
        counter: CounterId,
        *,
        value: int,
        admin_key_hash: str | None,
        count_once_per: int = 0,
    ) -> CounterRecord | None:
        """Add the counter with this value, owner and window and return it; None, changing
        nothing, if it exists."""
        ...

    async def update(
        self,
        counter: CounterId,
        *,
        value: int | None = None,
        admin_key_hash: str | None = None,
        count_once_per: int | None = None,
    ) -> CounterRecord | None:
        """Set the value, the admin key and/or the window that are given, in one atomic step;
        return the record as it was before, or None, changing nothing, if the counter does not
        exist. A new window applies to the visitors counted after it."""
        ...

    async def add(self, counter: CounterId, *, amount: int) -> int | None:
        """Add `amount` (negative subtracts) to an existing counter in one atomic step, stopping
        at 0 and at LARGEST_SET; its new value, or None, changing nothing, if
        it does not exist. Hits applied meanwhile are neither lost nor counted twice."""
        ...

    async def delete(self, counter: CounterId) -> bool:
        """Remove the counter and its history; whether it existed. A later hit starts it again
        from zero."""
        ...

    async def counters_in(self, namespace: str, *, after: str, limit: int) -> list[CounterRecord]:
        """Up to `limit` counters of the namespace whose keys sort after `after`, in key order
        (names are ASCII, so code point and byte order agree)."""
        ...

    async def top_counters(self, limit: int) -> list[tuple[CounterId, int]]:
        """The `limit` counters of every namespace with the highest values, as (counter,
        value): highest first, ties in (namespace, key) order. It reads every counter's value
        (no store keeps counters sorted by value: each hit would reorder them), so callers
        should not ask often."""
        ...

    def export(self) -> AsyncIterator[CounterRecord]:
        """Every counter, in (namespace, key) order."""
        ...

    def export_with_history(self) -> AsyncIterator[RestoreEntry]:
        """Every counter, in (namespace, key) order, each record followed by the counter's
        whole history, a part at a time: its hours in time order (a chunk at a time), each
        day's pages and referrers, each visitor bucket — what restore reads back.

        A counter's record and history are read in one snapshot, even while instances count:
        a batch applied meanwhile is in its value and in its history, or in neither, and
        every day of pages or visitors has its hour. Different counters may be read at
        different moments; a counter deleted once the export has begun may be left out."""
        ...

    async def restore(
        self, entries: Iterable[RestoreEntry], *, replace_history: bool = False
    ) -> int:
        """Make each record's counter exactly as recorded, all in one atomic step (on Redis, a
        chunk of counters at a time; a failure after the first is `ImportIncomplete`). With
        `replace_history` the history of each recorded counter
        becomes exactly the entries that follow its record, its history before is dropped;
        without, history entries are not expected and existing history is kept. Entries are
        read once, in order, as they are needed. Returns how many visitor sketches of another
        family it converted (see `sketch.py`), which count approximately."""
        ...

    async def series(
        self, counter: CounterId, *, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        """The counter's hourly buckets that start in [start_ms, end_ms) and hold hits, as
        (hour start, hits), in time order."""
        ...

    async def top(
        self, counter: CounterId, *, kind: ViewKind, start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, int]]:
        """The counter's `limit` pages or referrers with the most hits over the daily buckets
        that start in [start_ms, end_ms), as (value, hits): most hits first, ties by value."""
        ...

    async def visitors(self, counter: CounterId, *, ranges: Sequence[tuple[int, int]]) -> list[int]:
        """For each [start_ms, end_ms) range, the distinct visitors of the counter's hourly
        buckets that start in it (see `sketch.py`): exact below `sketch.EXACT_BELOW` per hour,
        else estimated."""
        ...

    async def salt(self, day_ms: int) -> bytes:
        """The random secret of the UTC day starting at `day_ms`, made by the first caller and
        the same for every caller after; the salts of days before the previous one are deleted
        on the way."""
        ...

    async def purge(self, before_ms: int) -> None:
        """Drop every history bucket, of every counter, that starts before `before_ms`, and
        every mark of a visitor counted whose window has ended."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise `StoreError` when it does not."""
        ...

    async def close(self) -> None:
        """Release the store's connections; pending work has already been applied."""
        ...


def now_ms() -> int:
    """The current Unix time in milliseconds: the stores' timestamps."""
    return int(time.time() * 1000)


def within_range(value: int) -> int:
    """The value, stopped at 0 and at LARGEST_SET: the range a value may be put in."""
    return min(max(value, 0), LARGEST_SET)


def tally(hits: Sequence[Hit], counted: Sequence[bool] | None = None) -> Mapping[CounterId, int]:
    """How many hits each counter of a batch counts in its value: every counter the batch
    touches, 0 for one none of whose hits counts. The hits that count are those `counted`
    says, by default every one but bots'."""
    if counted is None:
        counts = Tally(hit.counter for hit in hits if not hit.bot)
    else:
        counts = Tally(hit.counter for hit, counts_ in zip(hits, counted, strict=True) if counts_)
    if counts.total() < len(hits):  # some counter may have counted none
        for hit in hits:
            counts.setdefault(hit.counter, 0)
    return counts


def once_per_window(
    hits: Sequence[Hit],
    *,
    windowed: Collection[CounterId],
    marked: Collection[tuple[CounterId, int]],
) -> list[bool]:
    """Whether each hit of a batch counts: none of a bot's, every one on a counter without a
    window or without a visitor id, and on a windowed counter only the first hit of each
    visitor the store `marked` as counted by this batch (its window had not begun or had ended).
    """
    first: set[tuple[CounterId, int]] = set()
    counted = []
    for hit in hits:
        if hit.bot:
            counted.append(False)
        elif hit.visitor is None or hit.counter not in windowed:
            counted.append(True)
        else:
            pair = (hit.counter, hit.visitor)
            counted.append(pair in marked and pair not in first)
            first.add(pair)
    return counted


def window_pairs(hits: Sequence[Hit]) -> list[tuple[CounterId, int]]:
    """The distinct (counter, visitor id) of a batch's hits that a window may hold back, in
    order of first appearance."""
    return list(
        dict.fromkeys(
            (hit.counter, hit.visitor) for hit in hits if hit.visitor is not None and not hit.bot
        )
    )


def tally_bots(hits: Sequence[Hit]) -> Mapping[CounterId, int]:
    """How many bot hits each counter receives in a batch; only counters that receive some."""
    return Tally(hit.counter for hit in hits if hit.bot)


def number_hits(
    hits: Sequence[Hit], totals: Mapping[CounterId, int], counted: Sequence[bool] | None = None
) -> list[int]:
    """Give each hit its own value, given each counter's total after the whole batch.

    A counter that counted k hits and now stands at n hands them n-k+1 ... n in batch order;
    a hit that adds nothing (a bot's, or one `counted` says does not count) gets the value of
    the hit before it (n-k if none).
    """
    if counted is None:
        counted = [not hit.bot for hit in hits]
    counts = tally(hits, counted)
    last = {counter: totals[counter] - count for counter, count in counts.items()}
    values = []
    for hit, counts_ in zip(hits, counted, strict=True):
        if counts_:
            last[hit.counter] += 1
        values.append(last[hit.counter])
    return values


def hour_of(unix_ms: int) -> int:
    """The start of the UTC hour `unix_ms` falls in."""
    return unix_ms - unix_ms % HOUR_MS


def day_of(unix_ms: int) -> int:
    """The start of the UTC day `unix_ms` falls in."""
    return unix_ms - unix_ms % DAY_MS


def tally_views(hits: Sequence[Hit]) -> dict[ViewBucket, int]:
    """How many hits each page and each referrer of each counter receives in a batch; empty,
    and cheap, for a batch of plain hits."""
    views: dict[ViewBucket, int] = {}
    for hit in hits:
        if hit.bot:
            continue
        if hit.page is not None:
            bucket: ViewBucket = (hit.counter, "page", hit.page)
            views[bucket] = views.get(bucket, 0) + 1
        if hit.referrer is not None:
            bucket = (hit.counter, "referrer", hit.referrer)
            views[bucket] = views.get(bucket, 0) + 1
    return views


def tally_visitors(hits: Sequence[Hit], *, hour: int) -> dict[CounterId, set[int]]:
    """The distinct visitor ids each counter receives in a batch applied in `hour`, but those
    recorded in that hour already; empty when none is known."""
    visitors: dict[CounterId, set[int]] = {}
    for hit in hits:
        if hit.visitor is not None and not hit.bot and hit.recorded_in != hour:
            visitors.setdefault(hit.counter, set()).add(hit.visitor)
    return visitors


VISITOR_SPANS = (HOUR_MS, DAY_MS)
"""Visitors are kept per hour, for hourly series, and per UTC day, for everything else: a
day's or a month's distinct visitors come from at most 31 daily sketches, not 744 hourly ones."""
SPAN_NAMES = {HOUR_MS: "hour", DAY_MS: "day"}
"""How a visitor bucket's span is named in keys and exports."""


def visitor_span(ranges: Sequence[tuple[int, int]]) -> int:
    """The buckets that count the visitors of these ranges: days when every range starts and
    ends on a UTC day, else hours."""
    whole_days = all(start % DAY_MS == 0 and end % DAY_MS == 0 for start, end in ranges)
    return DAY_MS if whole_days else HOUR_MS


def visitor_buckets(unix_ms: int) -> list[tuple[int, int]]:
    """The (span, start) of each visitor bucket `unix_ms` falls in."""
    return [(span, unix_ms - unix_ms % span) for span in VISITOR_SPANS]


SALT_BYTES = 16


def new_salt() -> bytes:
    """A fresh random salt for a day's visitor ids."""
    return secrets.token_bytes(SALT_BYTES)


def ranked(totals: Mapping[str, int], limit: int) -> list[tuple[str, int]]:
    """The `limit` values with the most hits, most first, ties in value order."""
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]


def highest(values: Iterable[tuple[CounterId, int]], limit: int) -> list[tuple[CounterId, int]]:
    """The `limit` counters with the highest values, highest first, ties in name order; keeps
    `limit` of them in memory, however many it is given."""
    return heapq.nsmallest(
        limit, values, key=lambda item: (-item[1], item[0].namespace, item[0].key)
    )
