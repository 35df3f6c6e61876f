"""An in-process store: the original demo's behaviour. Fast, exact within one process, and
forgotten on restart — for tests and trials, never for counts you want to keep."""

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from visit_tracker.stores.base import CounterId, CounterRecord, Hit, number_hits, tally


class MemoryStore:
    """Keeps counters in a dict; one event loop serialises every batch."""

    def __init__(self) -> None:
        self._records: dict[CounterId, CounterRecord] = {}

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        now = int(time.time() * 1000)
        totals = {}
        for counter, count in tally(hits).items():
            record = self._records.get(counter) or CounterRecord(counter, 0, now, now)
            self._records[counter] = replace(record, value=record.value + count, updated_at=now)
            totals[counter] = record.value + count
        return number_hits(hits, totals)

    async def value(self, counter: CounterId) -> int:
        record = self._records.get(counter)
        return record.value if record else 0

    async def export(self) -> AsyncIterator[CounterRecord]:
        for counter in sorted(self._records, key=lambda c: (c.namespace, c.key)):
            yield self._records[counter]

    async def restore(self, records: Sequence[CounterRecord]) -> None:
        self._records.update((record.counter, record) for record in records)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
