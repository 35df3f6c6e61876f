"""The embedded default store: one SQLite file in WAL mode, shared by every worker process.

Durability: with WAL and `synchronous=NORMAL` a committed transaction survives a crash of the
process (SIGKILL, OOM); only a power loss or kernel crash can drop the last commits.

Speed: a batch is one short write transaction run on the event loop (tens of microseconds).
Workers never sleep in SQLite's busy handler — it sleeps whole milliseconds and wrecks the tail
latency; a worker that finds the write lock taken retries on the next loop tick instead.
WAL checkpoints run in a thread, off the request path.
"""

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from visit_tracker.errors import StoreError, StoreOpenError, StoreUnavailable
from visit_tracker.stores.base import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    VISITOR_SPANS,
    CounterId,
    CounterRecord,
    DailyViews,
    Hit,
    HourlyHits,
    RestoreEntry,
    ViewKind,
    VisitorBucket,
    VisitorSketch,
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
    within_range,
)
from visit_tracker.stores.sketch import (
    EXACT_BELOW,
    HISTORY_CHUNK,
    estimate,
    highest_ranks,
    registers_data,
    restored_ranks,
)

T = TypeVar("T")

SCHEMA_VERSION = 6
MIGRATIONS = {
    1: """
        CREATE TABLE counters (
            namespace  TEXT    NOT NULL,
            key        TEXT    NOT NULL,
            value      INTEGER NOT NULL,
            created_at INTEGER NOT NULL,  -- unix time, milliseconds
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (namespace, key)
        ) WITHOUT ROWID
    """,
    2: "ALTER TABLE counters ADD COLUMN admin_key_hash TEXT",  # SHA-256, hexadecimal
    # History: the indexes by time serve the purge. A bucket's time never changes once it is
    # inserted, so they cost a write only when a counter's first hit of an hour or day comes.
    3: """
        CREATE TABLE hourly_hits (
            namespace TEXT    NOT NULL,
            key       TEXT    NOT NULL,
            hour      INTEGER NOT NULL,  -- the hour's start, unix time in milliseconds
            hits      INTEGER NOT NULL,
            PRIMARY KEY (namespace, key, hour)
        ) WITHOUT ROWID;
        CREATE INDEX hourly_hits_by_hour ON hourly_hits (hour);
        CREATE TABLE daily_views (
            namespace TEXT    NOT NULL,
            key       TEXT    NOT NULL,
            day       INTEGER NOT NULL,  -- the UTC day's start, unix time in milliseconds
            kind      TEXT    NOT NULL,  -- 'page' or 'referrer'
            value     TEXT    NOT NULL,
            hits      INTEGER NOT NULL,
            PRIMARY KEY (namespace, key, day, kind, value)
        ) WITHOUT ROWID;
        CREATE INDEX daily_views_by_day ON daily_views (day);
    """,
    # Unique visitors (see sketch.py), per hour and per UTC day: `span` is the bucket's width
    # in milliseconds. No index by time: a purge finds the old buckets through hourly_hits.
    4: """
        CREATE TABLE visitor_ids (
            namespace TEXT    NOT NULL,
            key       TEXT    NOT NULL,
            span      INTEGER NOT NULL,
            start     INTEGER NOT NULL,
            visitor   INTEGER NOT NULL,
            PRIMARY KEY (namespace, key, span, start, visitor)
        ) WITHOUT ROWID;
        CREATE TABLE visitor_ranks (
            namespace TEXT    NOT NULL,
            key       TEXT    NOT NULL,
            span      INTEGER NOT NULL,
            start     INTEGER NOT NULL,
            register  INTEGER NOT NULL,
            rank      INTEGER NOT NULL,
            PRIMARY KEY (namespace, key, span, start, register)
        ) WITHOUT ROWID;
        CREATE TABLE visitor_salts (
            day  INTEGER PRIMARY KEY,
            salt BLOB    NOT NULL
        );
    """,
    5: "ALTER TABLE counters ADD COLUMN bot_hits INTEGER NOT NULL DEFAULT 0",
    # Counting a visitor once per window: minutes (0: every hit counts), and per counter the
    # visitors counted whose window has not ended, until when (unix time, milliseconds).
    6: """
        ALTER TABLE counters ADD COLUMN count_once_per INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE counted_visitors (
            namespace TEXT    NOT NULL,
            key       TEXT    NOT NULL,
            visitor   INTEGER NOT NULL,
            until     INTEGER NOT NULL,
            PRIMARY KEY (namespace, key, visitor)
        ) WITHOUT ROWID;
        CREATE INDEX counted_visitors_by_end ON counted_visitors (until);
    """,
}

UPSERT_HITS = """
    INSERT INTO counters (namespace, key, value, bot_hits, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (namespace, key) DO UPDATE SET value = value + excluded.value,
        bot_hits = bot_hits + excluded.bot_hits, updated_at = excluded.updated_at
    RETURNING value
"""

WINDOW = "SELECT count_once_per FROM counters WHERE namespace = ? AND key = ?"

MARK_COUNTED = """
    INSERT INTO counted_visitors (namespace, key, visitor, until) VALUES (?, ?, ?, ?)
    ON CONFLICT (namespace, key, visitor) DO UPDATE SET until = excluded.until WHERE until <= ?
    RETURNING 1
"""
"""Marks a visitor counted on a counter until its window ends: a row if its last window had
ended (or it had none), no row if it is still within it."""

UPSERT_HOUR = """
    INSERT INTO hourly_hits (namespace, key, hour, hits) VALUES (?, ?, ?, ?)
    ON CONFLICT (namespace, key, hour) DO UPDATE SET hits = hits + excluded.hits
"""

UPSERT_VIEW = """
    INSERT INTO daily_views (namespace, key, day, kind, value, hits) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (namespace, key, day, kind, value) DO UPDATE SET hits = hits + excluded.hits
"""

COUNT_IDS = """
    SELECT count(*) FROM visitor_ids WHERE namespace = ? AND key = ? AND span = ? AND start = ?
"""

ADD_ID = """
    INSERT INTO visitor_ids (namespace, key, span, start, visitor) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT DO NOTHING
"""

UPSERT_RANK = """
    INSERT INTO visitor_ranks (namespace, key, span, start, register, rank)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (namespace, key, span, start, register)
    DO UPDATE SET rank = excluded.rank WHERE excluded.rank > rank
"""

FULL_BUCKETS = """
    SELECT start FROM visitor_ids
    WHERE namespace = ? AND key = ? AND span = ? AND start >= ? AND start < ?
    GROUP BY start HAVING count(*) >= ?
"""

COUNT_DISTINCT = """
    SELECT count(DISTINCT visitor) FROM visitor_ids
    WHERE namespace = ? AND key = ? AND span = ? AND start >= ? AND start < ?
"""

UNION_RANKS = """
    SELECT register, max(rank) FROM visitor_ranks
    WHERE namespace = ? AND key = ? AND span = ? AND start >= ? AND start < ?
    GROUP BY register
"""

PURGE_VISITORS = """
    DELETE FROM {table} WHERE (namespace, key, span, start) IN (
        SELECT DISTINCT namespace, key, ?, hour - hour % ? FROM hourly_hits WHERE hour < ?
    )
"""
"""Deletes the visitor buckets of a width that start before a time; every one of them has
hits in hourly_hits, which the purge clears after."""

NEW_SALT = """
    INSERT INTO visitor_salts (day, salt) VALUES (?, ?) ON CONFLICT DO NOTHING
"""

SERIES = """
    SELECT hour, hits FROM hourly_hits
    WHERE namespace = ? AND key = ? AND hour >= ? AND hour < ? ORDER BY hour
"""

TOP = """
    SELECT value, sum(hits) AS total FROM daily_views
    WHERE namespace = ? AND key = ? AND kind = ? AND day >= ? AND day < ?
    GROUP BY value ORDER BY total DESC, value LIMIT ?
"""

RESTORE = """
    INSERT INTO counters (
        namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits, count_once_per
    )
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (namespace, key) DO UPDATE SET
        value = excluded.value, created_at = excluded.created_at,
        updated_at = excluded.updated_at, admin_key_hash = excluded.admin_key_hash,
        bot_hits = excluded.bot_hits, count_once_per = excluded.count_once_per
"""

CREATE = """
    INSERT INTO counters (
        namespace, key, value, created_at, updated_at, admin_key_hash, count_once_per
    )
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (namespace, key) DO NOTHING
    RETURNING namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
"""

READ = """
    SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
    FROM counters WHERE namespace = ? AND key = ?
"""

UPDATE = """
    UPDATE counters SET value = coalesce(?, value),
        admin_key_hash = coalesce(?, admin_key_hash),
        count_once_per = coalesce(?, count_once_per), updated_at = ?
    WHERE namespace = ? AND key = ?
"""

VALUE = "SELECT value FROM counters WHERE namespace = ? AND key = ?"

SET_VALUE = "UPDATE counters SET value = ?, updated_at = ? WHERE namespace = ? AND key = ?"

LIST = """
    SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
    FROM counters WHERE namespace = ? AND key > ? ORDER BY key LIMIT ?
"""

TOP_COUNTERS = """
    SELECT namespace, key, value FROM counters ORDER BY value DESC, namespace, key LIMIT ?
"""

EXPORT = """
    SELECT namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits,
        count_once_per
    FROM counters ORDER BY namespace, key
"""

NAMES = "SELECT namespace, key FROM counters ORDER BY namespace, key"

HISTORY_TABLES = ("hourly_hits", "daily_views", "visitor_ids", "visitor_ranks")
LIST_HOUR = """
    INSERT INTO hourly_hits (namespace, key, hour, hits) VALUES (?, ?, ?, 0) ON CONFLICT DO NOTHING
"""
CLEAR_HISTORY = "DELETE FROM {table} WHERE namespace = ? AND key = ?"

HISTORY_HOURS = "SELECT hour, hits FROM hourly_hits WHERE namespace = ? AND key = ? ORDER BY hour"

HISTORY_VIEWS = """
    SELECT day, kind, value, hits FROM daily_views WHERE namespace = ? AND key = ?
    ORDER BY day, kind, value
"""

HISTORY_BUCKETS = """
    SELECT DISTINCT span, start FROM visitor_ranks WHERE namespace = ? AND key = ?
    ORDER BY span, start
"""

BUCKET_IDS = """
    SELECT visitor FROM visitor_ids WHERE namespace = ? AND key = ? AND span = ? AND start = ?
"""

BUCKET_RANKS = """
    SELECT register, rank FROM visitor_ranks
    WHERE namespace = ? AND key = ? AND span = ? AND start = ?
"""

OPEN_BUSY_TIMEOUT = 10.0
"""Seconds a worker may wait at start while others create the schema or switch to WAL."""

CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
CHECKPOINT_INTERVAL = 0.5
"""Seconds between WAL checkpoints; short enough that the log stays small under load."""


def _is_busy(error: sqlite3.Error) -> bool:
    primary_code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return primary_code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteStore:
    """Counters in one SQLite file; safe to share between processes on one machine."""

    def __init__(self, path: Path, connection: sqlite3.Connection, *, busy_timeout: float) -> None:
        self._path = path
        self._db = connection
        self._busy_timeout = busy_timeout
        self._closing = asyncio.Event()
        self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoint_until_closed())

    @classmethod
    async def open(cls, path: Path, *, busy_timeout: float) -> "SqliteStore":
        """Open (creating if needed) the file and bring its schema up to date."""
        try:
            _make_directory(path.parent)
            connection = _connect(path, busy_timeout=OPEN_BUSY_TIMEOUT)
            _migrate(connection)
            connection.execute("PRAGMA busy_timeout = 0")
        except (OSError, sqlite3.Error) as error:
            raise StoreOpenError(f"cannot open the SQLite store {path}: {error}") from error
        return cls(path, connection, busy_timeout=busy_timeout)

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        now = now_ms()
        hour, day = hour_of(now), day_of(now)
        bots, views, visitors, pairs = (
            tally_bots(hits),
            tally_views(hits),
            tally_visitors(hits, hour=hour),
            window_pairs(hits),
        )

        def write() -> tuple[dict[CounterId, int], list[bool]]:
            totals = {}
            with _write_transaction(self._db):
                counted = self._counted_once(hits, pairs, now=now)
                for counter, count in tally(hits, counted).items():
                    row = (counter.namespace, counter.key, count, bots.get(counter, 0), now, now)
                    (totals[counter],) = self._db.execute(UPSERT_HITS, row).fetchone()
                    if count or counter in visitors:  # the hour lists its visitor buckets
                        hour_row = (counter.namespace, counter.key, hour, count)
                        self._db.execute(UPSERT_HOUR, hour_row)
                if views:  # one call for all: a batch with pages has a row for nearly each hit
                    rows = [
                        (c.namespace, c.key, day, kind, v, n) for (c, kind, v), n in views.items()
                    ]
                    self._db.executemany(UPSERT_VIEW, rows)
                for counter, seen in visitors.items():
                    self._add_visitors(counter, seen, now=now)
            return totals, counted

        totals, counted = await self._run(write)
        return number_hits(hits, totals, counted)

    def _counted_once(
        self, hits: Sequence[Hit], pairs: Sequence[tuple[CounterId, int]], *, now: int
    ) -> list[bool]:
        """Whether each hit counts, marking the visitors that do on counters with a window.
        Runs inside the batch's write transaction."""
        windows: dict[CounterId, int] = {}
        for counter in dict.fromkeys(counter for counter, _ in pairs):
            row = self._db.execute(WINDOW, (counter.namespace, counter.key)).fetchone()
            if row is not None and row[0]:
                windows[counter] = row[0]
        marked = set()
        for counter, visitor in pairs:
            if counter in windows:
                until = now + windows[counter] * MINUTE_MS
                mark = (counter.namespace, counter.key, visitor, until, now)
                if self._db.execute(MARK_COUNTED, mark).fetchone() is not None:
                    marked.add((counter, visitor))
        return once_per_window(hits, windowed=windows, marked=marked)

    def _add_visitors(self, counter: CounterId, visitors: set[int], *, now: int) -> None:
        """Add a batch's visitors of one counter to its buckets: ids while the bucket has fewer
        than `EXACT_BELOW`, registers always. Runs inside the batch's write transaction."""
        ranks = highest_ranks(visitors)
        for span, start in visitor_buckets(now):
            bucket = (counter.namespace, counter.key, span, start)
            (kept,) = self._db.execute(COUNT_IDS, bucket).fetchone()
            if kept < EXACT_BELOW:
                self._db.executemany(ADD_ID, [(*bucket, visitor) for visitor in visitors])
            self._db.executemany(UPSERT_RANK, [(*bucket, *pair) for pair in ranks.items()])

    async def visitors(self, counter: CounterId, *, ranges: Sequence[tuple[int, int]]) -> list[int]:
        span = visitor_span(ranges)

        def read() -> list[int]:
            counts = []
            for start_ms, end_ms in ranges:
                where = (counter.namespace, counter.key, span, start_ms, end_ms)
                full = self._db.execute(FULL_BUCKETS, (*where, EXACT_BELOW)).fetchone()
                if full is None:
                    (count,) = self._db.execute(COUNT_DISTINCT, where).fetchone()
                    counts.append(count)
                else:
                    ranks = dict(self._db.execute(UNION_RANKS, where).fetchall())
                    counts.append(estimate(ranks))
            return counts

        return await self._run(read)

    async def salt(self, day_ms: int) -> bytes:
        def write() -> bytes:
            with _write_transaction(self._db):
                self._db.execute("DELETE FROM visitor_salts WHERE day < ?", (day_ms - DAY_MS,))
                self._db.execute(NEW_SALT, (day_ms, new_salt()))
                (salt,) = self._db.execute(
                    "SELECT salt FROM visitor_salts WHERE day = ?", (day_ms,)
                ).fetchone()
            return bytes(salt)

        return await self._run(write)

    async def series(
        self, counter: CounterId, *, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        where = (counter.namespace, counter.key, start_ms, end_ms)
        rows = await self._run(lambda: self._db.execute(SERIES, where).fetchall())
        return [(int(hour), int(hits)) for hour, hits in rows]

    async def top(
        self, counter: CounterId, *, kind: ViewKind, start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, int]]:
        where = (counter.namespace, counter.key, kind, start_ms, end_ms, limit)
        rows = await self._run(lambda: self._db.execute(TOP, where).fetchall())
        return [(str(value), int(hits)) for value, hits in rows]

    async def purge(self, before_ms: int) -> None:
        def write() -> None:
            with _write_transaction(self._db):
                for table in ("visitor_ids", "visitor_ranks"):
                    for span in VISITOR_SPANS:
                        purge = PURGE_VISITORS.format(table=table)
                        self._db.execute(purge, (span, span, before_ms))
                self._db.execute("DELETE FROM hourly_hits WHERE hour < ?", (before_ms,))
                self._db.execute("DELETE FROM daily_views WHERE day < ?", (before_ms,))
                self._db.execute("DELETE FROM counted_visitors WHERE until <= ?", (now_ms(),))

        await self._run(write)

    async def value(self, counter: CounterId) -> int:
        def read() -> int:
            row = self._db.execute(VALUE, (counter.namespace, counter.key)).fetchone()
            return int(row[0]) if row else 0

        return await self._run(read)

    async def read(self, counter: CounterId) -> CounterRecord | None:
        row = await self._run(
            lambda: self._db.execute(READ, (counter.namespace, counter.key)).fetchone()
        )
        return _record(row) if row else None

    async def create(
        self,
        counter: CounterId,
        *,
        value: int,
        admin_key_hash: str | None,
        count_once_per: int = 0,
    ) -> CounterRecord | None:
        now = now_ms()
        row = (counter.namespace, counter.key, value, now, now, admin_key_hash, count_once_per)

        def write() -> tuple[object, ...] | None:
            with _write_transaction(self._db):
                created: tuple[object, ...] | None = self._db.execute(CREATE, row).fetchone()
            return created

        created = await self._run(write)
        return _record(created) if created else None

    async def update(
        self,
        counter: CounterId,
        *,
        value: int | None = None,
        admin_key_hash: str | None = None,
        count_once_per: int | None = None,
    ) -> CounterRecord | None:
        where = (counter.namespace, counter.key)
        changes = (value, admin_key_hash, count_once_per, now_ms())

        def write() -> tuple[object, ...] | None:
            with _write_transaction(self._db):
                old: tuple[object, ...] | None = self._db.execute(READ, where).fetchone()
                if old is not None:
                    self._db.execute(UPDATE, (*changes, *where))
            return old

        old = await self._run(write)
        return _record(old) if old else None

    async def add(self, counter: CounterId, *, amount: int) -> int | None:
        where = (counter.namespace, counter.key)

        def write() -> int | None:
            # Computed here, inside the write transaction: SQLite would turn a sum past 2**63 - 1
            # into an inexact float.
            with _write_transaction(self._db):
                row = self._db.execute(VALUE, where).fetchone()
                if row is None:
                    return None
                value = within_range(int(row[0]) + amount)
                self._db.execute(SET_VALUE, (value, now_ms(), *where))
            return value

        return await self._run(write)

    async def delete(self, counter: CounterId) -> bool:
        where = (counter.namespace, counter.key)

        def write() -> bool:
            with _write_transaction(self._db):
                deleted = self._db.execute(
                    "DELETE FROM counters WHERE namespace = ? AND key = ?", where
                )
                self._db.execute("DELETE FROM hourly_hits WHERE namespace = ? AND key = ?", where)
                self._db.execute("DELETE FROM daily_views WHERE namespace = ? AND key = ?", where)
                self._db.execute("DELETE FROM visitor_ids WHERE namespace = ? AND key = ?", where)
                self._db.execute("DELETE FROM visitor_ranks WHERE namespace = ? AND key = ?", where)
                self._db.execute(
                    "DELETE FROM counted_visitors WHERE namespace = ? AND key = ?", where
                )
            return deleted.rowcount > 0

        return await self._run(write)

    async def counters_in(self, namespace: str, *, after: str, limit: int) -> list[CounterRecord]:
        rows = await self._run(lambda: self._db.execute(LIST, (namespace, after, limit)).fetchall())
        return [_record(row) for row in rows]

    async def top_counters(self, limit: int) -> list[tuple[CounterId, int]]:
        # A scan of the counters table, sorted in a heap of `limit` rows: an index on the value
        # would make it cheap, at the price of moving an index entry on every hit.
        rows = await self._run(lambda: self._db.execute(TOP_COUNTERS, (limit,)).fetchall())
        return [(CounterId(namespace, key), int(value)) for namespace, key, value in rows]

    async def export(self) -> AsyncIterator[CounterRecord]:
        # A snapshot: one read transaction sees every counter as of one moment.
        rows = await self._run(lambda: self._db.execute(EXPORT).fetchall())
        for row in rows:
            yield _record(row)

    async def export_with_history(self) -> AsyncIterator[RestoreEntry]:
        # Each counter is read again with its history in one read transaction, on a connection
        # of the export's own (the store's may be used meanwhile): in WAL mode a transaction
        # reads one snapshot, whatever other processes commit. One per counter, so that
        # checkpoints can move the WAL on between counters.
        counters = await self._run(lambda: self._db.execute(NAMES).fetchall())
        reader = await self._run(functools.partial(_connect, self._path, busy_timeout=0))
        try:
            for namespace, key in counters:
                counter = CounterId(namespace, key)
                await self._run(lambda: reader.execute("BEGIN"))
                try:
                    async for entry in self._counter_with_history(reader, counter):
                        yield entry
                finally:
                    reader.rollback()  # it wrote nothing: this only ends the snapshot
        finally:
            reader.close()

    async def _counter_with_history(
        self, reader: sqlite3.Connection, counter: CounterId
    ) -> AsyncIterator[RestoreEntry]:
        """The counter's record, then its history, read on `reader` inside its read
        transaction; nothing if the counter is gone."""
        where = (counter.namespace, counter.key)
        row = await self._run(lambda: reader.execute(READ, where).fetchone())
        if row is None:  # deleted since the counters were listed
            return
        yield _record(row)
        hours = await self._run(lambda: reader.execute(HISTORY_HOURS, where).fetchall())
        for first in range(0, len(hours), HISTORY_CHUNK):
            yield HourlyHits(counter, tuple(hours[first : first + HISTORY_CHUNK]))
        days: dict[int, list[tuple[ViewKind, str, int]]] = {}
        for day, kind, value, hits in await self._run(
            lambda: reader.execute(HISTORY_VIEWS, where).fetchall()
        ):
            days.setdefault(day, []).append((kind, value, hits))
        for day, views in days.items():
            yield DailyViews(counter, day, tuple(views))
        buckets = await self._run(lambda: reader.execute(HISTORY_BUCKETS, where).fetchall())
        for span, start in buckets:
            yield await self._run(functools.partial(_bucket, reader, counter, span, start))

    async def restore(
        self, entries: Iterable[RestoreEntry], *, replace_history: bool = False
    ) -> int:
        def write() -> int:
            with _write_transaction(self._db):
                return sum(self._restore_entry(entry, replace_history) for entry in entries)

        return await self._run(write)

    def _restore_entry(self, entry: RestoreEntry, replace_history: bool) -> bool:
        """Write one entry inside restore's transaction; whether it converted a sketch."""
        where = (entry.counter.namespace, entry.counter.key)
        if isinstance(entry, CounterRecord):
            r = entry
            row = (r.value, r.created_at, r.updated_at, r.admin_key_hash, r.bot_hits)
            self._db.execute(RESTORE, (*where, *row, r.count_once_per))
            if replace_history:
                for table in HISTORY_TABLES:
                    self._db.execute(CLEAR_HISTORY.format(table=table), where)
            return False
        if isinstance(entry, HourlyHits):
            self._db.executemany(UPSERT_HOUR, [(*where, *pair) for pair in entry.hours])
            return False
        if isinstance(entry, DailyViews):
            rows = [(*where, entry.day, *view) for view in entry.views]
            self._db.executemany(UPSERT_VIEW, rows)
            return False
        bucket = (*where, entry.span, entry.start)
        ranks, converted = restored_ranks(entry)
        self._db.executemany(ADD_ID, [(*bucket, visitor) for visitor in entry.ids])
        if entry.span == HOUR_MS:  # listed in the hours, where a purge finds it
            self._db.execute(LIST_HOUR, (*where, entry.start))
        self._db.executemany(UPSERT_RANK, [(*bucket, *pair) for pair in ranks.items()])
        return converted

    async def ping(self) -> None:
        await self._run(lambda: self._db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(asyncio.CancelledError):  # as when its event loop ended
            await self._checkpointer
        with contextlib.suppress(sqlite3.Error):
            self._db.execute(CHECKPOINT)
        self._db.close()

    async def _run(self, operation: Callable[[], T]) -> T:
        """Run one short operation, retrying on later loop ticks while another process writes."""
        deadline = time.monotonic() + self._busy_timeout
        attempt = 0
        while True:
            try:
                return operation()
            except sqlite3.Error as error:
                if not _is_busy(error):
                    raise StoreError(f"SQLite store {self._path}: {error}") from error
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"SQLite store {self._path} stayed locked for {self._busy_timeout:g} s"
                    ) from error
            # The lock holder needs microseconds: yield one tick, then back off gently.
            await asyncio.sleep(0 if attempt < 8 else min(0.0001 * 2 ** (attempt - 8), 0.01))
            attempt += 1

    async def _checkpoint_until_closed(self) -> None:
        """Checkpoint the WAL every `CHECKPOINT_INTERVAL` seconds, on a connection and in a
        thread of their own, until the store closes. The thread also closes the connection,
        after any checkpoint under way, even when this task is cancelled: a connection closed
        under a running checkpoint crashes the process (SIGSEGV)."""
        loop = asyncio.get_running_loop()
        checkpointer = _connect(self._path, busy_timeout=0)  # at once, as `open` connects
        with ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoints") as thread:
            try:
                while not await _is_set_within(self._closing, CHECKPOINT_INTERVAL):
                    with contextlib.suppress(sqlite3.Error):  # busy: the next round catches up
                        await loop.run_in_executor(thread, checkpointer.execute, CHECKPOINT)
            finally:
                thread.submit(checkpointer.close)  # leaving `with` waits for it


async def _is_set_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether `event` is set within `seconds`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    return event.is_set()


def _bucket(
    connection: sqlite3.Connection, counter: CounterId, span: int, start: int
) -> VisitorBucket:
    """One visitor bucket of a counter, with its registers if it keeps too many ids to be
    counted from them."""
    where = (counter.namespace, counter.key, span, start)
    ids = tuple(sorted(v for (v,) in connection.execute(BUCKET_IDS, where)))
    sketch = None
    if len(ids) >= EXACT_BELOW:
        ranks = dict(connection.execute(BUCKET_RANKS, where).fetchall())
        sketch = VisitorSketch("registers", registers_data(ranks), estimate(ranks))
    return VisitorBucket(counter, span, start, ids, sketch)


def _record(row: Sequence[object]) -> CounterRecord:
    namespace, key, value, created_at, updated_at, admin_key_hash, bot_hits, window = row
    return CounterRecord(
        CounterId(str(namespace), str(key)),
        int(value),  # type: ignore[call-overload]
        int(created_at),  # type: ignore[call-overload]
        int(updated_at),  # type: ignore[call-overload]
        None if admin_key_hash is None else str(admin_key_hash),
        int(bot_hits),  # type: ignore[call-overload]
        int(window),  # type: ignore[call-overload]
    )


@contextlib.contextmanager
def _write_transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """Take the write lock at once (BUSY if another process holds it), commit or roll back."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        connection.rollback()
        raise


def _make_directory(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"{directory} is not a directory") from None
    except OSError as error:
        raise OSError(f"cannot create the directory {directory}: {error.strerror}") from error


def _connect(path: Path, *, busy_timeout: float) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    return connection


def _check_not_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this visit-tracker ({SCHEMA_VERSION})"
        )


def _migrate(connection: sqlite3.Connection) -> None:
    with _write_transaction(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        _check_not_newer(version)
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
