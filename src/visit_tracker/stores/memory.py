"""An in-process store: the original demo's behaviour. Fast, exact within one process, and
forgotten on restart — for tests and trials, never for counts you want to keep."""

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import replace

from visit_tracker.stores.base import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    CounterId,
    CounterRecord,
    DailyViews,
    HistoryEntry,
    Hit,
    HourlyHits,
    RestoreEntry,
    ViewKind,
    VisitorBucket,
    VisitorSketch,
    day_of,
    highest,
    hour_of,
    new_salt,
    now_ms,
    number_hits,
    once_per_window,
    ranked,
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
    distinct,
    estimate,
    highest_ranks,
    registers_data,
    restored_ranks,
)


class BucketVisitors:
    """One hour's or day's visitors of one counter: their ids while fewer than `EXACT_BELOW`,
    and the HyperLogLog registers of them all."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.ranks: dict[int, int] = {}

    def add(self, visitors: set[int]) -> None:
        if len(self.ids) < EXACT_BELOW:
            self.ids.update(visitors)
        for register, rank in highest_ranks(visitors).items():
            if rank > self.ranks.get(register, 0):
                self.ranks[register] = rank


class MemoryStore:
    """Keeps counters in a dict; one event loop serialises every operation."""

    def __init__(self) -> None:
        self._records: dict[CounterId, CounterRecord] = {}
        self._hours: dict[CounterId, dict[int, int]] = {}
        """Per counter, hits per hour start."""
        self._views: dict[CounterId, dict[tuple[int, ViewKind, str], int]] = {}
        """Per counter, hits per (day start, kind, page or referrer)."""
        self._visitors: dict[CounterId, dict[tuple[int, int], BucketVisitors]] = {}
        """Per counter, visitors per (span, start) of each hour and day."""
        self._salts: dict[int, bytes] = {}
        self._counted: dict[tuple[CounterId, int], int] = {}
        """Per counter and visitor id counted on it within its window, when that window ends."""

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        now = now_ms()
        hour, day = hour_of(now), day_of(now)
        windowed, marked = set(), set()
        for counter, visitor in window_pairs(hits):
            record = self._records.get(counter)
            if record is None or not record.count_once_per:
                continue
            windowed.add(counter)
            if self._counted.get((counter, visitor), 0) <= now:
                self._counted[counter, visitor] = now + record.count_once_per * MINUTE_MS
                marked.add((counter, visitor))
        counted = once_per_window(hits, windowed=windowed, marked=marked)
        totals, bots, visitors = {}, tally_bots(hits), tally_visitors(hits, hour=hour)
        for counter, count in tally(hits, counted).items():
            record = self._records.get(counter) or CounterRecord(counter, 0, now, now)
            self._records[counter] = replace(
                record,
                value=record.value + count,
                bot_hits=record.bot_hits + bots.get(counter, 0),
                updated_at=now,
            )
            totals[counter] = record.value + count
            if count or counter in visitors:  # the hour lists its visitor buckets, as elsewhere
                hours = self._hours.setdefault(counter, {})
                hours[hour] = hours.get(hour, 0) + count
        for (counter, kind, value), count in tally_views(hits).items():
            views = self._views.setdefault(counter, {})
            views[day, kind, value] = views.get((day, kind, value), 0) + count
        for counter, seen in visitors.items():
            buckets = self._visitors.setdefault(counter, {})
            for bucket in visitor_buckets(now):
                buckets.setdefault(bucket, BucketVisitors()).add(seen)
        return number_hits(hits, totals, counted)

    async def visitors(self, counter: CounterId, *, ranges: Sequence[tuple[int, int]]) -> list[int]:
        buckets, span = self._visitors.get(counter, {}), visitor_span(ranges)
        counts = []
        for start_ms, end_ms in ranges:
            seen = [
                visitors
                for (of_span, start), visitors in buckets.items()
                if of_span == span and start_ms <= start < end_ms
            ]
            ranks: dict[int, int] = {}
            for bucket in seen:
                for register, rank in bucket.ranks.items():
                    ranks[register] = max(rank, ranks.get(register, 0))
            ids = (visitor for bucket in seen for visitor in bucket.ids)
            complete = all(len(bucket.ids) < EXACT_BELOW for bucket in seen)
            counts.append(distinct(ids, complete=complete, ranks=ranks))
        return counts

    async def salt(self, day_ms: int) -> bytes:
        for day in [day for day in self._salts if day < day_ms - DAY_MS]:
            del self._salts[day]
        return self._salts.setdefault(day_ms, new_salt())

    async def series(
        self, counter: CounterId, *, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        hours = self._hours.get(counter, {})
        return sorted((hour, hits) for hour, hits in hours.items() if start_ms <= hour < end_ms)

    async def top(
        self, counter: CounterId, *, kind: ViewKind, start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, int]]:
        totals: dict[str, int] = {}
        for (day, of_kind, value), hits in self._views.get(counter, {}).items():
            if of_kind == kind and start_ms <= day < end_ms:
                totals[value] = totals.get(value, 0) + hits
        return ranked(totals, limit)

    async def purge(self, before_ms: int) -> None:
        for hours in self._hours.values():
            for hour in [hour for hour in hours if hour < before_ms]:
                del hours[hour]
        for views in self._views.values():
            for bucket in [bucket for bucket in views if bucket[0] < before_ms]:
                del views[bucket]
        for seen in self._visitors.values():
            for span_start in [span_start for span_start in seen if span_start[1] < before_ms]:
                del seen[span_start]
        now = now_ms()
        self._counted = {pair: end for pair, end in self._counted.items() if end > now}

    async def value(self, counter: CounterId) -> int:
        record = self._records.get(counter)
        return record.value if record else 0

    async def read(self, counter: CounterId) -> CounterRecord | None:
        return self._records.get(counter)

    async def create(
        self,
        counter: CounterId,
        *,
        value: int,
        admin_key_hash: str | None,
        count_once_per: int = 0,
    ) -> CounterRecord | None:
        if counter in self._records:
            return None
        now = now_ms()
        record = CounterRecord(
            counter, value, now, now, admin_key_hash, count_once_per=count_once_per
        )
        self._records[counter] = record
        return record

    async def update(
        self,
        counter: CounterId,
        *,
        value: int | None = None,
        admin_key_hash: str | None = None,
        count_once_per: int | None = None,
    ) -> CounterRecord | None:
        old = self._records.get(counter)
        if old is None:
            return None
        self._records[counter] = replace(
            old,
            value=old.value if value is None else value,
            admin_key_hash=admin_key_hash or old.admin_key_hash,
            count_once_per=old.count_once_per if count_once_per is None else count_once_per,
            updated_at=now_ms(),
        )
        return old

    async def add(self, counter: CounterId, *, amount: int) -> int | None:
        old = self._records.get(counter)
        if old is None:
            return None
        value = within_range(old.value + amount)
        self._records[counter] = replace(old, value=value, updated_at=now_ms())
        return value

    async def delete(self, counter: CounterId) -> bool:
        self._hours.pop(counter, None)
        self._views.pop(counter, None)
        self._visitors.pop(counter, None)
        self._counted = {pair: end for pair, end in self._counted.items() if pair[0] != counter}
        return self._records.pop(counter, None) is not None

    async def counters_in(self, namespace: str, *, after: str, limit: int) -> list[CounterRecord]:
        keys = sorted(c.key for c in self._records if c.namespace == namespace and c.key > after)
        return [self._records[CounterId(namespace, key)] for key in keys[:limit]]

    async def top_counters(self, limit: int) -> list[tuple[CounterId, int]]:
        return highest(((c, record.value) for c, record in self._records.items()), limit)

    async def export(self) -> AsyncIterator[CounterRecord]:
        for counter in sorted(self._records, key=lambda c: (c.namespace, c.key)):
            yield self._records[counter]

    async def export_with_history(self) -> AsyncIterator[RestoreEntry]:
        for counter in sorted(self._records, key=lambda c: (c.namespace, c.key)):
            record = self._records.get(counter)
            if record is None:  # deleted while the counters before it were read
                continue
            # Taken whole before the first entry is given: the caller may await in between.
            entries: list[RestoreEntry] = [record, *self._history(counter)]
            for entry in entries:
                yield entry

    def _history(self, counter: CounterId) -> Iterator[HistoryEntry]:
        hours = sorted(self._hours.get(counter, {}).items())
        for first in range(0, len(hours), HISTORY_CHUNK):
            yield HourlyHits(counter, tuple(hours[first : first + HISTORY_CHUNK]))
        days: dict[int, list[tuple[ViewKind, str, int]]] = {}
        for (day, kind, value), hits in sorted(self._views.get(counter, {}).items()):
            days.setdefault(day, []).append((kind, value, hits))
        for day, views in days.items():
            yield DailyViews(counter, day, tuple(views))
        for (span, start), seen in sorted(self._visitors.get(counter, {}).items()):
            sketch = None
            if len(seen.ids) >= EXACT_BELOW:
                sketch = VisitorSketch(
                    "registers", registers_data(seen.ranks), estimate(seen.ranks)
                )
            yield VisitorBucket(counter, span, start, tuple(sorted(seen.ids)), sketch)

    async def restore(
        self, entries: Iterable[RestoreEntry], *, replace_history: bool = False
    ) -> int:
        # Checked entries apply one by one: nothing else runs meanwhile, and none can fail.
        converted = 0
        for entry in entries:
            if isinstance(entry, CounterRecord):
                self._records[entry.counter] = entry
                if replace_history:
                    for history in (self._hours, self._views, self._visitors):
                        history.pop(entry.counter, None)
            elif isinstance(entry, HourlyHits):
                self._hours.setdefault(entry.counter, {}).update(entry.hours)
            elif isinstance(entry, DailyViews):
                views = self._views.setdefault(entry.counter, {})
                for kind, value, hits in entry.views:
                    views[entry.day, kind, value] = hits
            else:
                bucket = BucketVisitors()
                bucket.ids = set(entry.ids)
                bucket.ranks, approximate = restored_ranks(entry)
                converted += approximate
                self._visitors.setdefault(entry.counter, {})[entry.span, entry.start] = bucket
                if entry.span == HOUR_MS:  # listed in the hours, as on every other store
                    self._hours.setdefault(entry.counter, {}).setdefault(entry.start, 0)
        return converted

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
