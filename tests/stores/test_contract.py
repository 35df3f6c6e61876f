"""The contract every store keeps; each test runs once per backend (see `store_url`)."""

import asyncio

import pytest

from visit_tracker.stores import CounterId, CounterRecord, Hit, Store, open_store

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")


async def test_a_new_counter_reads_zero(store: Store) -> None:
    """A counter that was never hit reads 0."""
    assert await store.value(HOME) == 0


async def test_a_batch_numbers_its_hits_in_order(store: Store) -> None:
    """Each hit of a batch gets its own value, in batch order, per counter."""
    values = await store.apply([Hit(HOME), Hit(ABOUT), Hit(HOME), Hit(HOME)])
    assert values == [1, 1, 2, 3]
    assert await store.apply([Hit(ABOUT), Hit(HOME)]) == [2, 4]


async def test_values_persist_between_batches(store: Store) -> None:
    """A counter's value is the number of hits applied to it so far."""
    for _ in range(5):
        await store.apply([Hit(HOME)] * 7)
    assert await store.value(HOME) == 35
    assert await store.value(ABOUT) == 0


async def test_counters_differ_by_namespace(store: Store) -> None:
    """The same key in two namespaces names two counters."""
    await store.apply([Hit(CounterId("a", "visits")), Hit(CounterId("a", "visits"))])
    await store.apply([Hit(CounterId("b", "visits"))])
    assert await store.value(CounterId("a", "visits")) == 2
    assert await store.value(CounterId("b", "visits")) == 1


async def test_concurrent_batches_never_share_a_value(store: Store) -> None:
    """Batches applied concurrently hand out every value from 1 to N exactly once."""
    batches = [[Hit(HOME)] * size for size in (1, 5, 50, 3, 20) * 4]
    results = await asyncio.gather(*(store.apply(batch) for batch in batches))
    values = sorted(value for result in results for value in result)
    assert values == list(range(1, sum(map(len, batches)) + 1))


async def test_ping_answers(store: Store) -> None:
    """A healthy store answers a ping."""
    await store.ping()


async def test_durable_stores_keep_counts_across_reopen(store_url: str) -> None:
    """What a durable store committed is still there after it is closed and opened again."""
    if store_url.startswith("memory"):
        pytest.skip("memory:// is documented as not durable")
    first = await open_store(store_url, wait_limit=2.0)
    await first.apply([Hit(HOME)] * 3)
    await first.close()
    second = await open_store(store_url, wait_limit=2.0)
    try:
        assert await second.value(HOME) == 3
        assert await second.apply([Hit(HOME)]) == [4]
    finally:
        await second.close()


async def test_export_lists_every_counter_in_name_order(store: Store) -> None:
    """Export yields each counter once, ordered by namespace then key, with its value and times."""
    await store.apply([Hit(HOME), Hit(ABOUT), Hit(HOME), Hit(CounterId("blog", "post"))])
    records = [record async for record in store.export()]
    assert [(r.counter, r.value) for r in records] == [
        (CounterId("blog", "post"), 1),
        (ABOUT, 1),
        (HOME, 2),
    ]
    assert all(0 < r.created_at <= r.updated_at for r in records)


async def test_restore_makes_counters_exactly_as_recorded(store: Store) -> None:
    """Restore overwrites existing counters and creates missing ones, times included."""
    await store.apply([Hit(HOME)] * 5)
    await store.restore(
        [
            CounterRecord(HOME, 1000, 1_600_000_000_000, 1_700_000_000_000),
            CounterRecord(ABOUT, 7, 1, 2),
        ]
    )
    records = {record.counter: record async for record in store.export()}
    assert records[HOME] == CounterRecord(HOME, 1000, 1_600_000_000_000, 1_700_000_000_000)
    assert records[ABOUT] == CounterRecord(ABOUT, 7, 1, 2)
    assert await store.apply([Hit(HOME)]) == [1001]


async def test_names_with_separators_never_share_a_counter(store: Store) -> None:
    """Counters whose names hold ':' or braces stay distinct and export under their own names."""
    tricky = [CounterId("a:b", "c"), CounterId("a", "b:c"), CounterId("{x}", "y}")]
    await store.apply([Hit(counter) for counter in tricky])
    await store.apply([Hit(tricky[0])])
    assert [await store.value(counter) for counter in tricky] == [2, 1, 1]
    exported = {record.counter: record.value async for record in store.export()}
    assert exported == {tricky[0]: 2, tricky[1]: 1, tricky[2]: 1}
