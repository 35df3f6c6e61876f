"""The visit-counting service: what the HTTP layer asks for, in the domain's terms.

Routes translate HTTP to calls on `Tracker`; `Tracker` talks to the store, writes going through
the group-commit `Recorder`.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from visit_tracker import history, ownership
from visit_tracker.errors import (
    CounterExists,
    CounterNotFound,
    Forbidden,
    StoreError,
    StoreOutcomeUnknown,
    Unauthenticated,
)
from visit_tracker.metrics import Metrics
from visit_tracker.reads import SharedReads
from visit_tracker.recorder import Recorder
from visit_tracker.settings import BotFilter, Settings
from visit_tracker.stores import (
    DEFAULT_COUNTER,
    CounterId,
    CounterRecord,
    Hit,
    Store,
    open_store,
)
from visit_tracker.stores.base import DAY_MS, hour_of, now_ms
from visit_tracker.visitors import RecentVisitors, Visitor, VisitorIds, is_bot

T = TypeVar("T")

logger = logging.getLogger("visit_tracker")

PURGE_INTERVAL = 3600.0
"""Seconds between two purges of old history."""

TOP_COUNTERS_TTL = 10.0
"""Seconds an answer of `Tracker.top_counters` is reused: the store reads every counter's value
to find it."""


@dataclass(frozen=True, slots=True)
class _TopCounters:
    """An answer of `Store.top_counters`, under way or given, and until when it is reused."""

    limit: int
    expires: float
    answer: "asyncio.Future[list[tuple[CounterId, int]]]"


def _missing(counter: CounterId) -> CounterNotFound:
    return CounterNotFound(f"counter {counter.namespace}/{counter.key} does not exist")


class Tracker:
    """Counts visits and reports on them."""

    def __init__(
        self,
        store: Store,
        *,
        metrics: Metrics,
        operator_token: str | None = None,
        history_days: int = 400,
        unique_visitors: bool = True,
        bot_filter: BotFilter = "named",
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._operator_token = operator_token
        self._history_days = history_days
        self._visitor_ids = (
            VisitorIds(lambda day: self._asked(store.salt(day))) if unique_visitors else None
        )
        self._recent = RecentVisitors()
        self._filters_named = bot_filter != "off"
        self._filters_original = bot_filter == "all"
        if self._filters_named:
            is_bot("")  # compiles the list's expressions now, not in the first request
        self._recorder = Recorder(store, metrics=metrics)
        self._reads = SharedReads(self._read)
        self._started = time.monotonic()
        self._top_counters: _TopCounters | None = None

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings, *, metrics: Metrics) -> AsyncIterator["Tracker"]:
        """Open the configured store; on exit, commit what is pending, then close the store."""
        store = await open_store(settings.store, wait_limit=settings.store_timeout)
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        tracker = cls(
            store,
            metrics=metrics,
            operator_token=token,
            history_days=settings.history_days,
            unique_visitors=settings.unique_visitors,
            bot_filter=settings.bot_filter,
        )
        purger = asyncio.create_task(tracker._purge_history_hourly())
        try:
            yield tracker
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            await tracker._recorder.close()
            await store.close()

    async def visit(
        self,
        counter: CounterId = DEFAULT_COUNTER,
        *,
        visitor: Visitor | None = None,
        original: bool = False,
    ) -> int:
        """Count one visit, of `visitor` when known, and return the counter's value including
        it. A known bot's visit counts in the counter's bot hits instead, and is answered the
        value as it stands; `original` marks one of the original `POST /visit`, which counts
        bots too unless the bot filter is `all`."""
        return await self._count(counter, None, None, visitor, original=original)

    async def view(
        self,
        counter: CounterId,
        *,
        page: str | None,
        referrer: str | None,
        visitor: Visitor | None = None,
    ) -> int:
        """Count one visit of a page (a path, no query string) coming from a referrer (an
        origin and path, no query string), each kept in the counter's daily history when
        given; the counter's value including it. A known bot's counts as in `visit`."""
        return await self._count(counter, page, referrer, visitor, original=False)

    async def _count(
        self,
        counter: CounterId,
        page: str | None,
        referrer: str | None,
        visitor: Visitor | None,
        *,
        original: bool,
    ) -> int:
        if self._is_bot(visitor, original=original):
            return await self._recorder.hit(Hit(counter, bot=True))
        if visitor is None or self._visitor_ids is None:
            return await self._recorder.hit(Hit(counter, page, referrer))
        visitor_id = await self._visitor_ids.id_of(visitor, namespace=counter.namespace)
        hour = hour_of(now_ms())
        recorded = self._recent.recorded(counter, hour, visitor_id)  # its hour and day hold it
        hit = Hit(counter, page, referrer, visitor_id, recorded_in=hour if recorded else None)
        value = await self._recorder.hit(hit)
        if not recorded:
            self._recent.note(counter, hour, visitor_id)
        return value

    def _is_bot(self, visitor: Visitor | None, *, original: bool) -> bool:
        filters = self._filters_original if original else self._filters_named
        return filters and visitor is not None and is_bot(visitor.user_agent)

    async def series(
        self, counter: CounterId, *, interval: history.Interval, start_ms: int, end_ms: int
    ) -> list[tuple[int, int, int]]:
        """Every hour or UTC day overlapping [start_ms, end_ms) with the counter's hits and
        unique visitors in it, as (start, hits, visitors), empty ones included;
        `CounterNotFound` if the counter does not exist."""
        await self.counter(counter)
        # Whole buckets: a day that the range ends in counts all its hours, as it does its pages.
        width = history.INTERVAL_MS[interval]
        start_ms = history.bucket_of(interval, start_ms)
        end_ms = history.bucket_of(interval, end_ms - 1) + width
        hours, visitors = await asyncio.gather(
            self._asked(self._store.series(counter, start_ms=start_ms, end_ms=end_ms)),
            self._asked(
                self._store.visitors(
                    counter,
                    ranges=[(start, start + width) for start in range(start_ms, end_ms, width)],
                )
            ),
        )
        buckets = history.filled(interval, hours, start_ms=start_ms, end_ms=end_ms)
        return [(start, hits, seen) for (start, hits), seen in zip(buckets, visitors, strict=True)]

    async def unique_visitors(self, counter: CounterId) -> tuple[int, int, int]:
        """The counter's unique visitors today, over the last 7 and the last 30 UTC days
        (today included)."""
        tomorrow = history.bucket_of("day", now_ms()) + DAY_MS
        ranges = [(tomorrow - days * DAY_MS, tomorrow) for days in (1, 7, 30)]
        today, week, month = await self._asked(self._store.visitors(counter, ranges=ranges))
        return today, week, month

    async def top_views(
        self, counter: CounterId, *, start_ms: int, end_ms: int, limit: int
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """The counter's `limit` most viewed pages and most frequent referrers over the UTC
        days overlapping [start_ms, end_ms); `CounterNotFound` if the counter does not exist."""
        await self.counter(counter)
        start_ms = history.bucket_of("day", start_ms)
        pages, referrers = await asyncio.gather(
            *(
                self._asked(
                    self._store.top(
                        counter, kind=kind, start_ms=start_ms, end_ms=end_ms, limit=limit
                    )
                )
                for kind in ("page", "referrer")
            )
        )
        return pages, referrers

    async def purge_history(self) -> None:
        """Delete every counter's history older than the days it is kept, and the visitor
        salts of days before yesterday even when no visitor came today, or unique visitors are
        off: a salt kept would let its day's ids be recomputed from addresses."""
        before = history.purge_before(now_ms(), history_days=self._history_days)
        await self._asked(self._store.purge(before))
        # Asking for today's salt deletes the older ones (and makes today's, if need be).
        await self._asked(self._store.salt(history.bucket_of("day", now_ms())))

    async def _purge_history_hourly(self) -> None:
        while True:
            try:
                await self.purge_history()
            except (StoreError, StoreOutcomeUnknown) as error:  # the next round catches up
                logger.warning("old history was not purged: %s", error)
            await asyncio.sleep(PURGE_INTERVAL)

    async def total(self, counter: CounterId = DEFAULT_COUNTER) -> int:
        """The counter's committed value, every visit acknowledged before this call included."""
        return await self._reads.value(counter)

    async def counter(self, counter: CounterId) -> CounterRecord:
        """The counter's record; `CounterNotFound` if it does not exist."""
        record = await self._asked(self._store.read(counter))
        if record is None:
            raise _missing(counter)
        return record

    async def create(
        self, counter: CounterId, *, value: int, count_once_per: int = 0
    ) -> tuple[CounterRecord, str]:
        """Create the counter at `value`, counting a visitor once per `count_once_per` minutes
        (0: every hit), owned by a new admin key; the record and that key, which is not kept
        anywhere. `CounterExists` if the counter exists."""
        if counter == DEFAULT_COUNTER:  # the site total must not be anyone's to take
            raise Forbidden(
                "the counter of POST /visit belongs to the operator: it claims it with the "
                "operator token at /v1/counters/default/visits/admin-key"
            )
        admin_key = ownership.new_admin_key()
        record = await self._asked(
            self._store.create(
                counter,
                value=value,
                admin_key_hash=ownership.key_hash(admin_key),
                count_once_per=count_once_per,
            )
        )
        if record is None:
            raise CounterExists(f"counter {counter.namespace}/{counter.key} exists already")
        return record, admin_key

    async def set_value(self, counter: CounterId, value: int, *, credential: str | None) -> int:
        """Set the counter's value as its owner or the operator; the value it had before."""
        old = await self.change(counter, value=value, credential=credential)
        return old.value

    async def change(
        self,
        counter: CounterId,
        *,
        value: int | None = None,
        count_once_per: int | None = None,
        credential: str | None,
    ) -> CounterRecord:
        """Set the counter's value and/or its window in minutes (0: every hit counts), those
        given, as its owner or the operator; the record as it was before."""
        await self._check_admin(counter, credential)
        old = await self._asked(
            self._store.update(counter, value=value, count_once_per=count_once_per)
        )
        if old is None:  # deleted since the check
            raise _missing(counter)
        return old

    async def add(self, counter: CounterId, amount: int, *, credential: str | None) -> int:
        """Add `amount` (negative subtracts) to the counter as its owner or the operator, in one
        atomic step that loses no concurrent hit; the new value, which stops at 0 and at the
        largest value a store keeps."""
        await self._check_admin(counter, credential)
        value = await self._asked(self._store.add(counter, amount=amount))
        if value is None:  # deleted since the check
            raise _missing(counter)
        return value

    async def delete(self, counter: CounterId, *, credential: str | None) -> None:
        """Delete the counter as its owner or the operator."""
        await self._check_admin(counter, credential)
        deleted = await self._asked(self._store.delete(counter))
        self._recent.forget()  # its visitors are gone: record them again
        if not deleted:
            raise _missing(counter)

    async def new_admin_key(self, counter: CounterId, *, credential: str | None) -> str:
        """Give the counter a new admin key, as its owner (the old key stops working) or the
        operator (which claims a counter that hits created, owned by nobody); the new key."""
        await self._check_admin(counter, credential)
        admin_key = ownership.new_admin_key()
        new_hash = ownership.key_hash(admin_key)
        if await self._asked(self._store.update(counter, admin_key_hash=new_hash)) is None:
            raise _missing(counter)
        return admin_key

    async def counters_in(self, namespace: str, *, after: str, limit: int) -> list[CounterRecord]:
        """Up to `limit` counters of the namespace, in key order, after the key `after`."""
        return await self._asked(self._store.counters_in(namespace, after=after, limit=limit))

    async def top_counters(self, limit: int) -> list[tuple[CounterId, int]]:
        """The `limit` counters with the highest values, of every namespace, highest first: as
        the store gave them up to TOP_COUNTERS_TTL seconds ago. Callers that ask meanwhile
        share one store read, and a failed read is not reused."""
        top, now = self._top_counters, time.monotonic()
        if top is None or top.expires <= now or top.limit < limit:
            answer = asyncio.ensure_future(self._asked(self._store.top_counters(limit)))
            top = self._top_counters = _TopCounters(limit, now + TOP_COUNTERS_TTL, answer)

            def forget_failure(answer: asyncio.Future[list[tuple[CounterId, int]]]) -> None:
                if self._top_counters is top and (answer.cancelled() or answer.exception()):
                    self._top_counters = None

            answer.add_done_callback(forget_failure)
        # Shielded: a caller that gives up must not cancel the read the others wait for.
        return (await asyncio.shield(top.answer))[:limit]

    async def _check_admin(self, counter: CounterId, credential: str | None) -> None:
        if credential is None:
            raise Unauthenticated("this needs the counter's admin key or the operator token")
        record = await self.counter(counter)
        ownership.check_admin(record, credential, operator_token=self._operator_token)

    async def _read(self, counter: CounterId) -> int:
        """One store read, shared by the callers waiting for it; its failure counted once."""
        return await self._asked(self._store.value(counter))

    async def _asked(self, operation: Awaitable[T]) -> T:
        """The answer of one store operation; its failure counted in the metrics."""
        try:
            return await operation
        except (StoreError, StoreOutcomeUnknown) as error:
            self._metrics.store_failed(error)
            raise

    def uptime(self) -> float:
        """Seconds since this process started serving."""
        return time.monotonic() - self._started

    async def check_ready(self) -> None:
        """Raise `StoreError` unless the store answers."""
        await self._asked(self._store.ping())
