"""Group commit: hits that arrive together share one store call; each waits for its commit."""

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from visit_tracker.errors import ShuttingDown, StoreUnavailable
from visit_tracker.metrics import Metrics
from visit_tracker.recorder import Recorder
from visit_tracker.stores import CounterId, Hit, open_store
from visit_tracker.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

PAGE = CounterId("site", "page")


class BatchLog(MemoryStore):
    """A memory store that remembers the size of every batch and can hold batches back."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        self.batches.append(len(hits))
        await self.gate.wait()
        return await super().apply(hits)


async def test_concurrent_hits_get_every_number_once() -> None:
    """N concurrent hits return exactly the values 1..N."""
    recorder = Recorder(MemoryStore(), metrics=Metrics())
    values = await asyncio.gather(*(recorder.hit(Hit(PAGE)) for _ in range(500)))
    assert sorted(values) == list(range(1, 501))


async def test_hits_arriving_together_share_one_batch() -> None:
    """Hits submitted in the same loop tick reach the store as a single batch."""
    store = BatchLog()
    recorder = Recorder(store, metrics=Metrics())
    await asyncio.gather(*(recorder.hit(Hit(PAGE)) for _ in range(100)))
    assert store.batches == [100]


async def test_hits_arriving_during_a_commit_form_the_next_batch() -> None:
    """While one batch is being applied, later hits wait and then go in together."""
    store = BatchLog()
    store.gate.clear()
    recorder = Recorder(store, metrics=Metrics())
    first = asyncio.ensure_future(recorder.hit(Hit(PAGE)))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(recorder.hit(Hit(PAGE))) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert store.batches == [1]
    store.gate.set()
    assert await first == 1
    assert sorted(await asyncio.gather(*later)) == list(range(2, 12))
    assert store.batches == [1, 10]


async def test_each_batch_is_measured_once_with_its_size() -> None:
    """Two batches of 1 and 10 hits show as 11 visits, 2 batches summing to 11, 2 applies."""
    store = BatchLog()
    store.gate.clear()
    metrics = Metrics()
    recorder = Recorder(store, metrics=metrics)
    first = asyncio.ensure_future(recorder.hit(Hit(PAGE)))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(recorder.hit(Hit(PAGE))) for _ in range(10)]
    store.gate.set()
    await asyncio.gather(first, *later)
    sample = metrics.registry.get_sample_value
    assert sample("visit_tracker_visits_total") == 11
    assert sample("visit_tracker_batch_size_count") == 2
    assert sample("visit_tracker_batch_size_sum") == 11
    assert sample("visit_tracker_batch_size_bucket", {"le": "1.0"}) == 1
    assert sample("visit_tracker_store_apply_seconds_count") == 2


async def test_no_answer_before_the_batch_is_committed() -> None:
    """A hit's caller is not answered while its batch is still being applied."""
    store = BatchLog()
    store.gate.clear()
    recorder = Recorder(store, metrics=Metrics())
    pending = asyncio.ensure_future(recorder.hit(Hit(PAGE)))
    await asyncio.sleep(0.05)
    assert not pending.done()
    assert await store.value(PAGE) == 0
    store.gate.set()
    assert await pending == 1


async def test_a_failed_batch_fails_every_waiter_and_counts_nothing(tmp_path: Path) -> None:
    """When the store stays locked, each waiting hit gets the error and none is counted, and
    the metrics show the failed batch as a StoreUnavailable error, not as visits."""
    store = await open_store(f"sqlite:///{tmp_path}/visits.db", wait_limit=0.1)
    metrics = Metrics()
    recorder = Recorder(store, metrics=metrics)
    await recorder.hit(Hit(PAGE))
    blocker = sqlite3.connect(tmp_path / "visits.db", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    results = await asyncio.gather(
        *(recorder.hit(Hit(PAGE)) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(result, StoreUnavailable) for result in results)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert await store.value(PAGE) == 1
    errors = metrics.registry.get_sample_value
    assert errors("visit_tracker_store_errors_total", {"kind": "StoreUnavailable"}) == 1
    assert errors("visit_tracker_visits_total") == 1
    assert await recorder.hit(Hit(PAGE)) == 2
    await recorder.close()
    await store.close()


async def test_close_commits_pending_hits_then_refuses_new_ones() -> None:
    """Closing waits for queued hits to be committed and turns later hits away."""
    store = BatchLog()
    store.gate.clear()
    recorder = Recorder(store, metrics=Metrics())
    queued = [asyncio.ensure_future(recorder.hit(Hit(PAGE))) for _ in range(5)]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(recorder.close())
    await asyncio.sleep(0.01)
    assert not closing.done()
    store.gate.set()
    await closing
    assert sorted(await asyncio.gather(*queued)) == [1, 2, 3, 4, 5]
    with pytest.raises(ShuttingDown):
        await recorder.hit(Hit(PAGE))
