"""Live values of counters for event streams: one poller per watched counter, shared by its
streams.

A counter changes through any process of any instance sharing the store, so its changes are
learnt where they all meet: in the store. Each process reads the value of every counter its
streams watch once every `poll_seconds` — one read per counter, however many streams watch it —
and hands a changed value to each of them. The poller starts with a counter's first stream and
stops with its last one.

Each stream holds only the latest value it has not sent yet: a client that reads slowly skips
to the newest value and never makes anything here grow. One that stops reading altogether is
dropped by the writer (see `api/events`), which gives each write a deadline.

    Streams ── open(counter) ──> Subscription ── next_value() ──> the route writes an event
       │ one _Feed per counter        ▲ offer(value), to each of its streams
       └── poller: read(counter) every poll_seconds
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from visit_tracker.errors import ShuttingDown, StoreError, StoreOutcomeUnknown, TooManyStreams
from visit_tracker.metrics import Metrics
from visit_tracker.stores import CounterId

logger = logging.getLogger("visit_tracker")


class Subscription:
    """One stream's view of a counter: the latest value it has not yet sent."""

    __slots__ = ("_changed", "_latest", "_release", "_sent", "closed", "counter")

    def __init__(
        self, counter: CounterId, value: int, *, release: Callable[["Subscription"], None]
    ) -> None:
        self.counter = counter
        self.closed = False
        self._latest = self._sent = value
        self._changed = asyncio.Event()
        self._release = release

    def offer(self, value: int) -> None:
        """Make `value` the one to send next, if it differs from the latest."""
        if value != self._latest:
            self._latest = value
            self._changed.set()

    async def next_value(self) -> int | None:
        """The latest value not sent yet, once there is one; None once the subscription is
        closed."""
        while self._latest == self._sent and not self.closed:
            self._changed.clear()  # set by offers that came back to the value sent
            await self._changed.wait()
        if self.closed:
            return None
        self._sent = self._latest
        return self._sent

    def close(self) -> None:
        """End the stream: `next_value` answers None from now on."""
        self.closed = True
        self._changed.set()

    def release(self) -> None:
        """Stop watching the counter; the stream has ended. Idempotent."""
        self.close()
        self._release(self)


@dataclass(eq=False)
class _Feed:
    """A watched counter: its streams, and the task that reads its value for them."""

    subscriptions: set[Subscription] = field(default_factory=set)
    poller: asyncio.Task[None] | None = None


class Streams:
    """Every event stream of this process, at most `limit` at once, fed by `read`."""

    def __init__(
        self,
        read: Callable[[CounterId], Awaitable[int]],
        *,
        poll_seconds: float,
        limit: int,
        metrics: Metrics,
    ) -> None:
        self._read = read
        self._poll_seconds = poll_seconds
        self._limit = limit
        self._metrics = metrics
        self._feeds: dict[CounterId, _Feed] = {}
        self._open = 0
        self._closed = False

    def check_room(self) -> None:
        """Raise what `open` would refuse a new stream with now: `TooManyStreams` past the
        limit, `ShuttingDown` once the server is stopping."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        if self._open >= self._limit:
            raise TooManyStreams(f"this worker serves {self._limit} event streams already")

    def open(self, counter: CounterId, value: int) -> Subscription:
        """A new stream of the counter, whose value is `value` now; refused as `check_room`
        says."""
        self.check_room()
        feed = self._feeds.get(counter)
        if feed is None:
            feed = self._feeds[counter] = _Feed()
            feed.poller = asyncio.create_task(self._poll(counter, feed))
        subscription = Subscription(counter, value, release=self._release)
        feed.subscriptions.add(subscription)
        self._open += 1
        self._changed()
        return subscription

    def close(self) -> None:
        """End every stream and stop reading, and refuse new streams: the server is stopping."""
        self._closed = True
        for feed in self._feeds.values():
            if feed.poller is not None:
                feed.poller.cancel()
            for subscription in feed.subscriptions:
                subscription.close()

    def _release(self, subscription: Subscription) -> None:
        feed = self._feeds.get(subscription.counter)
        if feed is None or subscription not in feed.subscriptions:
            return
        feed.subscriptions.remove(subscription)
        self._open -= 1
        if not feed.subscriptions:
            del self._feeds[subscription.counter]
            if feed.poller is not None:
                feed.poller.cancel()  # a read under way is shared and shielded: it finishes
        self._changed()

    def _changed(self) -> None:
        self._metrics.streams_changed(streams=self._open, counters=len(self._feeds))

    async def _poll(self, counter: CounterId, feed: _Feed) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                value = await self._read(counter)
            except (StoreError, StoreOutcomeUnknown):  # counted by the tracker; next round
                continue
            except Exception:  # a bug: say so, and keep the streams alive for the next round
                logger.exception(
                    "reading %s/%s for its streams failed", counter.namespace, counter.key
                )
                continue
            for subscription in feed.subscriptions:
                subscription.offer(value)
