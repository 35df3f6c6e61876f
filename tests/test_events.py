"""Live values for event streams: one poller per watched counter, shared, bounded, stoppable."""

import asyncio

import pytest

from visit_tracker.errors import ShuttingDown, StoreUnavailable, TooManyStreams
from visit_tracker.events import Streams
from visit_tracker.metrics import Metrics
from visit_tracker.stores import CounterId

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
ABOUT = CounterId("site", "about")
POLL = 0.01
WAIT = 2.0


class Counters:
    """Values as a store holds them, which counts the reads of each counter."""

    def __init__(self) -> None:
        self.values: dict[CounterId, int] = {}
        self.reads: dict[CounterId, int] = {}
        self.failures = 0
        self.failure: Exception = StoreUnavailable("the store did not answer")
        self.was_read = asyncio.Event()

    async def read(self, counter: CounterId) -> int:
        self.reads[counter] = self.reads.get(counter, 0) + 1
        self.was_read.set()
        if self.failures:
            self.failures -= 1
            raise self.failure
        return self.values.get(counter, 0)

    async def polled(self, counter: CounterId, times: int = 1) -> None:
        """Return once the counter has been read `times` more times."""
        target = self.reads.get(counter, 0) + times
        async with asyncio.timeout(WAIT):
            while self.reads.get(counter, 0) < target:
                self.was_read.clear()
                await self.was_read.wait()


def gauges(metrics: Metrics) -> tuple[float | None, float | None]:
    """The open streams and the polled counters, as /metrics shows them."""
    sample = metrics.registry.get_sample_value
    return sample("visit_tracker_event_streams"), sample("visit_tracker_event_counters")


def streams_of(counters: Counters, *, limit: int = 10) -> tuple[Streams, Metrics]:
    metrics = Metrics()
    return Streams(counters.read, poll_seconds=POLL, limit=limit, metrics=metrics), metrics


async def test_a_change_reaches_every_stream_of_the_counter_with_one_read_a_poll() -> None:
    """Every stream of a counter gets its new value, from one read a poll however many watch."""
    counters = Counters()
    streams, metrics = streams_of(counters)
    watching = [streams.open(HOME, 0) for _ in range(5)]
    other = streams.open(ABOUT, 0)
    assert gauges(metrics) == (6, 2)
    await counters.polled(HOME, 3)
    counters.values[HOME] = 3
    async with asyncio.timeout(WAIT):
        assert await asyncio.gather(*(s.next_value() for s in watching)) == [3] * 5
    reads_before = counters.reads[HOME]
    await counters.polled(ABOUT, 5)  # five polls of each counter, whose streams all wait
    assert counters.reads[HOME] - reads_before in range(4, 7)
    counters.values[ABOUT] = 1
    async with asyncio.timeout(WAIT):
        assert await other.next_value() == 1
    for subscription in [*watching, other]:
        subscription.release()


async def test_a_stream_that_waits_skips_to_the_latest_value() -> None:
    """Values that change while a stream is busy reach it as one, the latest; one that changes
    and comes back to the value sent reaches it as nothing."""
    counters = Counters()
    streams, _ = streams_of(counters)
    subscription = streams.open(HOME, 0)
    for value in (1, 2, 3):
        counters.values[HOME] = value
        await counters.polled(HOME, 2)
    async with asyncio.timeout(WAIT):
        assert await subscription.next_value() == 3
    counters.values[HOME] = 4
    await counters.polled(HOME, 2)
    counters.values[HOME] = 3
    await counters.polled(HOME, 2)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(10 * POLL):
            await subscription.next_value()
    subscription.release()


async def test_the_poller_stops_when_the_last_stream_of_its_counter_leaves() -> None:
    """A counter is read while a stream watches it; after the last one leaves, never again."""
    counters = Counters()
    streams, metrics = streams_of(counters)
    tasks = asyncio.all_tasks()
    first, second = streams.open(HOME, 0), streams.open(HOME, 0)
    await counters.polled(HOME)
    first.release()
    first.release()  # releasing twice changes nothing
    assert gauges(metrics) == (1, 1)
    await counters.polled(HOME)
    second.release()
    assert gauges(metrics) == (0, 0)
    await asyncio.sleep(POLL)  # a read under way when it left may still end
    reads = counters.reads[HOME]
    await asyncio.sleep(10 * POLL)
    assert counters.reads[HOME] == reads
    assert asyncio.all_tasks() == tasks


async def test_past_the_limit_a_stream_is_refused_until_one_leaves() -> None:
    """With as many streams open as the limit, another is refused; one leaving makes room."""
    streams, metrics = streams_of(Counters(), limit=2)
    first, second = streams.open(HOME, 0), streams.open(ABOUT, 0)
    with pytest.raises(TooManyStreams):
        streams.open(HOME, 0)
    assert gauges(metrics) == (2, 2)
    first.release()
    third = streams.open(HOME, 0)
    for subscription in (second, third):
        subscription.release()


async def test_closing_ends_every_stream_and_refuses_new_ones() -> None:
    """Once the server stops, every waiting stream learns it has ended, no counter is read any
    more, and no stream opens."""
    counters = Counters()
    streams, _ = streams_of(counters)
    waiting = [streams.open(HOME, 0), streams.open(HOME, 0), streams.open(ABOUT, 0)]
    pending = asyncio.gather(*(s.next_value() for s in waiting))
    await counters.polled(HOME)
    streams.close()
    async with asyncio.timeout(WAIT):
        assert await pending == [None, None, None]
    with pytest.raises(ShuttingDown):
        streams.open(HOME, 0)
    reads = dict(counters.reads)
    await asyncio.sleep(10 * POLL)
    assert counters.reads == reads  # no counter is read any more
    for subscription in waiting:
        subscription.release()


async def test_a_failed_read_keeps_the_streams_and_a_later_read_delivers() -> None:
    """A store that fails some polls ends no stream: the next poll that works brings the value."""
    counters = Counters()
    streams, _ = streams_of(counters)
    subscription = streams.open(HOME, 0)
    counters.failures = 3
    counters.values[HOME] = 8
    async with asyncio.timeout(WAIT):
        assert await subscription.next_value() == 8
    assert counters.failures == 0
    subscription.release()


async def test_an_unexpected_failure_of_a_read_is_logged_and_the_streams_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A read that fails with something other than a store error (a bug) is logged, and the
    next poll that works still brings the value: the counter's poller does not stop."""
    counters = Counters()
    streams, _ = streams_of(counters)
    subscription = streams.open(HOME, 0)
    counters.failures, counters.failure = 2, RuntimeError("a bug")
    counters.values[HOME] = 5
    async with asyncio.timeout(WAIT):
        assert await subscription.next_value() == 5
    assert "reading site/home for its streams failed" in caplog.text
    subscription.release()
