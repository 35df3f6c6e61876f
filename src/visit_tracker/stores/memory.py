"""An in-process store: the original demo's behaviour. Fast, exact within one process, and
forgotten on restart — for tests and trials, never for counts you want to keep."""

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from visit_tracker.stores.base import (
    CounterId,
    CounterRecord,
    Hit,
    now_ms,
    number_hits,
    tally,
    within_range,
)


class MemoryStore:
    """Keeps counters in a dict; one event loop serialises every operation."""

    def __init__(self) -> None:
        self._records: dict[CounterId, CounterRecord] = {}

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        now = now_ms()
        totals = {}
        for counter, count in tally(hits).items():
            record = self._records.get(counter) or CounterRecord(counter, 0, now, now)
            self._records[counter] = replace(record, value=record.value + count, updated_at=now)
            totals[counter] = record.value + count
        return number_hits(hits, totals)

    async def value(self, counter: CounterId) -> int:
        record = self._records.get(counter)
        return record.value if record else 0

    async def read(self, counter: CounterId) -> CounterRecord | None:
        return self._records.get(counter)

    async def create(
        self, counter: CounterId, *, value: int, admin_key_hash: str | None
    ) -> CounterRecord | None:
        if counter in self._records:
            return None
        now = now_ms()
        record = self._records[counter] = CounterRecord(counter, value, now, now, admin_key_hash)
        return record

    async def update(
        self, counter: CounterId, *, value: int | None = None, admin_key_hash: str | None = None
    ) -> CounterRecord | None:
        old = self._records.get(counter)
        if old is None:
            return None
        self._records[counter] = replace(
            old,
            value=old.value if value is None else value,
            admin_key_hash=admin_key_hash or old.admin_key_hash,
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
        return self._records.pop(counter, None) is not None

    async def counters_in(self, namespace: str, *, after: str, limit: int) -> list[CounterRecord]:
        keys = sorted(c.key for c in self._records if c.namespace == namespace and c.key > after)
        return [self._records[CounterId(namespace, key)] for key in keys[:limit]]

    async def export(self) -> AsyncIterator[CounterRecord]:
        for counter in sorted(self._records, key=lambda c: (c.namespace, c.key)):
            yield self._records[counter]

    async def restore(self, records: Sequence[CounterRecord]) -> None:
        self._records.update((record.counter, record) for record in records)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
