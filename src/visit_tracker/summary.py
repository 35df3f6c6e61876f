"""What `visit-tracker stats` shows: a store's counters with the most visits, as a table.

The store is read directly, as `export` reads it: no server needs to run, and every counter is
read once, in name order, keeping only the ones to show.
"""

import heapq
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich import box
from rich.table import Table

from visit_tracker.stores import CounterRecord, Store, open_store
from visit_tracker.transfer import WAIT_LIMIT

PAGE = 1000
"""Counters read from the store at a time, when listing one namespace."""


@dataclass
class Summary:
    """The counters with the highest values, most first (equal ones in name order), and how
    many counters, and visits, there were in all."""

    limit: int | None
    """How many counters to keep; None for all."""
    counters: int = 0
    visits: int = 0
    _kept: list[tuple[int, int, CounterRecord]] = field(default_factory=list)

    def add(self, record: CounterRecord) -> None:
        """Count a counter, keeping it if it is among the highest so far. Counters come in name
        order, so that among equal values the earliest one stays."""
        self.counters += 1
        self.visits += record.value
        entry = (record.value, -self.counters, record)
        if self.limit is None or len(self._kept) < self.limit:
            heapq.heappush(self._kept, entry)
        elif entry > self._kept[0]:  # (value, -order) tells any two apart
            heapq.heapreplace(self._kept, entry)

    def top(self) -> list[CounterRecord]:
        return [record for _, _, record in sorted(self._kept, reverse=True)]


async def counters_of(store: Store, namespace: str | None) -> AsyncIterator[CounterRecord]:
    """Every counter of the store, or of one namespace, in name order."""
    if namespace is None:
        async for record in store.export():
            yield record
        return
    after = ""
    while page := await store.counters_in(namespace, after=after, limit=PAGE):
        for record in page:
            yield record
        after = page[-1].counter.key


async def summarize(
    url: str, *, namespace: str | None, limit: int | None, counted: Callable[[], object]
) -> Summary:
    """The summary of the store at `url`, or of one of its namespaces; `counted` is called
    after each counter read."""
    summary = Summary(limit)
    store = await open_store(url, wait_limit=WAIT_LIMIT)
    try:
        async for record in counters_of(store, namespace):
            summary.add(record)
            counted()
    finally:
        await store.close()
    return summary


def _when(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def table(summary: Summary) -> Table:
    """The summary as a table: a row per counter kept, the totals below."""
    shown = summary.top()
    caption = f"{len(shown):,} of {summary.counters:,} counters, {summary.visits:,} visits in all"
    rows = Table(caption=caption, box=box.SIMPLE_HEAD)
    rows.add_column("namespace", overflow="fold")
    rows.add_column("key", overflow="fold")
    rows.add_column("value", justify="right")
    rows.add_column("updated (UTC)", no_wrap=True)
    for record in shown:
        rows.add_row(
            record.counter.namespace,
            record.counter.key,
            f"{record.value:,}",
            _when(record.updated_at),
        )
    return rows
