"""Distinct visitors every store keeps beside its counters, per hour and per UTC day, and the
salts their ids are made with; each test runs once per backend, on a controlled clock."""

import hashlib
from datetime import UTC, datetime

import pytest
from time_machine import TimeMachineFixture

from visit_tracker.stores import CounterId, Hit, Store
from visit_tracker.stores.base import DAY_MS, HOUR_MS
from visit_tracker.stores.sketch import EXACT_BELOW

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")

TEN = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
TEN_MS = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)
DAY = TEN_MS - 10 * HOUR_MS
"""The start of that day in Unix ms."""


def visitor(number: int) -> int:
    """A visitor id as the service makes them: 63 bits of a keyed hash."""
    digest = hashlib.blake2b(number.to_bytes(8, "big"), key=b"test", digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def hits(counter: CounterId, numbers: range) -> list[Hit]:
    return [Hit(counter, visitor=visitor(number)) for number in numbers]


def hour(start: int) -> tuple[int, int]:
    return (start, start + HOUR_MS)


def days(first: int, count: int = 1) -> tuple[int, int]:
    return (first, first + count * DAY_MS)


async def test_a_visitor_counts_once_however_often_it_hits(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Repeated hits of one visitor, in one batch or several, make one visitor of the hour and
    of the day; hits with no visitor id make none."""
    time_machine.move_to(TEN, tick=False)
    await store.apply([*hits(HOME, range(3)), *hits(HOME, range(3)), Hit(HOME)])
    await store.apply(hits(HOME, range(2, 5)))
    assert await store.visitors(HOME, ranges=[hour(TEN_MS), days(DAY)]) == [5, 5]
    assert await store.visitors(ABOUT, ranges=[hour(TEN_MS), days(DAY)]) == [0, 0]


async def test_visitors_are_exact_below_the_threshold(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """Every count from 1 to EXACT_BELOW - 1 distinct visitors is exact, per hour and per day."""
    time_machine.move_to(TEN, tick=False)
    for number in range(EXACT_BELOW - 1):
        await store.apply(hits(HOME, range(number, number + 1)))
        assert await store.visitors(HOME, ranges=[hour(TEN_MS), days(DAY)]) == [number + 1] * 2


async def test_a_day_unites_its_hours_and_a_month_its_days(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A visitor seen in two hours is one visitor of the day; hours and days outside a range
    do not count in it."""
    time_machine.move_to(TEN, tick=False)
    await store.apply(hits(HOME, range(10)))
    time_machine.move_to(datetime(2026, 3, 1, 11, 30, tzinfo=UTC), tick=False)
    await store.apply(hits(HOME, range(5, 20)))
    time_machine.move_to(datetime(2026, 3, 3, 9, tzinfo=UTC), tick=False)
    await store.apply(hits(HOME, range(15, 25)))
    eleven = TEN_MS + HOUR_MS
    assert await store.visitors(
        HOME, ranges=[hour(TEN_MS), hour(eleven), hour(TEN_MS - HOUR_MS)]
    ) == [10, 15, 0]
    assert await store.visitors(
        HOME, ranges=[days(DAY), days(DAY + DAY_MS), days(DAY + 2 * DAY_MS), days(DAY, 30)]
    ) == [20, 0, 10, 25]


async def test_many_visitors_are_estimated_within_two_percent(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """100,000 distinct visitors, each hitting twice, are counted within 2 % per hour and per
    day; past the threshold an estimate stands for the exact count."""
    time_machine.move_to(TEN, tick=False)
    for first in range(0, 100_000, 2_000):  # batches a loaded machine applies in time
        await store.apply(hits(HOME, range(first, first + 2_000)) * 2)
    hourly, daily = await store.visitors(HOME, ranges=[hour(TEN_MS), days(DAY)])
    assert abs(hourly - 100_000) <= 2_000
    assert abs(daily - 100_000) <= 2_000


async def test_purge_and_delete_drop_visitors(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A purge drops the visitor buckets before its time, and deleting a counter drops all of
    its visitors: a new counter of the same name starts with none."""
    time_machine.move_to(TEN, tick=False)
    await store.apply(hits(HOME, range(3)) + hits(ABOUT, range(4)))
    time_machine.move_to(datetime(2026, 3, 2, 10, tzinfo=UTC), tick=False)
    await store.apply(hits(HOME, range(2)))
    await store.purge(DAY + DAY_MS)
    assert await store.visitors(HOME, ranges=[days(DAY), days(DAY + DAY_MS)]) == [0, 2]
    assert await store.visitors(HOME, ranges=[hour(TEN_MS)]) == [0]
    assert await store.delete(HOME)
    await store.apply([Hit(HOME)])
    assert await store.visitors(HOME, ranges=[days(DAY, 2), hour(TEN_MS + DAY_MS)]) == [0, 0]


async def test_a_day_has_one_salt_and_old_salts_go(store: Store) -> None:
    """Every call for a day answers the same random salt; a new day's differs, and asking for
    it deletes salts older than the day before, so their ids can no longer be recomputed."""
    first = await store.salt(DAY)
    assert len(first) >= 16
    assert await store.salt(DAY) == first
    second = await store.salt(DAY + DAY_MS)
    assert second != first
    assert await store.salt(DAY) == first  # the previous day's is kept
    await store.salt(DAY + 2 * DAY_MS)
    assert await store.salt(DAY) != first  # gone: asking again makes a new one
