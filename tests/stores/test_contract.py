"""The contract every store keeps; each test runs once per backend (see `store_url`)."""

import asyncio
import time
from collections.abc import Iterator

import pytest

from visit_tracker.stores import CounterId, CounterRecord, Hit, Store, open_store
from visit_tracker.stores.base import LARGEST_SET

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


async def test_a_restore_slower_than_the_wait_limit_completes(store_url: str) -> None:
    """A restore whose entries come slower than the wait limit, as from a slow disk, still
    makes every counter: the limit bounds each round trip, not the whole restore."""
    store = await open_store(store_url, wait_limit=0.5)

    def slowly_read() -> Iterator[CounterRecord]:
        for i in range(2500):
            if i % 1000 == 999:
                time.sleep(0.4)
            yield CounterRecord(CounterId("many", f"k{i:04}"), i, 1, 2)

    try:
        await store.restore(slowly_read(), replace_history=True)
        assert [await store.value(CounterId("many", k)) for k in ("k0000", "k2499")] == [0, 2499]
    finally:
        await store.close()


async def test_names_with_separators_never_share_a_counter(store: Store) -> None:
    """Counters whose names hold ':' or braces stay distinct and export under their own names."""
    tricky = [CounterId("a:b", "c"), CounterId("a", "b:c"), CounterId("{x}", "y}")]
    await store.apply([Hit(counter) for counter in tricky])
    await store.apply([Hit(tricky[0])])
    assert [await store.value(counter) for counter in tricky] == [2, 1, 1]
    exported = {record.counter: record.value async for record in store.export()}
    assert exported == {tricky[0]: 2, tricky[1]: 1, tricky[2]: 1}


OWNER = "a" * 64
"""An admin key hash, as the service stores it (SHA-256 in hexadecimal)."""


async def test_read_gives_a_counters_whole_record(store: Store) -> None:
    """A hit counter reads back with its value and times; a missing one reads as None."""
    assert await store.read(HOME) is None
    await store.apply([Hit(HOME)] * 3)
    record = await store.read(HOME)
    assert record is not None
    assert (record.counter, record.value, record.admin_key_hash) == (HOME, 3, None)
    assert 0 < record.created_at <= record.updated_at


async def test_create_starts_a_counter_at_its_value_once(store: Store) -> None:
    """Create makes a counter with its value and owner; creating it again changes nothing."""
    created = await store.create(HOME, value=41, admin_key_hash=OWNER)
    assert created is not None
    assert (created.value, created.admin_key_hash) == (41, OWNER)
    assert await store.read(HOME) == created
    assert await store.create(HOME, value=0, admin_key_hash=None) is None
    assert await store.apply([Hit(HOME)]) == [42]
    record = await store.read(HOME)
    assert record is not None
    assert record.admin_key_hash == OWNER


async def test_update_sets_what_is_given_and_returns_the_old_record(store: Store) -> None:
    """Update changes only the value or owner it is given, and answers the record as it was."""
    await store.apply([Hit(HOME)] * 5)
    before = await store.read(HOME)
    old = await store.update(HOME, value=100)
    assert old == before
    assert await store.apply([Hit(HOME)]) == [101]
    old = await store.update(HOME, admin_key_hash=OWNER)
    assert old is not None
    assert (old.value, old.admin_key_hash) == (101, None)
    record = await store.read(HOME)
    assert record is not None
    assert (record.value, record.admin_key_hash) == (101, OWNER)
    assert await store.update(ABOUT, value=1) is None
    assert await store.read(ABOUT) is None


async def test_delete_removes_a_counter_and_a_hit_starts_it_anew(store: Store) -> None:
    """A deleted counter is gone from reads, lists and exports; its next hit counts from 1."""
    await store.create(HOME, value=10, admin_key_hash=OWNER)
    assert await store.delete(HOME) is True
    assert await store.delete(HOME) is False
    assert await store.read(HOME) is None
    assert await store.counters_in(HOME.namespace, after="", limit=10) == []
    assert [record async for record in store.export()] == []
    assert await store.apply([Hit(HOME)]) == [1]
    record = await store.read(HOME)
    assert record is not None
    assert record.admin_key_hash is None


async def test_counters_in_pages_through_a_namespace_in_key_order(store: Store) -> None:
    """Listing gives one namespace's counters in key order, `limit` at a time after a key."""
    keys = [f"page-{number:02}" for number in range(25)]
    await store.apply([Hit(CounterId("site", key)) for key in reversed(keys)])
    await store.apply([Hit(CounterId("other", "page-00")), Hit(CounterId("sites", "x"))])
    seen: list[str] = []
    after = ""
    while page := await store.counters_in("site", after=after, limit=10):
        assert len(page) <= 10
        seen.extend(record.counter.key for record in page)
        after = page[-1].counter.key
    assert seen == keys
    assert all(record.value == 1 for record in await store.counters_in("site", after="", limit=5))


async def test_top_counters_are_the_highest_values_of_every_namespace(store: Store) -> None:
    """The top counters are those with the highest values across namespaces, highest first,
    ties in name order; at most `limit` of them, and a deleted counter is not among them."""
    assert await store.top_counters(5) == []
    hits = {CounterId("b", "x"): 3, CounterId("a", "y"): 3, CounterId("a", "z"): 5}
    await store.apply([Hit(counter) for counter, count in hits.items() for _ in range(count)])
    await store.apply([Hit(CounterId(f"n{number}", "k")) for number in range(30)])
    await store.create(CounterId("c", "big"), value=LARGEST_SET, admin_key_hash=None)
    top = await store.top_counters(4)
    assert top == [
        (CounterId("c", "big"), LARGEST_SET),
        (CounterId("a", "z"), 5),
        (CounterId("a", "y"), 3),
        (CounterId("b", "x"), 3),
    ]
    await store.delete(CounterId("c", "big"))
    assert (await store.top_counters(1)) == [(CounterId("a", "z"), 5)]
    assert len(await store.top_counters(100)) == 33


async def test_export_and_restore_keep_the_owner(store: Store) -> None:
    """An owned counter's admin key hash survives export and restore; an unowned one stays so."""
    await store.create(HOME, value=3, admin_key_hash=OWNER)
    await store.apply([Hit(ABOUT)])
    records = [record async for record in store.export()]
    assert [r.admin_key_hash for r in records] == [None, OWNER]
    await store.restore([CounterRecord(HOME, 9, 1, 2, None), CounterRecord(ABOUT, 4, 1, 2, OWNER)])
    assert await store.read(HOME) == CounterRecord(HOME, 9, 1, 2, None)
    assert await store.read(ABOUT) == CounterRecord(ABOUT, 4, 1, 2, OWNER)


async def test_add_changes_an_existing_counter_by_the_amount(store: Store) -> None:
    """Add raises or lowers a counter's value, keeps its owner, and later hits go on from it."""
    await store.create(HOME, value=40, admin_key_hash=OWNER)
    assert await store.add(HOME, amount=5) == 45
    assert await store.add(HOME, amount=-3) == 42
    assert await store.apply([Hit(HOME)]) == [43]
    record = await store.read(HOME)
    assert record is not None
    assert (record.value, record.admin_key_hash) == (43, OWNER)
    assert record.created_at <= record.updated_at


async def test_add_stops_at_zero_and_at_the_largest_value(store: Store) -> None:
    """An amount past either end of the range leaves the counter at that end, exactly."""
    await store.create(HOME, value=3, admin_key_hash=None)
    assert await store.add(HOME, amount=-10) == 0
    assert await store.add(HOME, amount=-LARGEST_SET) == 0
    await store.update(HOME, value=LARGEST_SET - 2)
    assert await store.add(HOME, amount=1) == LARGEST_SET - 1
    assert await store.add(HOME, amount=LARGEST_SET) == LARGEST_SET
    assert await store.value(HOME) == LARGEST_SET


async def test_hits_count_on_past_the_largest_value_a_counter_is_put_at(store: Store) -> None:
    """A counter brought to the top of the range values are put in still counts every hit."""
    await store.create(HOME, value=LARGEST_SET, admin_key_hash=None)
    # Each batch ends on an odd total past 2**53, which a double would round.
    assert await store.apply([Hit(HOME)] * 4) == [LARGEST_SET + n for n in range(1, 5)]
    assert await store.apply([Hit(HOME)] * 2) == [LARGEST_SET + 5, LARGEST_SET + 6]
    assert await store.apply([Hit(HOME)]) == [LARGEST_SET + 7]
    assert await store.value(HOME) == LARGEST_SET + 7


async def test_add_to_a_missing_counter_changes_nothing(store: Store) -> None:
    """Add answers None for a counter that does not exist, and does not create it."""
    assert await store.add(HOME, amount=5) is None
    assert await store.read(HOME) is None


async def test_adds_and_hits_at_once_lose_nothing(store: Store) -> None:
    """Adds applied concurrently with batches of hits all count: the total is their sum."""
    await store.create(HOME, value=10, admin_key_hash=None)  # no add can reach 0
    adds = [store.add(HOME, amount=amount) for amount in (100, -1, 7, 1000) * 3]
    hits = [store.apply([Hit(HOME)] * size) for size in (1, 5, 20) * 3]
    await asyncio.gather(*adds, *hits)
    assert await store.value(HOME) == 10 + 1106 * 3 + 26 * 3
