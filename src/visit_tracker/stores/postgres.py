"""The scale-out store: counters in PostgreSQL, shared by every instance behind a load balancer.

URL: `postgresql://user@host:5432/db` or `postgres://…`; any libpq parameter may follow in the
query string, e.g. `?options=-csearch_path%3Dcounting` to keep the tables in their own schema.

Speed: a batch is one statement, `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE …
RETURNING`, in its own implicit transaction: one round trip, prepared on each connection at its
first use and sent without psycopg's cursors (see `_postgres_wire.py`), on the connection the
last batch used; a batch of one counter, the usual case, has a simpler statement of its own.
The same statement adds the batch to the counters' history, in data-modifying `WITH` clauses:
their hourly buckets, and their daily page and referrer buckets when the batch has any. A
batch's counters (and pages) are sorted, and every statement writes its tables in the same
order, so concurrent batches lock rows in the same order and cannot deadlock. A restore writes
a chunk of counters and their history per round trip, all in one transaction (see
`_postgres_history.py`).
A counter's times are the server's clock, the one clock every instance shares. History buckets
are named by the instance's clock, as on every other store: an hour is wide enough for clocks
kept by NTP, and the time a read or a purge asks about is the instance's too.

Durability is the server's: with its default `synchronous_commit = on` a visit is acknowledged
only once its batch is flushed to disk. `?options=-csynchronous_commit%3Doff` in the URL trades
that for speed (no flush to wait for per batch): PostgreSQL then acknowledges before the flush,
and a crash of PostgreSQL itself can lose the last fraction of a second of acknowledged visits.

Time: no operation waits longer than `wait_limit` (connection from the pool, statement, answer);
export and restore, which move a whole store, take as long as it needs, but none of their round
trips does.
The server itself cancels a statement after half of it, so that a busy server or a row lock gives
a definite "not applied" before the limit. A store that just failed does not make the next calls
wait again for a connection: they fail at once until one is back. The pool reconnects in the
background, so the store recovers by itself when the server returns; a pooled connection that
the server hung up on while idle is noticed before use (no round trip) and replaced, so a
restarted server costs no failed request. (A visit that queues behind a batch which is itself
waiting can wait up to twice the limit: the recorder applies one batch at a time.)

What a caller is told when something fails:
- `StoreUnavailable`: nothing was applied — no connection in time, or the server refused or
  cancelled the statement (an error reply means its transaction rolled back). Safe to retry.
- `StoreOutcomeUnknown`: a write was sent, then the connection broke or the server stayed silent
  past the limit. Its implicit COMMIT may or may not have happened, and nothing on this side can
  tell; the HTTP layer answers 504 and says the visit may have been counted. A count can then be
  higher than the visits acknowledged, never lower: every acknowledged visit is committed.

Schema: versioned in `schema_version`, migrated at start in one transaction that holds an
advisory lock, so instances starting together migrate once. The user needs CREATE on the schema
for the first start (PostgreSQL 15 no longer grants it on `public` to everyone).
"""

import asyncio
import math
import select
import time
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from visit_tracker.errors import (
    StoreError,
    StoreOpenError,
    StoreOutcomeUnknown,
    StoreUnavailable,
)
from visit_tracker.stores import _postgres_history as history_rows
from visit_tracker.stores._postgres_wire import fetch_prepared
from visit_tracker.stores.base import (
    DAY_MS,
    HOUR_MS,
    LARGEST_SET,
    CounterId,
    CounterRecord,
    Hit,
    RestoreEntry,
    ViewBucket,
    ViewKind,
    day_of,
    hour_of,
    new_salt,
    now_ms,
    number_hits,
    once_per_window,
    tally,
    tally_bots,
    tally_views,
    tally_visitors,
    visitor_buckets,
    visitor_span,
    window_pairs,
)
from visit_tracker.stores.sketch import EXACT_BELOW, estimate, highest_ranks

T = TypeVar("T")

Connection = psycopg.AsyncConnection[TupleRow]

SCHEMA_VERSION = 6
MIGRATIONS = {
    1: """
        CREATE TABLE counters (
            namespace  text COLLATE "C" NOT NULL,
            key        text COLLATE "C" NOT NULL,
            value      bigint NOT NULL,
            created_at bigint NOT NULL,  -- unix time, milliseconds
            updated_at bigint NOT NULL,
            PRIMARY KEY (namespace, key)
        )
    """,
    2: "ALTER TABLE counters ADD COLUMN admin_key_hash text",  # SHA-256, hexadecimal
    # History: the indexes by time serve the purge. A bucket's time never changes once it is
    # inserted, so they cost a write only when a counter's first hit of an hour or day comes.
    3: """
        CREATE TABLE hourly_hits (
            namespace text COLLATE "C" NOT NULL,
            key       text COLLATE "C" NOT NULL,
            hour      bigint NOT NULL,  -- the hour's start, unix time in milliseconds
            hits      bigint NOT NULL,
            PRIMARY KEY (namespace, key, hour)
        );
        CREATE INDEX hourly_hits_by_hour ON hourly_hits (hour);
        CREATE TABLE daily_views (
            namespace text COLLATE "C" NOT NULL,
            key       text COLLATE "C" NOT NULL,
            day       bigint NOT NULL,  -- the UTC day's start, unix time in milliseconds
            kind      text COLLATE "C" NOT NULL,  -- 'page' or 'referrer'
            value     text COLLATE "C" NOT NULL,
            hits      bigint NOT NULL,
            PRIMARY KEY (namespace, key, day, kind, value)
        );
        CREATE INDEX daily_views_by_day ON daily_views (day);
    """,
    # Unique visitors (see sketch.py), per hour and per UTC day: `span` is the bucket's width
    # in milliseconds. No index by time: a purge finds the old buckets through hourly_hits.
    4: """
        CREATE TABLE visitor_ids (
            namespace text COLLATE "C" NOT NULL,
            key       text COLLATE "C" NOT NULL,
            span      bigint NOT NULL,
            start     bigint NOT NULL,
            visitor   bigint NOT NULL,
            PRIMARY KEY (namespace, key, span, start, visitor)
        );
        CREATE TABLE visitor_ranks (
            namespace text COLLATE "C" NOT NULL,
            key       text COLLATE "C" NOT NULL,
            span      bigint NOT NULL,
            start     bigint NOT NULL,
            register  integer NOT NULL,
            rank      smallint NOT NULL,
            PRIMARY KEY (namespace, key, span, start, register)
        );
        CREATE TABLE visitor_salts (
            day  bigint PRIMARY KEY,
            salt bytea NOT NULL
        );
    """,
    5: "ALTER TABLE counters ADD COLUMN bot_hits bigint NOT NULL DEFAULT 0",
    # Counting a visitor once per window: minutes (0: every hit counts), and per counter the
    # visitors counted whose window has not ended, until when (unix time, milliseconds).
    6: """
        ALTER TABLE counters ADD COLUMN count_once_per integer NOT NULL DEFAULT 0;
        CREATE TABLE counted_visitors (
            namespace text COLLATE "C" NOT NULL,
            key       text COLLATE "C" NOT NULL,
            visitor   bigint NOT NULL,
            until     bigint NOT NULL,
            PRIMARY KEY (namespace, key, visitor)
        );
        CREATE INDEX counted_visitors_by_end ON counted_visitors (until);
    """,
}

VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_version (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        version  integer NOT NULL
    )
"""

ADD_HOURS = """
    hours AS (
        INSERT INTO hourly_hits AS h (namespace, key, hour, hits)
        SELECT namespace, key, %s::bigint, hits
        FROM unnest(%s::text[], %s::text[], %s::bigint[])
            WITH ORDINALITY AS batch (namespace, key, hits, position)
        WHERE hits > 0
        ORDER BY position
        ON CONFLICT (namespace, key, hour) DO UPDATE SET hits = h.hits + excluded.hits
    )
"""
"""Adds a batch's hits to its counters' hourly buckets: the hour, then the counters' arrays
(a counter only bots hit has none)."""

ADD_ONE_HOUR = """
    hours AS (
        INSERT INTO hourly_hits AS h (namespace, key, hour, hits)
        VALUES (%s, %s, %s::bigint, %s::bigint)
        ON CONFLICT (namespace, key, hour) DO UPDATE SET hits = h.hits + excluded.hits
    )
"""
"""The same for a batch of one counter: its namespace, key, the hour and its hits (not
used when they are all bots')."""

COUNT_ONCE = """
    windows AS (
        SELECT namespace, key, count_once_per FROM counters
        WHERE count_once_per > 0
            AND (namespace, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
    ),
    marks AS (
        INSERT INTO counted_visitors AS m (namespace, key, visitor, until)
        SELECT namespace, key, visitor, %s::bigint + count_once_per * 60000::bigint
        FROM unnest(%s::text[], %s::text[], %s::bigint[])
            WITH ORDINALITY AS seen (namespace, key, visitor, position)
        JOIN windows USING (namespace, key)
        ORDER BY position
        ON CONFLICT (namespace, key, visitor) DO UPDATE SET until = excluded.until
        WHERE m.until <= %s::bigint
        RETURNING namespace, key, visitor
    ),
    counts AS (
        SELECT batch.namespace, batch.key, batch.position, batch.bots, batch.listed,
            CASE WHEN windows.key IS NULL THEN batch.hits
                ELSE batch.anonymous + (
                    SELECT count(*) FROM marks
                    WHERE (marks.namespace, marks.key) = (batch.namespace, batch.key)
                )
            END AS hits
        FROM unnest(
            %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::boolean[]
        ) WITH ORDINALITY AS batch (namespace, key, hits, anonymous, bots, listed, position)
        LEFT JOIN windows
            ON (windows.namespace, windows.key) = (batch.namespace, batch.key)
    ),
    hours AS (
        INSERT INTO hourly_hits AS h (namespace, key, hour, hits)
        SELECT namespace, key, %s::bigint, hits FROM counts WHERE hits > 0 OR listed
        ORDER BY position
        ON CONFLICT (namespace, key, hour) DO UPDATE SET hits = h.hits + excluded.hits
    )
"""
"""Decides which of a batch's hits count, for a batch with visitor ids: on a counter that
counts a visitor once per window, the hits without a visitor id and the visitors whose window
had ended, which it marks counted until the window's end; on the others every hit (bots' aside).
Then adds the counted hits to the hourly buckets, and a bucket of 0 hits where the batch
adds visitors: an hour of held-back hits still lists its visitor buckets for the purge, and a
counter only bots hit has no bucket, as on every other store. Parameters: the counters that
have visitors (namespaces, keys); the time; the distinct (counter, visitor) pairs, sorted; the
time again; the batch's counters with their hits, hits without a visitor id, bot hits, and
whether the batch adds visitors to their buckets; the hour."""

ADD_COUNTED = """
    counted AS (
        INSERT INTO counters AS c (namespace, key, value, bot_hits, created_at, updated_at)
        SELECT namespace, key, hits, bots, clock.now_ms, clock.now_ms
        FROM (SELECT floor(extract(epoch FROM now()) * 1000)::bigint AS now_ms) AS clock, counts
        ORDER BY position
        ON CONFLICT (namespace, key) DO UPDATE SET value = c.value + excluded.value,
            bot_hits = c.bot_hits + excluded.bot_hits, updated_at = excluded.updated_at
        RETURNING namespace, key, value
    )
"""
"""Adds COUNT_ONCE's counts to the counters, the last clause of its statement."""

COUNTED_ANSWER = """
    SELECT 'value', namespace, key, value FROM counted
    UNION ALL SELECT 'window', namespace, key, 0 FROM windows
    UNION ALL SELECT 'marked', namespace, key, visitor FROM marks
"""
"""The answer of a statement with COUNT_ONCE: each counter's value, each counter that has a
window, and each visitor marked counted."""

ADD_VIEWS = """
    views AS (
        INSERT INTO daily_views AS v (namespace, key, day, kind, value, hits)
        SELECT namespace, key, %s::bigint, kind, value, hits
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
            WITH ORDINALITY AS seen (namespace, key, kind, value, hits, position)
        ORDER BY position
        ON CONFLICT (namespace, key, day, kind, value) DO UPDATE SET hits = v.hits + excluded.hits
    )
"""
"""Adds a batch's pages and referrers to their daily buckets: the day, then their arrays."""

ADD_RANKS = """
    ranks AS (
        INSERT INTO visitor_ranks AS r (namespace, key, span, start, register, rank)
        SELECT namespace, key, span, start, register, rank
        FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::int[], %s::smallint[])
            WITH ORDINALITY AS seen (namespace, key, span, start, register, rank, position)
        ORDER BY position
        ON CONFLICT (namespace, key, span, start, register)
        DO UPDATE SET rank = excluded.rank WHERE r.rank < excluded.rank
    )
"""
"""Raises the batch's visitors' registers: their arrays (counter, bucket, register, rank)."""

ADD_IDS = """
    seen_ids AS (
        SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])
            WITH ORDINALITY AS seen (namespace, key, span, start, visitor, position)
    ),
    open_buckets AS (
        SELECT DISTINCT namespace, key, span, start FROM seen_ids AS seen
        WHERE NOT EXISTS (
            SELECT FROM visitor_ids AS kept
            WHERE (kept.namespace, kept.key, kept.span, kept.start)
                = (seen.namespace, seen.key, seen.span, seen.start)
            OFFSET %s
        )
    ),
    ids AS (
        INSERT INTO visitor_ids (namespace, key, span, start, visitor)
        SELECT namespace, key, span, start, visitor
        FROM seen_ids JOIN open_buckets USING (namespace, key, span, start)
        ORDER BY position
        ON CONFLICT DO NOTHING
    )
"""
"""Keeps the batch's visitor ids, its arrays (counter, bucket, id), in the buckets that keep
fewer than EXACT_BELOW: the offset that follows is EXACT_BELOW - 1, so a bucket is open unless
it has an EXACT_BELOW-th row. Concurrent batches may take a bucket past the limit; it then
counts from its registers, which hold every visitor."""

KEPT_IDS = """
    SELECT start, count(*) FROM visitor_ids
    WHERE namespace = %s AND key = %s AND span = %s AND start >= %s AND start < %s
    GROUP BY start
"""

IDS = """
    SELECT start, visitor FROM visitor_ids
    WHERE namespace = %s AND key = %s AND span = %s AND start = ANY(%s::bigint[])
"""

UNION_RANKS = """
    SELECT register, max(rank) FROM visitor_ranks
    WHERE namespace = %s AND key = %s AND span = %s AND start >= %s AND start < %s
    GROUP BY register
"""

SALT = """
    WITH gone AS (DELETE FROM visitor_salts WHERE day < %s),
        made AS (
            INSERT INTO visitor_salts (day, salt) VALUES (%s, %s)
            ON CONFLICT (day) DO NOTHING RETURNING salt
        )
    SELECT salt FROM made UNION ALL SELECT salt FROM visitor_salts WHERE day = %s
"""
"""The day's salt, made if it is new. No row when another instance made it after this
statement's snapshot was taken: asking again finds it."""

SERIES = """
    SELECT hour, hits FROM hourly_hits
    WHERE namespace = %s AND key = %s AND hour >= %s AND hour < %s ORDER BY hour
"""

TOP = """
    SELECT value, sum(hits)::bigint AS total FROM daily_views
    WHERE namespace = %s AND key = %s AND kind = %s AND day >= %s AND day < %s
    GROUP BY value ORDER BY total DESC, value LIMIT %s
"""

PURGE = """
    WITH marks AS (DELETE FROM counted_visitors WHERE until <= %(now)s),
        old AS (
            SELECT namespace, key, %(hour)s::bigint AS span, hour AS start
            FROM hourly_hits WHERE hour < %(before)s
            UNION
            SELECT namespace, key, %(day)s::bigint, hour - hour %% %(day)s
            FROM hourly_hits WHERE hour < %(before)s
        ),
        ids AS (
            DELETE FROM visitor_ids AS v USING old
            WHERE (v.namespace, v.key, v.span, v.start)
                = (old.namespace, old.key, old.span, old.start)
        ),
        ranks AS (
            DELETE FROM visitor_ranks AS v USING old
            WHERE (v.namespace, v.key, v.span, v.start)
                = (old.namespace, old.key, old.span, old.start)
        ),
        hours AS (DELETE FROM hourly_hits WHERE hour < %(before)s)
    DELETE FROM daily_views WHERE day < %(before)s
"""
"""Every visitor bucket has hits in hourly_hits: the old hours name the old buckets, which the
primary keys find without an index by time. Every clause sees the rows as the statement began."""

DELETE = """
    WITH hours AS (DELETE FROM hourly_hits WHERE namespace = %s AND key = %s),
        views AS (DELETE FROM daily_views WHERE namespace = %s AND key = %s),
        ids AS (DELETE FROM visitor_ids WHERE namespace = %s AND key = %s),
        ranks AS (DELETE FROM visitor_ranks WHERE namespace = %s AND key = %s),
        marks AS (DELETE FROM counted_visitors WHERE namespace = %s AND key = %s)
    DELETE FROM counters WHERE namespace = %s AND key = %s
"""

UPSERT_HITS = """
    INSERT INTO counters AS c (namespace, key, value, bot_hits, created_at, updated_at)
    SELECT namespace, key, hits, bots, clock.now_ms, clock.now_ms
    FROM (SELECT floor(extract(epoch FROM now()) * 1000)::bigint AS now_ms) AS clock,
        unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[])
            WITH ORDINALITY AS batch (namespace, key, hits, bots, position)
    ORDER BY position
    ON CONFLICT (namespace, key) DO UPDATE SET value = c.value + excluded.value,
        bot_hits = c.bot_hits + excluded.bot_hits, updated_at = excluded.updated_at
    RETURNING namespace, key, value
"""

UPSERT_ONE_COUNTER = """
    INSERT INTO counters AS c (namespace, key, value, bot_hits, created_at, updated_at)
    SELECT %s, %s, %s::bigint, %s::bigint, clock.now_ms, clock.now_ms
    FROM (SELECT floor(extract(epoch FROM now()) * 1000)::bigint AS now_ms) AS clock
    ON CONFLICT (namespace, key) DO UPDATE SET value = c.value + excluded.value,
        bot_hits = c.bot_hits + excluded.bot_hits, updated_at = excluded.updated_at
    RETURNING namespace, key, value
"""
"""The same for a batch of one counter (the usual case), cheaper to send and to plan."""

READ = """
    SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
    FROM counters WHERE namespace = %s AND key = %s
"""

CREATE = """
    INSERT INTO counters (
        namespace, key, value, created_at, updated_at, admin_key_hash, count_once_per
    )
    SELECT %s, %s, %s::bigint, clock.now_ms, clock.now_ms, %s::text, %s::int
    FROM (SELECT floor(extract(epoch FROM now()) * 1000)::bigint AS now_ms) AS clock
    ON CONFLICT (namespace, key) DO NOTHING
    RETURNING namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
"""

UPDATE = """
    UPDATE counters AS c SET value = coalesce(%s::bigint, c.value),
        admin_key_hash = coalesce(%s::text, c.admin_key_hash),
        count_once_per = coalesce(%s::int, c.count_once_per),
        updated_at = floor(extract(epoch FROM now()) * 1000)::bigint
    FROM (
        SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
        FROM counters WHERE namespace = %s AND key = %s FOR UPDATE
    ) AS old
    WHERE c.namespace = old.namespace AND c.key = old.key
    RETURNING old.namespace, old.key, old.value, old.created_at, old.updated_at,
        old.admin_key_hash, old.bot_hits, old.count_once_per
"""
"""Returns the row as it was: the subquery locks it and reads it before the update."""

ADD = """
    UPDATE counters SET
        value = least(greatest(value::numeric + %s::numeric, 0), %s::numeric)::bigint,
        updated_at = floor(extract(epoch FROM now()) * 1000)::bigint
    WHERE namespace = %s AND key = %s
    RETURNING value
"""
"""Adds in `numeric`, which cannot overflow, and brings the sum back within range as a bigint."""

LIST = """
    SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
    FROM counters WHERE namespace = %s AND key > %s ORDER BY key LIMIT %s
"""

TOP_COUNTERS = """
    SELECT namespace, key, value FROM counters ORDER BY value DESC, namespace, key LIMIT %s
"""

EXPORT = """
    SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
    FROM counters ORDER BY namespace, key
"""

OPEN_TIMEOUT = 10.0
"""Seconds a start may take to connect, wait for another instance's migration, and migrate."""

WINDOW_RECHECK = 5.0
"""Seconds a process takes a counter it found without a window (count_once_per) for one still:
its batches skip the window's clauses, which cost a third of the throughput of POST /visit. A
window set through another process applies here within this time; through this one, at once."""

MOST_WINDOWLESS = 10_000
"""Counters remembered as without a window; past it, every one is checked again."""

FAIL_FAST_WAIT = 0.05
"""Seconds a call waits for a connection while the last one found the server unreachable."""

RECONNECT_TIMEOUT = 5.0
"""Seconds the pool retries one connection (backing off 1, 2, 4 s) before it starts afresh.

Short, so that the back-off never grows long: the store is back within seconds of the server.
"""

MIN_CONNECTIONS = 2
MAX_CONNECTIONS = 4
"""Per process: the recorder writes one batch at a time; the rest serve reads and probes."""

KEEP_BATCH_CONNECTION = 60.0
"""Seconds the batch write keeps one connection out of the pool at most.

Batches on one connection, so on one server process, cost the server and the client less than
batches taken in turn from the pool's connections. Given back after this, the connection comes
under the pool's own rules again (its lifetime limit).
"""

SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
"""Makes every statement of an export's transaction read the snapshot its first one took."""

EXPORT_CHUNK = 1000
"""Counters fetched per round trip by `export`."""


def check_url(url: str) -> None:
    """Raise ValueError unless libpq can parse the URL."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise ValueError(f"bad PostgreSQL store URL: {_one_line(error)}") from None


@dataclass
class _Attempt:
    """What one operation got as far as, to tell "not applied" from "unknown" when it fails."""

    sent: bool = False


class PostgresStore:
    """Counters in a PostgreSQL table, through a pool of connections."""

    def __init__(
        self, *, name: str, pool: AsyncConnectionPool[Connection], wait_limit: float
    ) -> None:
        self._name = name
        self._pool = pool
        self._wait_limit = wait_limit
        self._reachable = True
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._batch_connection: tuple[Connection, float] | None = None
        """The last batch write's connection, and until when it may be kept out of the pool."""
        self._windowless: dict[CounterId, float] = {}
        """Counters found without a window, each until when it is taken to have none still."""
        self._windows_changed = 0
        """Windows set through this process so far: a batch that began before one learns
        nothing from what it read."""

    @classmethod
    async def open(cls, url: str, *, wait_limit: float) -> "PostgresStore":
        """Connect, bring the schema up to date, and fill the pool."""
        name = _public_name(url)
        conninfo = _conninfo(url, wait_limit=wait_limit)
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            open=False,
            min_size=MIN_CONNECTIONS,
            max_size=MAX_CONNECTIONS,
            kwargs={"autocommit": True},
            timeout=wait_limit,
            reconnect_timeout=RECONNECT_TIMEOUT,
            name="visit-tracker",
        )
        try:
            async with asyncio.timeout(OPEN_TIMEOUT):
                await _migrate(conninfo)
                await pool.open(wait=True, timeout=OPEN_TIMEOUT)
        except (psycopg.Error, TimeoutError) as error:
            await pool.close()
            reason = _one_line(error) or f"no answer within {OPEN_TIMEOUT:g} s"
            raise StoreOpenError(f"cannot open the PostgreSQL store {name}: {reason}") from error
        return cls(name=name, pool=pool, wait_limit=wait_limit)

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        now = now_ms()
        counts, visitors = tally(hits), tally_visitors(hits, hour=hour_of(now))
        counters = sorted(counts, key=lambda c: (c.namespace, c.key))
        with_ids, changed = self._may_have_windows(hits), self._windows_changed
        if with_ids:
            clauses, params = _count_once(hits, counters, counts, visitors, now=now)
            final, final_params = COUNTED_ANSWER, list[Any]()
        else:
            clauses, params, final, final_params = _upsert(
                counters, counts, tally_bots(hits), now=now
            )
        history_clauses, history_params = _history(tally_views(hits), visitors, now=now)
        clauses += history_clauses
        if with_ids:
            clauses.append(ADD_COUNTED)
        prefix = f"WITH {', '.join(clauses)} " if clauses else ""
        statement = f"{prefix}{final}"
        params = [*params, *history_params, *final_params]

        async def write(connection: Connection) -> list[TupleRow]:
            return await fetch_prepared(connection, statement, params)

        rows = await self._run(write, writes=True, batch=True)
        if not with_ids:
            return number_hits(hits, {CounterId(ns, key): value for ns, key, value in rows})
        totals: dict[CounterId, int] = {}
        windowed: set[CounterId] = set()
        marked: set[tuple[CounterId, int]] = set()
        for kind, namespace, key, number in rows:
            counter = CounterId(namespace, key)
            if kind == "value":
                totals[counter] = number
            elif kind == "window":
                windowed.add(counter)
            else:
                marked.add((counter, number))
        if changed == self._windows_changed:
            self._note_windowless({counter for counter, _ in window_pairs(hits)} - windowed)
        counted = once_per_window(hits, windowed=windowed, marked=marked)
        return number_hits(hits, totals, counted)

    def _may_have_windows(self, hits: Sequence[Hit]) -> bool:
        """Whether a hit of the batch has a visitor id on a counter that may have a window."""
        now = _clock()
        return any(
            hit.visitor is not None and not hit.bot and self._windowless.get(hit.counter, 0) <= now
            for hit in hits
        )

    def _note_windowless(self, counters: Iterable[CounterId]) -> None:
        if len(self._windowless) >= MOST_WINDOWLESS:
            self._windowless.clear()
        until = _clock() + WINDOW_RECHECK
        self._windowless.update(dict.fromkeys(counters, until))

    async def value(self, counter: CounterId) -> int:
        async def read(connection: Connection) -> int:
            cursor = await connection.execute(
                "SELECT value FROM counters WHERE namespace = %s AND key = %s",
                (counter.namespace, counter.key),
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        return await self._run(read, writes=False)

    async def read(self, counter: CounterId) -> CounterRecord | None:
        return await self._one_record(READ, (counter.namespace, counter.key), writes=False)

    async def create(
        self,
        counter: CounterId,
        *,
        value: int,
        admin_key_hash: str | None,
        count_once_per: int = 0,
    ) -> CounterRecord | None:
        arguments = (counter.namespace, counter.key, value, admin_key_hash, count_once_per)
        self._windows_changed += 1
        self._windowless.pop(counter, None)
        return await self._one_record(CREATE, arguments, writes=True)

    async def update(
        self,
        counter: CounterId,
        *,
        value: int | None = None,
        admin_key_hash: str | None = None,
        count_once_per: int | None = None,
    ) -> CounterRecord | None:
        arguments = (value, admin_key_hash, count_once_per, counter.namespace, counter.key)
        self._windows_changed += 1  # a batch under way may have read the old window
        self._windowless.pop(counter, None)
        return await self._one_record(UPDATE, arguments, writes=True)

    async def add(self, counter: CounterId, *, amount: int) -> int | None:
        async def write(connection: Connection) -> int | None:
            cursor = await connection.execute(
                ADD, (amount, LARGEST_SET, counter.namespace, counter.key)
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else None

        return await self._run(write, writes=True)

    async def delete(self, counter: CounterId) -> bool:
        async def write(connection: Connection) -> bool:
            cursor = await connection.execute(DELETE, (counter.namespace, counter.key) * 6)
            return cursor.rowcount > 0

        return await self._run(write, writes=True)

    async def series(
        self, counter: CounterId, *, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        async def read(connection: Connection) -> list[tuple[int, int]]:
            cursor = await connection.execute(
                SERIES, (counter.namespace, counter.key, start_ms, end_ms)
            )
            return [(hour, hits) for hour, hits in await cursor.fetchall()]

        return await self._run(read, writes=False)

    async def top(
        self, counter: CounterId, *, kind: ViewKind, start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, int]]:
        async def read(connection: Connection) -> list[tuple[str, int]]:
            cursor = await connection.execute(
                TOP, (counter.namespace, counter.key, kind, start_ms, end_ms, limit)
            )
            return [(value, hits) for value, hits in await cursor.fetchall()]

        return await self._run(read, writes=False)

    async def visitors(self, counter: CounterId, *, ranges: Sequence[tuple[int, int]]) -> list[int]:
        span = visitor_span(ranges)
        where = (counter.namespace, counter.key, span)
        if not ranges:
            return []
        first, last = min(start for start, _ in ranges), max(end for _, end in ranges)

        async def read(connection: Connection) -> list[int]:
            cursor = await connection.execute(KEPT_IDS, (*where, first, last))
            kept: dict[int, int] = {start: count for start, count in await cursor.fetchall()}
            ids: dict[int, list[int]] = defaultdict(list)
            partial = [start for start, count in kept.items() if count < EXACT_BELOW]
            if partial:
                cursor = await connection.execute(IDS, (*where, partial))
                for start, visitor in await cursor.fetchall():
                    ids[start].append(visitor)
            counts = []
            for low, high in ranges:
                starts = [start for start in kept if low <= start < high]
                if all(kept[start] < EXACT_BELOW for start in starts):
                    counts.append(len({visitor for start in starts for visitor in ids[start]}))
                else:
                    cursor = await connection.execute(UNION_RANKS, (*where, low, high))
                    counts.append(estimate(dict(await cursor.fetchall())))
            return counts

        return await self._run(read, writes=False)

    async def salt(self, day_ms: int) -> bytes:
        arguments = (day_ms - DAY_MS, day_ms, new_salt(), day_ms)

        async def write(connection: Connection) -> bytes:
            for _ in range(2):
                cursor = await connection.execute(SALT, arguments)
                row = await cursor.fetchone()
                if row is not None:
                    return bytes(row[0])
            raise StoreUnavailable(f"PostgreSQL store {self._name} kept no salt")

        return await self._run(write, writes=True)

    async def purge(self, before_ms: int) -> None:
        async def write(connection: Connection) -> None:
            await connection.execute(
                PURGE, {"before": before_ms, "hour": HOUR_MS, "day": DAY_MS, "now": now_ms()}
            )

        await self._run(write, writes=True)

    async def counters_in(self, namespace: str, *, after: str, limit: int) -> list[CounterRecord]:
        async def read(connection: Connection) -> list[CounterRecord]:
            cursor = await connection.execute(LIST, (namespace, after, limit))
            return [_record(row) for row in await cursor.fetchall()]

        return await self._run(read, writes=False)

    async def top_counters(self, limit: int) -> list[tuple[CounterId, int]]:
        # A scan of the counters table with a top-N heap sort: an index on the value would make
        # it cheap, at the price of moving an index entry on every hit.
        async def read(connection: Connection) -> list[tuple[CounterId, int]]:
            cursor = await connection.execute(TOP_COUNTERS, (limit,))
            return [(CounterId(ns, key), value) for ns, key, value in await cursor.fetchall()]

        return await self._run(read, writes=False)

    async def export(self) -> AsyncIterator[CounterRecord]:
        async for entry in self._export(with_history=False):
            if isinstance(entry, CounterRecord):
                yield entry

    def export_with_history(self) -> AsyncIterator[RestoreEntry]:
        return self._export(with_history=True)

    async def _export(self, *, with_history: bool) -> AsyncIterator[RestoreEntry]:
        """Every counter's record, each followed by its history if `with_history`.

        One REPEATABLE READ transaction on one connection: a server-side cursor fetches the
        counters a chunk per round trip, and each counter's history is read between fetches,
        all in the snapshot the transaction took first — one moment for the whole export,
        whatever the instances commit meanwhile. Export is not on the request path, so each
        round trip is bounded with a plain timeout."""
        try:
            connection = await self._live_connection()
        except PoolTimeout as error:
            raise self._no_connection() from error

        async def bounded(operation: Awaitable[T]) -> T:
            async with asyncio.timeout(self._wait_limit):
                return await operation

        try:
            async with connection.transaction(), connection.cursor("export") as cursor:
                await bounded(connection.execute(SNAPSHOT))
                await bounded(cursor.execute(EXPORT))
                while rows := await bounded(cursor.fetchmany(EXPORT_CHUNK)):
                    for row in rows:
                        record = _record(row)
                        yield record
                        if with_history:
                            async for entry in history_rows.history(
                                connection, record.counter, wait_limit=self._wait_limit
                            ):
                                yield entry
        except TimeoutError as error:
            raise StoreUnavailable(
                f"PostgreSQL store {self._name} did not answer within {self._wait_limit:g} s"
            ) from error
        except psycopg.Error as error:
            raise self._failure(error, connection, writes=False) from error
        finally:
            await self._pool.putconn(connection)

    async def restore(
        self, entries: Iterable[RestoreEntry], *, replace_history: bool = False
    ) -> int:
        self._windowless.clear()
        restore = history_rows.Restore(entries, replace_history=replace_history)
        await self._in_one_transaction(restore.statements())
        return restore.converted

    async def ping(self) -> None:
        async def select_one(connection: Connection) -> None:
            await connection.execute("SELECT 1")

        await self._run(select_one, writes=False)

    async def close(self) -> None:
        if self._batch_connection is not None:
            await self._pool.putconn(self._batch_connection[0])
            self._batch_connection = None
        for task in self._abandoned:
            task.cancel()
        if self._abandoned:
            await asyncio.wait(self._abandoned, timeout=self._wait_limit)
        await self._pool.close()

    async def _in_one_transaction(self, statements: Iterable[tuple[str, list[Any]]]) -> None:
        """Run the statements in one transaction on one connection: all applied, or none.

        Unlike `_run`, which bounds a whole operation, it bounds each round trip by the wait
        limit, so that a restore may take as long as its file needs. A failure closes the
        connection, which rolls back what was not committed.
        """
        try:
            connection = await self._live_connection()
        except PoolTimeout as error:
            raise self._no_connection() from error
        committing = False

        async def send(statement: str, params: list[Any] | None = None) -> None:
            async with asyncio.timeout(self._wait_limit):
                await connection.execute(statement, params)

        try:
            await send("BEGIN")
            for statement, params in statements:
                await send(statement, params)
            committing = True
            await send("COMMIT")
        except TimeoutError as error:
            await connection.close()
            raise self._silent(_Attempt(sent=True), writes=committing) from error
        except psycopg.Error as error:
            failure = self._failure(error, connection, writes=committing)
            await connection.close()
            raise failure from error
        except BaseException:
            await connection.close()
            raise
        finally:
            await self._pool.putconn(connection)

    async def _one_record(
        self, statement: str, arguments: tuple[object, ...], *, writes: bool
    ) -> CounterRecord | None:
        """Run a statement that returns at most one counter's row; that counter's record."""

        async def run(connection: Connection) -> CounterRecord | None:
            cursor = await connection.execute(statement, arguments)
            row = await cursor.fetchone()
            return _record(row) if row else None

        return await self._run(run, writes=writes)

    async def _run(
        self,
        operation: Callable[[Connection], Awaitable[T]],
        *,
        writes: bool,
        batch: bool = False,
    ) -> T:
        """Run one operation on a pooled connection, answering within the wait limit.

        An operation made of psycopg's calls runs in its own task: if the server falls silent,
        the caller is answered at the limit while psycopg cancels the statement in the
        background. The `batch` write gives up at once when it is cancelled (see
        `fetch_prepared`), so it is simply cancelled at the limit, with no task to start; it
        runs on the connection the last batch ran on while the server keeps it.
        """
        attempt = _Attempt()
        if batch:
            try:
                async with asyncio.timeout(self._wait_limit):
                    return await self._attempt(operation, attempt, writes=writes, batch=True)
            except TimeoutError:
                raise self._silent(attempt, writes=writes) from None
        task = asyncio.ensure_future(self._attempt(operation, attempt, writes=writes))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._wait_limit)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if done:
            return task.result()
        self._abandon(task)
        raise self._silent(attempt, writes=writes)

    def _silent(self, attempt: _Attempt, *, writes: bool) -> StoreError | StoreOutcomeUnknown:
        """The error of an operation the server did not answer within the wait limit."""
        self._reachable = False
        silence = f"PostgreSQL store {self._name} did not answer within {self._wait_limit:g} s"
        if writes and attempt.sent:
            return StoreOutcomeUnknown(
                f"{silence} after a write was sent: it may or may not have been applied"
            )
        return StoreUnavailable(silence)

    async def _attempt(
        self,
        operation: Callable[[Connection], Awaitable[T]],
        attempt: _Attempt,
        *,
        writes: bool,
        batch: bool = False,
    ) -> T:
        try:
            connection, keep_until = await self._connection(batch=batch)
        except PoolTimeout as error:
            self._reachable = False
            raise self._no_connection() from error
        attempt.sent = True
        kept = False
        try:
            result = await operation(connection)
            kept = batch and self._keep(connection, until=keep_until)
        except psycopg.Error as error:
            raise self._failure(error, connection, writes=writes) from error
        finally:
            if not kept:  # a connection that failed goes back: the pool checks it
                await self._pool.putconn(connection)
        self._reachable = True
        return result

    async def _connection(self, *, batch: bool) -> tuple[Connection, float]:
        """A connection for an operation, and until when a batch write may keep it: the last
        batch's, for a batch while the server keeps it, else one from the pool."""
        if batch and self._batch_connection is not None:
            (connection, keep_until), self._batch_connection = self._batch_connection, None
            if not _hung_up(connection):
                return connection, keep_until
            await connection.close()
            await self._pool.putconn(connection)
        return await self._live_connection(), time.monotonic() + KEEP_BATCH_CONNECTION

    def _keep(self, connection: Connection, *, until: float) -> bool:
        """Keep a batch's connection for the next batch, unless one is kept already (batches
        ran side by side) or it has been kept long enough; whether it was kept."""
        if self._batch_connection is not None or time.monotonic() >= until:
            return False
        self._batch_connection = (connection, until)
        return True

    async def _live_connection(self) -> Connection:
        """A pooled connection the server has not hung up on; PoolTimeout if none comes.

        Give it back with `putconn`.
        """
        wait = self._wait_limit if self._reachable else FAIL_FAST_WAIT
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PoolTimeout(f"no connection after {wait:g} s")
            connection = await self._pool.getconn(timeout=remaining)
            if not _hung_up(connection):
                return connection
            await connection.close()  # the pool sees it closed, drops it and connects anew
            await self._pool.putconn(connection)

    def _failure(
        self, error: psycopg.Error, connection: Connection, *, writes: bool
    ) -> StoreError | StoreOutcomeUnknown:
        reason = f"PostgreSQL store {self._name}: {_one_line(error)}"
        self._reachable = not connection.broken
        if connection.broken:
            if writes:
                return StoreOutcomeUnknown(
                    f"{reason} (the connection broke after a write was sent: it may or may not "
                    "have been applied)"
                )
            return StoreUnavailable(reason)
        if isinstance(error, psycopg.OperationalError):
            return StoreUnavailable(reason)
        return StoreError(reason)

    def _no_connection(self) -> StoreUnavailable:
        return StoreUnavailable(f"no connection to the PostgreSQL store {self._name} in time")

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        """Let a task the caller no longer waits for end in the background, its error dropped."""
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())


def _clock() -> float:
    """The clock of WINDOW_RECHECK (a function, so that tests can move it)."""
    return time.monotonic()


def _record(row: TupleRow) -> CounterRecord:
    namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits, window = row
    return CounterRecord(
        CounterId(namespace, key), value, created_at, updated_at, admin_key_hash, bot_hits, window
    )


def _upsert(
    counters: Sequence[CounterId],
    counts: Mapping[CounterId, int],
    bots: Mapping[CounterId, int],
    *,
    now: int,
) -> tuple[list[str], list[Any], str, list[Any]]:
    """For a batch without visitor ids: the `WITH` clauses that add `counts` to the hourly
    buckets of `counters` (sorted) and their parameters, then the statement that adds `counts`
    and `bots` to the counters and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if len(counters) == 1:
        (only,) = counters
        if counts[only]:
            clauses.append(ADD_ONE_HOUR)
            params += [only.namespace, only.key, hour_of(now), counts[only]]
        statement = UPSERT_ONE_COUNTER
        upsert = [only.namespace, only.key, counts[only], bots.get(only, 0)]
    else:
        namespaces, keys = [c.namespace for c in counters], [c.key for c in counters]
        hits = [counts[c] for c in counters]
        clauses.append(ADD_HOURS)
        params += [hour_of(now), namespaces, keys, hits]
        statement = UPSERT_HITS
        upsert = [namespaces, keys, hits, [bots.get(c, 0) for c in counters]]
    return clauses, params, statement, upsert


def _count_once(
    hits: Sequence[Hit],
    counters: Sequence[CounterId],
    counts: Mapping[CounterId, int],
    visitors: Mapping[CounterId, set[int]],
    *,
    now: int,
) -> tuple[list[str], list[Any]]:
    """For a batch with visitor ids: the clause COUNT_ONCE and its parameters."""
    pairs = sorted(window_pairs(hits), key=lambda p: (p[0].namespace, p[0].key, p[1]))
    having = sorted({counter for counter, _ in pairs}, key=lambda c: (c.namespace, c.key))
    anonymous = Tally(hit.counter for hit in hits if hit.visitor is None and not hit.bot)
    bots = tally_bots(hits)
    params: list[Any] = [
        [c.namespace for c in having],
        [c.key for c in having],
        now,
        [counter.namespace for counter, _ in pairs],
        [counter.key for counter, _ in pairs],
        [visitor for _, visitor in pairs],
        now,
        [c.namespace for c in counters],
        [c.key for c in counters],
        [counts[c] for c in counters],
        [anonymous[c] for c in counters],
        [bots.get(c, 0) for c in counters],
        [c in visitors for c in counters],
        hour_of(now),
    ]
    return [COUNT_ONCE], params


def _history(
    views: Mapping[ViewBucket, int], visitors: Mapping[CounterId, set[int]], *, now: int
) -> tuple[list[str], list[Any]]:
    """The `WITH` clauses that add `views` and `visitors` to their buckets, and their
    parameters in the order the clauses are written."""
    clauses: list[str] = []
    params: list[Any] = []
    if views:
        ordered = sorted(views, key=lambda v: (v[0].namespace, v[0].key, v[1], v[2]))
        clauses.append(ADD_VIEWS)
        params += [
            day_of(now),
            [counter.namespace for counter, _, _ in ordered],
            [counter.key for counter, _, _ in ordered],
            [kind for _, kind, _ in ordered],
            [value for _, _, value in ordered],
            [views[view] for view in ordered],
        ]
    if visitors:
        clauses += [ADD_RANKS, ADD_IDS]
        params += [*_visitor_ranks(visitors, now=now), *_visitor_ids(visitors, now=now)]
        params.append(EXACT_BELOW - 1)
    return clauses, params


def _visitor_ranks(visitors: Mapping[CounterId, set[int]], *, now: int) -> list[list[Any]]:
    """ADD_RANKS's arrays: a row per counter, bucket and register, in primary key order."""
    rows = sorted(
        (counter.namespace, counter.key, span, start, register, rank)
        for counter, seen in visitors.items()
        for register, rank in highest_ranks(seen).items()
        for span, start in visitor_buckets(now)
    )
    return [list(column) for column in zip(*rows, strict=True)]


def _visitor_ids(visitors: Mapping[CounterId, set[int]], *, now: int) -> list[list[Any]]:
    """ADD_IDS's arrays: a row per counter, bucket and visitor id, in primary key order."""
    rows = sorted(
        (counter.namespace, counter.key, span, start, visitor)
        for counter, seen in visitors.items()
        for visitor in seen
        for span, start in visitor_buckets(now)
    )
    return [list(column) for column in zip(*rows, strict=True)]


def _hung_up(connection: Connection) -> bool:
    """Whether an idle connection has something to read: the server's goodbye, or its EOF.

    An idle connection receives nothing unprompted in normal operation (we LISTEN to nothing),
    so anything readable means the server closed it or is closing it.
    """
    if connection.closed:
        return True
    # poll(), not select(): a worker holding many connections (event streams) numbers its
    # descriptors past 1023, which select() refuses.
    watch = select.poll()
    watch.register(connection.fileno(), select.POLLIN)
    return bool(watch.poll(0))


def _conninfo(url: str, *, wait_limit: float) -> str:
    """The URL's parameters plus the ones that bound every wait by `wait_limit`."""
    params = conninfo_to_dict(url)
    statement_timeout = f"-c statement_timeout={max(1, round(wait_limit * 500))}"
    params["options"] = f"{params.get('options', '')} {statement_timeout}".strip()
    params.setdefault("application_name", "visit-tracker")
    # libpq counts whole seconds, and takes 1 to mean 2.
    params.setdefault("connect_timeout", max(2, math.ceil(wait_limit)))
    return make_conninfo("", **params)


def _public_name(url: str) -> str:
    """The URL without its password and parameters: safe to print."""
    params = conninfo_to_dict(url)
    user = f"{params['user']}@" if "user" in params else ""
    port = f":{params['port']}" if "port" in params else ""
    return f"postgresql://{user}{params.get('host', '')}{port}/{params.get('dbname', '')}"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


async def _migrate(conninfo: str) -> None:
    """Create or upgrade the schema in one transaction, one instance at a time."""
    connection = await psycopg.AsyncConnection.connect(conninfo)
    async with connection, connection.transaction():
        await connection.execute(
            "SELECT set_config('statement_timeout', %s, true)", (f"{OPEN_TIMEOUT:g}s",)
        )
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext('visit-tracker migrations'))"
        )
        await connection.execute(VERSION_TABLE)
        cursor = await connection.execute("SELECT version FROM schema_version")
        row = await cursor.fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise psycopg.DataError(
                f"schema version {version} is newer than this visit-tracker ({SCHEMA_VERSION})"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    await connection.execute(statement)
        await connection.execute(
            "INSERT INTO schema_version (version) VALUES (%s) "
            "ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
            (SCHEMA_VERSION,),
        )
