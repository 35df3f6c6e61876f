"""Shared reads: concurrent readers of a counter share one store read, never a stale one."""

import asyncio

import pytest

from visit_tracker.reads import SharedReads
from visit_tracker.stores import CounterId

pytestmark = pytest.mark.anyio

PAGE = CounterId("site", "page")


class SlowCounter:
    """A counter whose reads take until `release` is set, and which counts its reads."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.release = asyncio.Event()

    async def read(self, _: CounterId) -> int:
        self.reads += 1
        seen = self.value
        await self.release.wait()
        return seen


async def test_concurrent_readers_share_one_store_read() -> None:
    """Readers who arrive together are all answered by a single store read."""
    counter = SlowCounter()
    counter.release.set()
    reads = SharedReads(counter.read)
    assert await asyncio.gather(*(reads.value(PAGE) for _ in range(50))) == [0] * 50
    assert counter.reads == 1


async def test_a_reader_never_joins_a_read_already_under_way() -> None:
    """A reader arriving mid-read waits for the next read, which sees the newer value."""
    counter = SlowCounter()
    reads = SharedReads(counter.read)
    early = asyncio.ensure_future(reads.value(PAGE))
    await asyncio.sleep(0.01)
    counter.value = 7  # committed after the first read began, before the late reader asked
    late = [asyncio.ensure_future(reads.value(PAGE)) for _ in range(10)]
    await asyncio.sleep(0.01)
    counter.release.set()
    assert await early == 0
    assert await asyncio.gather(*late) == [7] * 10
    assert counter.reads == 2


async def test_a_failed_read_fails_its_waiters_and_the_next_read_works() -> None:
    """Every waiter of a failing read gets its error; a later read succeeds."""
    failures = iter([RuntimeError("store down")])

    async def flaky(_: CounterId) -> int:
        for failure in failures:
            raise failure
        return 3

    reads = SharedReads(flaky)
    results = await asyncio.gather(*(reads.value(PAGE) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    assert await reads.value(PAGE) == 3


async def test_a_reader_that_gives_up_does_not_cancel_the_others() -> None:
    """Cancelling one waiting reader leaves the shared read and the other readers intact."""
    counter = SlowCounter()
    reads = SharedReads(counter.read)
    quitter = asyncio.ensure_future(reads.value(PAGE))
    stayer = asyncio.ensure_future(reads.value(PAGE))
    await asyncio.sleep(0.01)
    quitter.cancel()
    counter.value = 1
    counter.release.set()
    assert await stayer == 0
    assert quitter.cancelled()
