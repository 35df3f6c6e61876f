"""Move whole stores: every counter out to an export, or an export's counters in at once.

The format is `backup`'s; these functions only connect it to a store.
"""

from collections.abc import Callable, Iterable

from visit_tracker import backup
from visit_tracker.stores import open_store
from visit_tracker.stores.base import CounterRecord, RestoreEntry

WAIT_LIMIT = 60.0
"""Seconds each round trip of an export or import may wait on the store. The whole may take as
long as the store's size needs: stores bound each round trip of an export or restore, not its
total."""


async def export_counters(
    url: str, *, write: Callable[[str], object], counted: Callable[[], object]
) -> int:
    """Write the header and every counter of the store, each followed by its history (read
    with it, in one snapshot: see `Store.export_with_history`), calling `counted` as each
    begins; count them."""
    store = await open_store(url, wait_limit=WAIT_LIMIT)
    try:
        write(backup.format_header() + "\n")
        count = 0
        async for entry in store.export_with_history():
            if isinstance(entry, CounterRecord):
                write(backup.format_record(entry) + "\n")
                count += 1
                counted()
            else:
                write(backup.format_history(entry) + "\n")
        return count
    finally:
        await store.close()


async def import_counters(
    url: str, entries: Iterable[RestoreEntry], *, replace_history: bool
) -> int:
    """Make every recorded counter exactly as recorded, with its history if
    `replace_history` (atomically, but on Redis: see `Store.restore`); how many visitor
    sketches were converted from another family."""
    store = await open_store(url, wait_limit=WAIT_LIMIT)
    try:
        return await store.restore(entries, replace_history=replace_history)
    finally:
        await store.close()
