"""The history every store keeps beside its counters: hourly hits, daily pages and referrers,
their reads and their purge; each test runs once per backend, on a controlled clock."""

from datetime import UTC, datetime

import pytest
from time_machine import TimeMachineFixture

from visit_tracker.stores import CounterId, Hit, Store
from visit_tracker.stores.base import DAY_MS, HOUR_MS

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")

TEN = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
"""A quarter past ten, UTC, on some day."""
TEN_MS = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)
"""The start of that hour in Unix ms."""
DAY = TEN_MS - 10 * HOUR_MS
"""The start of that day in Unix ms."""
EVERYTHING = {"start_ms": 0, "end_ms": 2**62}


def page(counter: CounterId, path: str, referrer: str | None = None) -> Hit:
    return Hit(counter, page=path, referrer=referrer)


async def test_batches_in_one_hour_add_up_in_its_bucket(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Every batch applied within one hour adds its hits to that hour's bucket, per counter."""
    time_machine.move_to(TEN, tick=False)
    await store.apply([Hit(HOME)] * 3)
    await store.apply([Hit(HOME), Hit(ABOUT), page(HOME, "/a")])
    assert await store.series(HOME, start_ms=TEN_MS, end_ms=TEN_MS + HOUR_MS) == [(TEN_MS, 5)]
    assert await store.series(ABOUT, start_ms=TEN_MS, end_ms=TEN_MS + HOUR_MS) == [(TEN_MS, 1)]


async def test_an_hour_boundary_splits_the_buckets(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Hits on either side of an hour's start land in two buckets; reads take [start, end)."""
    time_machine.move_to(datetime(2026, 3, 1, 10, 59, 59, 999_000, tzinfo=UTC), tick=False)
    await store.apply([Hit(HOME)] * 2)
    time_machine.move_to(datetime(2026, 3, 1, 11, tzinfo=UTC), tick=False)
    await store.apply([Hit(HOME)])
    eleven = TEN_MS + HOUR_MS
    assert await store.series(HOME, **EVERYTHING) == [(TEN_MS, 2), (eleven, 1)]
    assert await store.series(HOME, start_ms=eleven, end_ms=eleven + HOUR_MS) == [(eleven, 1)]
    assert await store.series(HOME, start_ms=TEN_MS - HOUR_MS, end_ms=eleven) == [(TEN_MS, 2)]
    assert await store.series(HOME, start_ms=TEN_MS + 1, end_ms=eleven) == []
    assert await store.series(ABOUT, **EVERYTHING) == []


async def test_pages_and_referrers_rank_by_hits_then_by_name(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A counter's top pages and referrers sum its hits per value, most first, ties by value."""
    time_machine.move_to(TEN, tick=False)
    await store.apply(
        [page(HOME, "/b", "https://x.example/"), page(HOME, "/a"), page(HOME, "/c"), Hit(HOME)]
    )
    await store.apply([page(HOME, "/c", "https://y.example/p"), page(ABOUT, "/z"), Hit(HOME)])
    day = {"start_ms": DAY, "end_ms": DAY + DAY_MS}
    assert await store.top(HOME, kind="page", limit=10, **day) == [("/c", 2), ("/a", 1), ("/b", 1)]
    assert await store.top(HOME, kind="page", limit=2, **day) == [("/c", 2), ("/a", 1)]
    assert await store.top(HOME, kind="referrer", limit=10, **day) == [
        ("https://x.example/", 1),
        ("https://y.example/p", 1),
    ]
    assert await store.top(ABOUT, kind="page", limit=10, **day) == [("/z", 1)]
    assert await store.top(ABOUT, kind="referrer", limit=10, **day) == []
    assert await store.series(HOME, **EVERYTHING) == [(TEN_MS, 6)]


async def test_top_sums_the_days_of_its_range_only(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Pages are kept per UTC day: a range takes the days that start in it, and no others."""
    time_machine.move_to(TEN, tick=False)
    await store.apply([page(HOME, "/old")] * 3)
    time_machine.move_to(datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC), tick=False)
    await store.apply([page(HOME, "/new"), page(HOME, "/old")])
    next_day = {"start_ms": DAY + DAY_MS, "end_ms": DAY + 2 * DAY_MS}
    assert await store.top(HOME, kind="page", limit=5, **next_day) == [("/new", 1), ("/old", 1)]
    both = {"start_ms": DAY, "end_ms": DAY + 2 * DAY_MS}
    assert await store.top(HOME, kind="page", limit=5, **both) == [("/old", 4), ("/new", 1)]
    assert await store.top(HOME, kind="page", limit=5, **EVERYTHING) == [("/old", 4), ("/new", 1)]
    assert await store.top(HOME, kind="page", limit=5, start_ms=0, end_ms=DAY) == []


async def test_purge_drops_the_buckets_before_its_time_only(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A purge removes every counter's hours and days that start before it, and keeps the rest."""
    time_machine.move_to(TEN, tick=False)
    await store.apply([page(HOME, "/old", "https://x.example/"), page(ABOUT, "/old")])
    time_machine.move_to(datetime(2026, 3, 11, 10, 15, tzinfo=UTC), tick=False)
    await store.apply([page(HOME, "/new"), Hit(ABOUT)])
    await store.purge(DAY + 5 * DAY_MS)
    later = TEN_MS + 10 * DAY_MS
    assert await store.series(HOME, **EVERYTHING) == [(later, 1)]
    assert await store.series(ABOUT, **EVERYTHING) == [(later, 1)]
    assert await store.top(HOME, kind="page", limit=5, **EVERYTHING) == [("/new", 1)]
    assert await store.top(HOME, kind="referrer", limit=5, **EVERYTHING) == []
    assert await store.top(ABOUT, kind="page", limit=5, **EVERYTHING) == []
    assert await store.value(HOME) == 2  # a purge forgets history, never counts


async def test_a_deleted_counter_loses_its_history(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Delete removes a counter's buckets too: a counter started again has only its new hits."""
    time_machine.move_to(TEN, tick=False)
    await store.apply([page(HOME, "/a", "https://x.example/")] * 2)
    assert await store.delete(HOME)
    await store.apply([Hit(HOME)])
    assert await store.series(HOME, **EVERYTHING) == [(TEN_MS, 1)]
    assert await store.top(HOME, kind="page", limit=5, **EVERYTHING) == []
    assert await store.top(HOME, kind="referrer", limit=5, **EVERYTHING) == []
