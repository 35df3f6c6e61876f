"""Reading one counter's history back from a store, as an export carries it."""

from visit_tracker.stores import CounterId, CounterRecord, Store
from visit_tracker.stores.base import HistoryEntry


async def history_of(store: Store, counter: CounterId) -> list[HistoryEntry]:
    """The counter's history, in the order an export writes it after the counter's record."""
    return [
        entry
        async for entry in store.export_with_history()
        if entry.counter == counter and not isinstance(entry, CounterRecord)
    ]
