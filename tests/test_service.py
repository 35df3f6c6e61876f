"""What `Tracker` adds to the store: the top counters, read once for many callers."""

import asyncio

import pytest

from visit_tracker import service
from visit_tracker.errors import StoreUnavailable
from visit_tracker.metrics import Metrics
from visit_tracker.service import Tracker
from visit_tracker.stores import CounterId, Hit
from visit_tracker.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")


class CountedReads(MemoryStore):
    """A memory store that counts its reads of the top counters, and fails them on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.failing = False

    async def top_counters(self, limit: int) -> list[tuple[CounterId, int]]:
        self.reads += 1
        await asyncio.sleep(0)  # let concurrent callers arrive while it reads
        if self.failing:
            raise StoreUnavailable("the store is down")
        return await super().top_counters(limit)


async def test_top_counters_are_reused_for_a_while() -> None:
    """Within the reuse time, callers get the answer of one store read, concurrent ones too,
    and a smaller limit is cut from it; a larger limit reads again."""
    store = CountedReads()
    tracker = Tracker(store, metrics=Metrics())
    await store.apply([Hit(HOME), Hit(HOME), Hit(ABOUT)])
    answers = await asyncio.gather(*(tracker.top_counters(2) for _ in range(5)))
    assert answers == [[(HOME, 2), (ABOUT, 1)]] * 5
    await store.apply([Hit(ABOUT), Hit(ABOUT)])
    assert await tracker.top_counters(1) == [(HOME, 2)]
    assert store.reads == 1
    assert await tracker.top_counters(10) == [(ABOUT, 3), (HOME, 2)]
    assert store.reads == 2


async def test_top_counters_are_read_again_once_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the reuse time, the next caller reads the store again and sees new hits."""
    monkeypatch.setattr(service, "TOP_COUNTERS_TTL", 0.0)
    store = CountedReads()
    tracker = Tracker(store, metrics=Metrics())
    await store.apply([Hit(HOME)])
    assert await tracker.top_counters(5) == [(HOME, 1)]
    await store.apply([Hit(ABOUT), Hit(ABOUT)])
    assert await tracker.top_counters(5) == [(ABOUT, 2), (HOME, 1)]
    assert store.reads == 2


async def test_a_failed_read_of_the_top_counters_is_not_reused() -> None:
    """A store failure reaches the caller, and the next caller asks the store again."""
    store = CountedReads()
    tracker = Tracker(store, metrics=Metrics())
    await store.apply([Hit(HOME)])
    store.failing = True
    with pytest.raises(StoreUnavailable):
        await tracker.top_counters(5)
    store.failing = False
    assert await tracker.top_counters(5) == [(HOME, 1)]
    assert store.reads == 2
