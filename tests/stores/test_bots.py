"""Known bots' hits, which every store counts apart from its counters' values, in the same
atomic step; each test runs once per backend (see `store_url`)."""

import asyncio
from datetime import UTC, datetime

import pytest
from time_machine import TimeMachineFixture

from tests.stores.histories import history_of
from visit_tracker.stores import CounterId, CounterRecord, Hit, Store
from visit_tracker.stores.base import DAY_MS, HOUR_MS, HourlyHits

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")
BOT = Hit(HOME, bot=True)

TEN = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
TEN_MS = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)
EVERYTHING = {"start_ms": 0, "end_ms": 2**62}


async def bot_hits(store: Store, counter: CounterId) -> int:
    record = await store.read(counter)
    assert record is not None
    return record.bot_hits


async def hours_of(store: Store, counter: CounterId) -> list[HourlyHits]:
    """The hourly hits of the counter's history, as an export writes them."""
    return [entry for entry in await history_of(store, counter) if isinstance(entry, HourlyHits)]


async def test_a_bot_hit_adds_to_bot_hits_and_not_to_the_value(store: Store) -> None:
    """A bot's hit is answered the value as it stands and counts only in the bot hits."""
    assert await store.apply([Hit(HOME)] * 3) == [1, 2, 3]
    assert await store.apply([BOT]) == [3]
    assert await store.apply([BOT, BOT]) == [3, 3]
    assert await store.value(HOME) == 3
    assert await bot_hits(store, HOME) == 3
    assert await store.apply([Hit(HOME)]) == [4]


async def test_a_mixed_batch_numbers_only_the_counted_hits(store: Store) -> None:
    """In a batch of people's and bots' hits on several counters, each counted hit gets the
    next value of its counter and each bot's hit the value of the hit before it."""
    await store.apply([Hit(HOME)] * 10)
    batch = [
        Hit(ABOUT, bot=True),
        Hit(HOME),
        BOT,
        Hit(ABOUT),
        Hit(HOME),
        BOT,
        Hit(ABOUT, bot=True),
    ]
    assert await store.apply(batch) == [0, 11, 11, 1, 12, 12, 1]
    assert (await store.value(HOME), await bot_hits(store, HOME)) == (12, 2)
    assert (await store.value(ABOUT), await bot_hits(store, ABOUT)) == (1, 2)


async def test_a_counter_only_bots_hit_exists_at_zero(store: Store) -> None:
    """Bots' hits create a counter with the value 0, which lists and exports with its bot
    hits; the first counted hit makes it 1."""
    assert await store.apply([BOT, BOT]) == [0, 0]
    record = await store.read(HOME)
    assert record is not None
    assert (record.value, record.bot_hits) == (0, 2)
    assert 0 < record.created_at <= record.updated_at
    listed = await store.counters_in(HOME.namespace, after="", limit=10)
    assert [(r.counter, r.value, r.bot_hits) for r in listed] == [(HOME, 0, 2)]
    assert [r async for r in store.export()] == [record]
    assert await store.apply([Hit(HOME)]) == [1]


async def test_bots_leave_no_history_and_are_no_visitors(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A bot's hit adds nothing to the hourly hits, pages, referrers or unique visitors, even
    if it names them."""
    time_machine.move_to(TEN, tick=False)
    named = Hit(HOME, page="/a", referrer="https://x.example/", visitor=7, bot=True)
    await store.apply([named, BOT, Hit(ABOUT, bot=True)])
    await store.apply([Hit(HOME, page="/b", visitor=8), named])
    assert await store.series(HOME, **EVERYTHING) == [(TEN_MS, 1)]
    assert await store.series(ABOUT, **EVERYTHING) == []
    assert await store.top(HOME, kind="page", limit=5, **EVERYTHING) == [("/b", 1)]
    assert await store.top(HOME, kind="referrer", limit=5, **EVERYTHING) == []
    day = TEN_MS - 10 * HOUR_MS
    ranges = [(TEN_MS, TEN_MS + HOUR_MS), (day, day + DAY_MS)]
    assert await store.visitors(HOME, ranges=ranges) == [1, 1]
    assert await bot_hits(store, HOME) == 3


async def test_a_counter_only_bots_hit_has_no_hour_beside_a_visitors_hit(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """In a batch where a person with a visitor id hits one counter and only bots another, the
    bots' counter gets no hourly bucket, not even one of 0 hits: its series and the hours its
    history exports are empty on every store."""
    time_machine.move_to(TEN, tick=False)
    await store.apply([Hit(HOME, visitor=7), Hit(ABOUT, bot=True), Hit(ABOUT, bot=True)])
    assert await store.series(ABOUT, **EVERYTHING) == []
    assert await history_of(store, ABOUT) == []  # no hours, nor anything
    assert await bot_hits(store, ABOUT) == 2
    assert await hours_of(store, HOME) == [HourlyHits(HOME, ((TEN_MS, 1),))]


async def test_setting_the_value_keeps_the_bot_hits_and_delete_drops_them(store: Store) -> None:
    """Update changes the value only; restore sets the bot hits as recorded; a deleted
    counter started again has none."""
    await store.apply([Hit(HOME), BOT, BOT])
    old = await store.update(HOME, value=50)
    assert old is not None
    assert (old.value, old.bot_hits) == (1, 2)
    assert await bot_hits(store, HOME) == 2
    await store.restore([CounterRecord(HOME, 9, 1, 2, None, 40), CounterRecord(ABOUT, 1, 1, 2)])
    assert await store.apply([BOT, Hit(ABOUT, bot=True)]) == [9, 1]
    record = await store.read(HOME)
    assert record is not None
    assert (record.value, record.created_at, record.bot_hits) == (9, 1, 41)
    assert await bot_hits(store, ABOUT) == 1
    assert await store.delete(HOME)
    await store.apply([Hit(HOME)])
    assert await bot_hits(store, HOME) == 0


async def test_concurrent_mixed_batches_lose_no_hit(store: Store) -> None:
    """Batches of people's and bots' hits applied at once number the counted hits 1 to N
    exactly once, and every bot's hit is in the bot hits."""
    sizes = (1, 5, 20, 3) * 4
    batches = [[Hit(HOME)] * size + [BOT] * (size % 3) for size in sizes]
    results = await asyncio.gather(*(store.apply(batch) for batch in batches))
    counted = sorted(
        value
        for batch, values in zip(batches, results, strict=True)
        for hit, value in zip(batch, values, strict=True)
        if not hit.bot
    )
    assert counted == list(range(1, sum(sizes) + 1))
    assert await bot_hits(store, HOME) == sum(size % 3 for size in sizes)
