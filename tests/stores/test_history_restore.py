"""A counter's history as `export_with_history` reads it and `restore` writes it; each test
runs once per backend, into a fresh store of the same kind (see `store_kind`)."""

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from time_machine import TimeMachineFixture

from tests.conftest import NewStoreUrl
from tests.stores.histories import history_of
from visit_tracker.stores import CounterId, CounterRecord, Hit, Store, open_store
from visit_tracker.stores.base import (
    DAY_MS,
    HOUR_MS,
    DailyViews,
    HourlyHits,
    RestoreEntry,
    VisitorBucket,
)

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")
TEN_MS = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)
"""Ten o'clock, UTC, on some day, in Unix ms."""
DAY = TEN_MS - 10 * HOUR_MS
IDS = random.Random(2)  # noqa: S311 - test ids, not secrets
FEW = [IDS.getrandbits(63) for _ in range(30)]
"""Visitors of one hour: fewer than a bucket keeps exactly."""
MANY = [IDS.getrandbits(63) for _ in range(400)]
"""Visitors of another hour: counted by a sketch."""
WHOLE = {"start_ms": 0, "end_ms": 2**62}
HOURS = [DAY - DAY_MS + 9 * HOUR_MS, TEN_MS, TEN_MS + HOUR_MS, TEN_MS + 2 * HOUR_MS]
"""The hours the tests look at: one the day before, three today."""


async def hit_at(
    store: Store, time_machine: TimeMachineFixture, hour: int, hits: list[Hit]
) -> None:
    """Apply one batch a minute into `hour`."""
    time_machine.move_to(datetime.fromtimestamp(hour / 1000 + 60, tz=UTC), tick=False)
    await store.apply(hits)


async def fill(store: Store, time_machine: TimeMachineFixture) -> None:
    """Hours of hits on HOME with pages, referrers and visitors, few and many; one on ABOUT."""
    await hit_at(store, time_machine, HOURS[0], [Hit(HOME, page="/old")] * 2)
    few = [
        Hit(HOME, page=f"/p{i % 3}", referrer="https://a.example/", visitor=v)
        for i, v in enumerate(FEW)
    ]
    await hit_at(store, time_machine, HOURS[1], few)
    many = [
        Hit(HOME, page="/", referrer=f"https://r{i % 4}.example/", visitor=v)
        for i, v in enumerate(MANY)
    ]
    await hit_at(store, time_machine, HOURS[2], [*many, Hit(HOME, bot=True), Hit(ABOUT)])


async def reads(store: Store) -> dict[str, Any]:
    """What a store's reads say of HOME's history, by hour and by day."""
    hourly = [(hour, hour + HOUR_MS) for hour in HOURS]
    daily = [(DAY - DAY_MS, DAY), (DAY, DAY + DAY_MS), (DAY - DAY_MS, DAY + DAY_MS)]
    found: dict[str, Any] = {
        "record": await store.read(HOME),
        "series": await store.series(HOME, **WHOLE),
        "visitors by hour": await store.visitors(HOME, ranges=hourly),
        "visitors by day": await store.visitors(HOME, ranges=daily),
    }
    for kind in ("page", "referrer"):
        for start, end in daily:
            found[f"{kind}s {start}"] = await store.top(
                HOME, kind=kind, start_ms=start, end_ms=end, limit=100
            )
    return found


async def exported(store: Store, counter: CounterId) -> list[RestoreEntry]:
    """The counter's record and history, as an export carries them."""
    entries = [entry async for entry in store.export_with_history() if entry.counter == counter]
    assert isinstance(entries[0], CounterRecord)
    return entries


async def test_a_restored_history_reads_back_identical(
    store: Store, store_kind: str, new_store_url: NewStoreUrl, time_machine: TimeMachineFixture
) -> None:
    """What `export_with_history` gives, restored into a fresh store of the same kind, reads
    back the same: the entries themselves, the series, pages, referrers and visitors by hour
    and by day."""
    await fill(store, time_machine)
    entries = await exported(store, HOME)
    fresh = await open_store(new_store_url(store_kind), wait_limit=2.0)
    try:
        assert await fresh.restore(entries, replace_history=True) == 0
        assert await exported(fresh, HOME) == entries
        assert await reads(fresh) == await reads(store)
        assert await fresh.read(ABOUT) is None
    finally:
        await fresh.close()


async def test_restore_replaces_a_counters_history(
    store: Store, store_kind: str, new_store_url: NewStoreUrl, time_machine: TimeMachineFixture
) -> None:
    """Restored over a counter with a history of its own, in the same hours and others, and
    restored twice, a history reads back as restored: never added to what was there."""
    await fill(store, time_machine)
    entries = await exported(store, HOME)
    target = await open_store(new_store_url(store_kind), wait_limit=2.0)
    try:
        others = [Hit(HOME, page="/p1", referrer="https://a.example/", visitor=v) for v in MANY]
        await hit_at(target, time_machine, HOURS[1], others)
        await hit_at(target, time_machine, HOURS[3], [Hit(HOME, page="/new", visitor=FEW[0])])
        assert await reads(target) != await reads(store)
        for _ in range(2):
            await target.restore(entries, replace_history=True)
            assert await reads(target) == await reads(store)
            assert await exported(target, HOME) == entries
    finally:
        await target.close()


async def test_each_counter_is_exported_with_its_history_as_of_one_moment(
    store: Store, store_url: str, store_kind: str, time_machine: TimeMachineFixture
) -> None:
    """Batches another instance applies after each entry an export gives, from just before
    midnight UTC to after it (pages, no visitor ids), are in a counter's value and history or
    in neither: each counter's hours add up to its value, and each day of its pages has an
    hour."""
    counters = [CounterId("site", f"page-{i}") for i in range(4)]
    midnight = DAY + DAY_MS
    clock = midnight - 30_000
    time_machine.move_to(datetime.fromtimestamp(clock / 1000, tz=UTC), tick=False)
    other = store if store_kind == "memory" else await open_store(store_url, wait_limit=2.0)
    try:
        await other.apply([Hit(counter, page="/") for counter in counters])
        values: dict[CounterId, int] = {}
        hours: dict[CounterId, list[tuple[int, int]]] = {counter: [] for counter in counters}
        days: dict[CounterId, set[int]] = {counter: set() for counter in counters}
        async for entry in store.export_with_history():
            if isinstance(entry, CounterRecord):
                values[entry.counter] = entry.value
            elif isinstance(entry, HourlyHits):
                hours[entry.counter].extend(entry.hours)
            elif isinstance(entry, DailyViews):
                days[entry.counter].add(entry.day)
            clock += 10_000
            time_machine.move_to(datetime.fromtimestamp(clock / 1000, tz=UTC), tick=False)
            await other.apply([Hit(counter, page=f"/{clock}") for counter in counters])
    finally:
        if other is not store:
            await other.close()
    assert clock > midnight + 30_000  # batches of both days came while counters were read
    assert values == {counter: sum(hits for _, hits in hours[counter]) for counter in counters}
    for counter in counters:
        assert days[counter] <= {hour - hour % DAY_MS for hour, _ in hours[counter]}


async def test_a_restored_hour_of_visitors_without_hits_is_listed_in_the_hours(
    store: Store,
) -> None:
    """An hour's visitors restored without an hour of hits give the counter an hour of 0 hits,
    as a batch whose hits a window held back does, and keep the hits of an hour that has some:
    the same history on every store."""
    day = VisitorBucket(HOME, DAY_MS, DAY, tuple(sorted(FEW[:2])), None)
    entries: list[RestoreEntry] = [
        CounterRecord(HOME, 5, 1, 2, None, 0, 30),
        HourlyHits(HOME, ((TEN_MS + HOUR_MS, 5),)),
        VisitorBucket(HOME, HOUR_MS, TEN_MS, (FEW[0],), None),
        VisitorBucket(HOME, HOUR_MS, TEN_MS + HOUR_MS, (FEW[1],), None),
        day,
    ]
    await store.restore(entries, replace_history=True)
    history = await history_of(store, HOME)
    assert history[0] == HourlyHits(HOME, ((TEN_MS, 0), (TEN_MS + HOUR_MS, 5)))
    assert history[1:] == [*entries[2:4], day]
