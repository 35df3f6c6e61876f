"""A PostgreSQL store's history as export reads it, and the statements of a restore, which
writes counters and their history a chunk of counters per round trip (see `postgres.py`)."""

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from visit_tracker.stores.base import (
    HOUR_MS,
    CounterId,
    CounterRecord,
    DailyViews,
    HistoryEntry,
    HourlyHits,
    RestoreEntry,
    ViewKind,
    VisitorBucket,
    VisitorSketch,
)
from visit_tracker.stores.sketch import (
    EXACT_BELOW,
    HISTORY_CHUNK,
    estimate,
    registers_data,
    restored_ranks,
)

Connection = AsyncConnection[Any]

HOURS = "SELECT hour, hits FROM hourly_hits WHERE namespace = %s AND key = %s ORDER BY hour"

VIEWS = """
    SELECT day, kind, value, hits FROM daily_views WHERE namespace = %s AND key = %s
    ORDER BY day, kind, value
"""

BUCKETS = """
    SELECT b.span, b.start, array_agg(visitor ORDER BY visitor) FILTER (WHERE visitor IS NOT NULL)
    FROM (SELECT DISTINCT span, start FROM visitor_ranks WHERE namespace = %s AND key = %s) AS b
    LEFT JOIN visitor_ids AS v ON (v.namespace, v.key, v.span, v.start) = (%s, %s, b.span, b.start)
    GROUP BY b.span, b.start ORDER BY b.span, b.start
"""
"""Each visitor bucket of a counter with the ids it keeps (a bucket keeps about EXACT_BELOW)."""

RANKS = """
    SELECT register, rank FROM visitor_ranks
    WHERE namespace = %s AND key = %s AND span = %s AND start = %s
"""

RESTORE_CHUNK = 1000
"""Counters a restore writes per round trip."""

RESTORE_ROWS = 20_000
"""History rows a restore writes per round trip, give or take one entry's (a sketched bucket
has up to 2**15 registers): each round trip stays well within the wait limit."""

CLEAR = """
    cleared AS (SELECT * FROM unnest(%b::text[], %b::text[]) AS c (namespace, key)),
    hours AS (DELETE FROM hourly_hits WHERE (namespace, key) IN (SELECT * FROM cleared)),
    views AS (DELETE FROM daily_views WHERE (namespace, key) IN (SELECT * FROM cleared)),
    ids AS (DELETE FROM visitor_ids WHERE (namespace, key) IN (SELECT * FROM cleared)),
    ranks AS (DELETE FROM visitor_ranks WHERE (namespace, key) IN (SELECT * FROM cleared))
"""
"""Drops the history of some counters: their arrays (namespaces, keys). A restore's arrays are
sent in binary, which psycopg writes twice as fast as text."""

RESTORE_RECORDS = """
    INSERT INTO counters AS c (
        namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits, count_once_per
    )
    SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits, window_
    FROM unnest(
        %b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::bigint[], %b::text[],
        %b::bigint[], %b::int[]
    ) WITH ORDINALITY AS record (
        namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits, window_,
        position
    )
    ORDER BY position
    ON CONFLICT (namespace, key) DO UPDATE SET
        value = excluded.value, created_at = excluded.created_at,
        updated_at = excluded.updated_at, admin_key_hash = excluded.admin_key_hash,
        bot_hits = excluded.bot_hits, count_once_per = excluded.count_once_per
"""
"""Makes counters exactly as recorded: their arrays, in `CounterRecord`'s order."""

RESTORE_HISTORY = """
    WITH hours AS (
        INSERT INTO hourly_hits (namespace, key, hour, hits)
        SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[])
        ON CONFLICT (namespace, key, hour) DO UPDATE SET hits = excluded.hits
    ),
    listed AS (
        INSERT INTO hourly_hits (namespace, key, hour, hits)
        SELECT namespace, key, hour, 0
        FROM unnest(%b::text[], %b::text[], %b::bigint[]) AS listed (namespace, key, hour)
        ON CONFLICT DO NOTHING
    ),
    views AS (
        INSERT INTO daily_views (namespace, key, day, kind, value, hits)
        SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[],
            %b::bigint[])
        ON CONFLICT (namespace, key, day, kind, value) DO UPDATE SET hits = excluded.hits
    ),
    ids AS (
        INSERT INTO visitor_ids (namespace, key, span, start, visitor)
        SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::bigint[])
        ON CONFLICT DO NOTHING
    )
    INSERT INTO visitor_ranks (namespace, key, span, start, register, rank)
    SELECT * FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::int[],
        %b::smallint[])
    ON CONFLICT (namespace, key, span, start, register) DO UPDATE SET rank = excluded.rank
"""
"""Writes history rows, each table's as arrays of its columns: hours with their hits, the
hours of visitor buckets to list (with no hits, unless they have some already: that is
where a purge finds the buckets), days' pages and referrers, visitor ids, registers. The two
inserts into the hours never share a row."""


async def history(
    connection: Connection, counter: CounterId, *, wait_limit: float
) -> AsyncIterator[HistoryEntry]:
    """The counter's whole history, as `Store.export_with_history` gives it, read on the export's
    connection (in its transaction's snapshot); each statement is answered within `wait_limit`
    seconds, else TimeoutError."""
    async with asyncio.timeout(wait_limit):
        found = await hours(connection, counter)
    for first in range(0, len(found), HISTORY_CHUNK):
        yield HourlyHits(counter, tuple(found[first : first + HISTORY_CHUNK]))
    async with asyncio.timeout(wait_limit):
        found_days = await days(connection, counter)
    for day in found_days:
        yield day
    async with asyncio.timeout(wait_limit):
        found_buckets = await buckets(connection, counter)
    for bucket in found_buckets:
        async with asyncio.timeout(wait_limit):
            with_registers = await with_sketch(connection, bucket=bucket)
        yield with_registers


async def hours(connection: Connection, counter: CounterId) -> list[tuple[int, int]]:
    """The counter's hourly buckets, in time order."""
    cursor = await connection.execute(HOURS, (counter.namespace, counter.key))
    return [(hour, hits) for hour, hits in await cursor.fetchall()]


async def days(connection: Connection, counter: CounterId) -> list[DailyViews]:
    """The counter's pages and referrers, a day at a time."""
    cursor = await connection.execute(VIEWS, (counter.namespace, counter.key))
    found: dict[int, list[tuple[ViewKind, str, int]]] = {}
    for day, kind, value, hits in await cursor.fetchall():
        found.setdefault(day, []).append((kind, value, hits))
    return [DailyViews(counter, day, tuple(views)) for day, views in found.items()]


async def buckets(connection: Connection, counter: CounterId) -> list[VisitorBucket]:
    """The counter's visitor buckets; a bucket's sketch is read by `with_sketch`."""
    where = (counter.namespace, counter.key)
    cursor = await connection.execute(BUCKETS, (*where, *where))
    return [
        VisitorBucket(counter, span, start, tuple(ids or ()), None)
        for span, start, ids in await cursor.fetchall()
    ]


async def with_sketch(connection: Connection, *, bucket: VisitorBucket) -> VisitorBucket:
    """The bucket with its registers, if it kept too many ids to be counted from them."""
    if len(bucket.ids) < EXACT_BELOW:
        return bucket
    where = (bucket.counter.namespace, bucket.counter.key, bucket.span, bucket.start)
    cursor = await connection.execute(RANKS, where)
    ranks = dict(await cursor.fetchall())
    sketch = VisitorSketch("registers", registers_data(ranks), estimate(ranks))
    return VisitorBucket(bucket.counter, bucket.span, bucket.start, bucket.ids, sketch)


class Restore:
    """A restore's statements, each with its parameters, in the order they run: a chunk of
    entries at a time, its counters' records (their history dropped first if it is replaced),
    then its history rows. Entries are read as the statements are asked for."""

    def __init__(self, entries: Iterable[RestoreEntry], *, replace_history: bool) -> None:
        self._entries = entries
        self._replace_history = replace_history
        self.converted = 0
        """Sketches converted from Redis's so far."""

    def statements(self) -> Iterator[tuple[str, list[Any]]]:
        chunk = _Chunk()
        for entry in self._entries:
            if isinstance(entry, CounterRecord) and (
                len(chunk.records) >= RESTORE_CHUNK or entry.counter in chunk.records
            ):  # a counter recorded again drops what its first record's entries wrote
                yield from chunk.statements(replace_history=self._replace_history)
                chunk = _Chunk()
            self.converted += chunk.add(entry)
            if chunk.rows >= RESTORE_ROWS:
                yield from chunk.statements(replace_history=self._replace_history)
                chunk = _Chunk()
        yield from chunk.statements(replace_history=self._replace_history)


@dataclass
class _Chunk:
    """The rows of some entries, each table's by primary key: a later entry's row replaces an
    earlier one's, as it would in a statement of its own."""

    records: dict[CounterId, CounterRecord] = field(default_factory=dict)
    hours: dict[tuple[str, str, int], int] = field(default_factory=dict)
    listed: set[tuple[str, str, int]] = field(default_factory=set)
    views: dict[tuple[str, str, int, str, str], int] = field(default_factory=dict)
    ids: set[tuple[str, str, int, int, int]] = field(default_factory=set)
    ranks: dict[tuple[str, str, int, int, int], int] = field(default_factory=dict)
    rows: int = 0

    def add(self, entry: RestoreEntry) -> bool:
        """Take in an entry; whether it converted a sketch from Redis's."""
        where = (entry.counter.namespace, entry.counter.key)
        if isinstance(entry, CounterRecord):
            self.records[entry.counter] = entry
            return False
        if isinstance(entry, HourlyHits):
            self.hours.update(((*where, hour), hits) for hour, hits in entry.hours)
            self.rows += len(entry.hours)
            return False
        if isinstance(entry, DailyViews):
            day = (*where, entry.day)
            self.views.update(((*day, kind, value), n) for kind, value, n in entry.views)
            self.rows += len(entry.views)
            return False
        bucket = (*where, entry.span, entry.start)
        ranks, converted = restored_ranks(entry)
        self.ids.update((*bucket, visitor) for visitor in entry.ids)
        if entry.span == HOUR_MS:
            self.listed.add((*where, entry.start))
        self.ranks.update(((*bucket, register), rank) for register, rank in ranks.items())
        self.rows += len(entry.ids) + len(ranks) + 1
        return converted

    def statements(self, *, replace_history: bool) -> Iterator[tuple[str, list[Any]]]:
        """The chunk's statements: none if it is empty. Rows go in primary key order, the order
        in which a batch write locks them too."""
        if self.records:
            records = [self.records[c] for c in sorted(self.records, key=_order)]
            columns = _columns(map(_record_row, records), width=8)
            if replace_history:
                yield f"WITH {CLEAR} {RESTORE_RECORDS}", [*columns[:2], *columns]
            else:
                yield RESTORE_RECORDS, columns
        if self.rows:
            listed = self.listed - self.hours.keys()
            yield (
                RESTORE_HISTORY,
                [
                    *_columns(_keyed_rows(self.hours), width=4),
                    *_columns(sorted(listed), width=3),
                    *_columns(_keyed_rows(self.views), width=6),
                    *_columns(sorted(self.ids), width=5),
                    *_columns(_keyed_rows(self.ranks), width=6),
                ],
            )


def _order(counter: CounterId) -> tuple[str, str]:
    return counter.namespace, counter.key


def _record_row(record: CounterRecord) -> tuple[Any, ...]:
    """A record as RESTORE_RECORDS's row."""
    r = record
    return (
        r.counter.namespace,
        r.counter.key,
        r.value,
        r.created_at,
        r.updated_at,
        r.admin_key_hash,
        r.bot_hits,
        r.count_once_per,
    )


def _keyed_rows(rows: Mapping[tuple[Any, ...], int]) -> list[tuple[Any, ...]]:
    """Rows kept by primary key as whole rows, in primary key order."""
    return [(*key, value) for key, value in sorted(rows.items())]


def _columns(rows: Iterable[tuple[Any, ...]], *, width: int) -> list[list[Any]]:
    """Rows of `width` values as that many columns, for `unnest`."""
    columns = [list(column) for column in zip(*rows, strict=True)]
    return columns or [[] for _ in range(width)]
