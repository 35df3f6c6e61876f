"""A PostgreSQL store's history as export reads it and restore writes it (see `postgres.py`)."""

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection

from visit_tracker.stores.base import (
    HOUR_MS,
    CounterId,
    CounterRecord,
    DailyViews,
    HourlyHits,
    RestoreEntry,
    ViewKind,
    VisitorBucket,
    VisitorSketch,
)
from visit_tracker.stores.sketch import EXACT_BELOW, estimate, registers_data, restored_ranks

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

CLEAR = """
    WITH hours AS (DELETE FROM hourly_hits WHERE namespace = %(ns)s AND key = %(key)s),
        views AS (DELETE FROM daily_views WHERE namespace = %(ns)s AND key = %(key)s),
        ids AS (DELETE FROM visitor_ids WHERE namespace = %(ns)s AND key = %(key)s)
    DELETE FROM visitor_ranks WHERE namespace = %(ns)s AND key = %(key)s
"""

RESTORE_HOURS = """
    INSERT INTO hourly_hits (namespace, key, hour, hits)
    SELECT %s, %s, hour, hits FROM unnest(%s::bigint[], %s::bigint[]) AS h (hour, hits)
    ON CONFLICT (namespace, key, hour) DO UPDATE SET hits = excluded.hits
"""

RESTORE_VIEWS = """
    INSERT INTO daily_views (namespace, key, day, kind, value, hits)
    SELECT %s, %s, %s, kind, value, hits
    FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS v (kind, value, hits)
    ON CONFLICT (namespace, key, day, kind, value) DO UPDATE SET hits = excluded.hits
"""

RESTORE_IDS = """
    INSERT INTO visitor_ids (namespace, key, span, start, visitor)
    SELECT %s, %s, %s, %s, visitor FROM unnest(%s::bigint[]) AS v (visitor)
    ON CONFLICT DO NOTHING
"""

LIST_HOUR = """
    INSERT INTO hourly_hits (namespace, key, hour, hits) VALUES (%s, %s, %s, 0)
    ON CONFLICT DO NOTHING
"""
"""Lists a visitor hour in the hours, where a purge finds it, if its hits did not."""

RESTORE_RANKS = """
    INSERT INTO visitor_ranks (namespace, key, span, start, register, rank)
    SELECT %s, %s, %s, %s, register, rank
    FROM unnest(%s::int[], %s::smallint[]) AS r (register, rank)
    ON CONFLICT (namespace, key, span, start, register) DO UPDATE SET rank = excluded.rank
"""


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


async def restore(
    connection: Connection,
    entries: Iterable[RestoreEntry],
    *,
    restore_records: str,
    replace_history: bool,
) -> int:
    """Write every entry in one transaction (`restore_records` writes counters' records);
    how many sketches were converted from Redis's."""
    converted = 0
    async with connection.transaction():
        for entry in entries:
            where = (entry.counter.namespace, entry.counter.key)
            if isinstance(entry, CounterRecord):
                r = entry
                row = (r.value, r.created_at, r.updated_at, r.admin_key_hash, r.bot_hits)
                columns = [[value] for value in (*where, *row, r.count_once_per)]
                await connection.execute(restore_records, columns)
                if replace_history:
                    await connection.execute(CLEAR, {"ns": where[0], "key": where[1]})
            elif isinstance(entry, HourlyHits):
                hours_, hits = zip(*entry.hours, strict=True)
                await connection.execute(RESTORE_HOURS, (*where, list(hours_), list(hits)))
            elif isinstance(entry, DailyViews):
                kinds, values, counts = zip(*entry.views, strict=True)
                await connection.execute(
                    RESTORE_VIEWS, (*where, entry.day, list(kinds), list(values), list(counts))
                )
            else:
                bucket = (*where, entry.span, entry.start)
                ranks, approximate = restored_ranks(entry)
                converted += approximate
                await connection.execute(RESTORE_IDS, (*bucket, list(entry.ids)))
                if entry.span == HOUR_MS:
                    await connection.execute(LIST_HOUR, (*where, entry.start))
                await connection.execute(
                    RESTORE_RANKS, (*bucket, list(ranks), list(ranks.values()))
                )
    return converted
