"""Counting a visitor once per window of minutes, a counter's own setting, which every store
applies in the batch's atomic step; each test runs once per backend, on a controlled clock."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from time_machine import TimeMachineFixture

from tests.stores.histories import history_of
from visit_tracker.stores import CounterId, CounterRecord, Hit, Store
from visit_tracker.stores.base import HOUR_MS, HourlyHits

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")
TEN = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
TEN_MS = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)
EVERYTHING = {"start_ms": 0, "end_ms": 2**62}


def by(visitor: int, counter: CounterId = HOME) -> Hit:
    return Hit(counter, visitor=visitor)


async def test_a_visitor_counts_once_per_window(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """On a counter with a 30-minute window a visitor's hits count once until the window ends,
    and once again after; other visitors, and hits without a visitor id, count each time."""
    time_machine.move_to(TEN, tick=False)
    await store.create(HOME, value=10, admin_key_hash=None, count_once_per=30)
    assert await store.apply([by(1), by(1), by(2)]) == [11, 11, 12]
    time_machine.move_to(TEN + timedelta(minutes=29), tick=False)
    assert await store.apply([by(1), by(2), Hit(HOME), Hit(HOME)]) == [12, 12, 13, 14]
    time_machine.move_to(TEN + timedelta(minutes=30), tick=False)
    assert await store.apply([by(1), by(1)]) == [15, 15]
    assert await store.apply([by(2)]) == [16]
    assert await store.value(HOME) == 16
    assert await store.series(HOME, **EVERYTHING) == [(TEN_MS, 6)]


async def test_a_window_holds_back_visitors_already_recorded_in_the_hour(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A hit whose visitor the process recorded in this hour already (`recorded_in`) is held back
    by the window all the same, counts on a counter without one, and leaves the counter's
    unique visitors as they were."""
    time_machine.move_to(TEN, tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=30)
    assert await store.apply([by(1), by(1, ABOUT)]) == [1, 1]
    again = [Hit(HOME, visitor=1, recorded_in=TEN_MS), Hit(ABOUT, visitor=1, recorded_in=TEN_MS)]
    assert await store.apply(again) == [1, 2]
    time_machine.move_to(TEN + timedelta(minutes=30), tick=False)
    assert await store.apply(again[:1]) == [2]
    hour = [(TEN_MS, TEN_MS + 3_600_000)]
    assert await store.visitors(HOME, ranges=hour) == [1]
    assert await store.visitors(ABOUT, ranges=hour) == [1]


async def test_purge_and_delete_drop_the_visitors_of_an_hour_of_held_back_hits(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """An hour in which a window held back every hit still lists its visitors: a purge drops
    them, and so does deleting the counter (its next life starts with none)."""
    time_machine.move_to(datetime(2026, 3, 1, 10, 50, tzinfo=UTC), tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=30)
    assert await store.apply([by(1)]) == [1]
    time_machine.move_to(datetime(2026, 3, 1, 11, 5, tzinfo=UTC), tick=False)
    assert await store.apply([by(1)]) == [1]
    eleven = [(TEN_MS + 3_600_000, TEN_MS + 7_200_000)]
    assert await store.visitors(HOME, ranges=eleven) == [1]
    await store.purge(TEN_MS + 7_200_000)
    assert await store.visitors(HOME, ranges=eleven) == [0]
    time_machine.move_to(datetime(2026, 3, 1, 12, 5, tzinfo=UTC), tick=False)
    twelve = [(TEN_MS + 7_200_000, TEN_MS + 3 * 3_600_000)]
    assert await store.apply([by(1)]) == [2]
    time_machine.move_to(datetime(2026, 3, 1, 12, 10, tzinfo=UTC), tick=False)
    assert await store.apply([Hit(HOME, visitor=2, recorded_in=None)]) == [3]
    assert await store.delete(HOME)
    assert await store.visitors(HOME, ranges=twelve) == [0]


async def test_an_hour_of_held_back_hits_has_a_bucket_of_none(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """An hour in which a window held back every hit of a visitor new to it has an hourly
    bucket of 0 hits, which lists its visitors: in the series and the exported history of
    every store alike."""
    time_machine.move_to(datetime(2026, 3, 1, 10, 50, tzinfo=UTC), tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=30)
    assert await store.apply([by(1)]) == [1]
    time_machine.move_to(datetime(2026, 3, 1, 11, 5, tzinfo=UTC), tick=False)
    assert await store.apply([by(1), by(1)]) == [1, 1]
    hours = ((TEN_MS, 1), (TEN_MS + HOUR_MS, 0))
    assert await store.series(HOME, **EVERYTHING) == list(hours)
    assert [e for e in await history_of(store, HOME) if isinstance(e, HourlyHits)] == [
        HourlyHits(HOME, hours)
    ]


async def test_held_back_hits_of_visitors_recorded_in_the_hour_add_no_bucket(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A held-back hit whose visitor was recorded in the hour already brings the hour nothing to
    list: it makes no hourly bucket, even where the hour has none (its history was replaced
    by an import, its window's marks kept), on every store alike."""
    time_machine.move_to(TEN, tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=30)
    assert await store.apply([by(1)]) == [1]
    record = await store.read(HOME)
    assert record is not None
    await store.restore([record], replace_history=True)
    assert await store.apply([Hit(HOME, visitor=1, recorded_in=TEN_MS)]) == [1]
    assert await store.series(HOME, **EVERYTHING) == []
    assert await history_of(store, HOME) == []


async def test_a_mixed_batch_numbers_only_what_counts(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """In one batch, repeats and bots' hits are told the value of the hit before them; a
    counter without a window counts the same visitor every time."""
    time_machine.move_to(TEN, tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=5)
    batch = [by(1), by(1), Hit(HOME), Hit(HOME, bot=True), by(1, ABOUT), by(2), by(1, ABOUT)]
    assert await store.apply(batch) == [1, 1, 2, 2, 1, 3, 2]
    record = await store.read(HOME)
    assert record is not None
    assert (record.value, record.bot_hits, record.count_once_per) == (3, 1, 5)


async def test_the_window_is_set_and_changed_and_moves_with_exports(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A window set by an update holds visitors counted after it; 0 counts every hit again;
    export and restore carry it."""
    time_machine.move_to(TEN, tick=False)
    assert await store.apply([by(1), by(1)]) == [1, 2]
    old = await store.update(HOME, count_once_per=60)
    assert old is not None
    assert old.count_once_per == 0
    assert await store.apply([by(1), by(1)]) == [3, 3]
    time_machine.move_to(TEN + timedelta(minutes=1), tick=False)
    assert await store.apply([by(1)]) == [3]
    await store.update(HOME, count_once_per=0)
    assert await store.apply([by(1)]) == [4]
    await store.update(HOME, count_once_per=1440)
    exported = [record async for record in store.export()]
    assert [record.count_once_per for record in exported] == [1440]
    await store.restore([CounterRecord(HOME, 7, 1, 2, None, 0, 15), CounterRecord(ABOUT, 1, 1, 2)])
    home = await store.read(HOME)
    assert home is not None
    assert (home.value, home.count_once_per) == (7, 15)
    about = await store.read(ABOUT)
    assert about is not None
    assert about.count_once_per == 0


async def test_concurrent_batches_count_a_visitor_once(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Batches applied at once, each with the same ten visitors, count each of them once."""
    time_machine.move_to(TEN, tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=10)
    batches = [[by(visitor) for visitor in range(10)] for _ in range(8)]
    results = await asyncio.gather(*(store.apply(batch) for batch in batches))
    assert await store.value(HOME) == 10
    assert max(max(values) for values in results) == 10


async def test_a_purge_forgets_ended_windows_only(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A purge keeps the visitors whose window goes on, so they still count once."""
    time_machine.move_to(TEN, tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=30)
    await store.apply([by(1)])
    time_machine.move_to(TEN + timedelta(minutes=20), tick=False)
    await store.apply([by(2)])
    time_machine.move_to(TEN + timedelta(minutes=40), tick=False)
    await store.purge(0)
    assert await store.apply([by(1), by(2)]) == [3, 3]


async def test_a_counter_made_again_counts_its_old_visitors_afresh(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Deleting a counter forgets the visitors its window held back: made again under the same
    name, it counts them at once, and another counter's window still holds its own."""
    time_machine.move_to(TEN, tick=False)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=60)
    await store.create(ABOUT, value=0, admin_key_hash=None, count_once_per=60)
    assert await store.apply([by(1), by(2), by(1, ABOUT)]) == [1, 2, 1]
    assert await store.delete(HOME)
    await store.create(HOME, value=0, admin_key_hash=None, count_once_per=60)
    assert await store.apply([by(1), by(2), by(1), by(1, ABOUT)]) == [1, 2, 2, 1]
