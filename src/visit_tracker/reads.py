"""Shared reads: concurrent reads of one counter cost the store one round trip.

A read never joins a store read already under way — that one may have started before the
caller's own visit was committed. It waits for the next store read, which starts after it
arrived, so every caller sees at least every visit acknowledged before it asked.
"""

import asyncio
from collections.abc import Awaitable, Callable

from visit_tracker.stores import CounterId


class SharedReads:
    """Reads counters through `read`, one store read at a time per counter, shared by waiters."""

    def __init__(self, read: Callable[[CounterId], Awaitable[int]]) -> None:
        self._read = read
        self._next: dict[CounterId, asyncio.Future[int]] = {}
        self._readers: dict[CounterId, asyncio.Task[None]] = {}

    async def value(self, counter: CounterId) -> int:
        """The counter's value, read after this call began."""
        future = self._next.get(counter)
        if future is None:
            future = self._next[counter] = asyncio.get_running_loop().create_future()
            if counter not in self._readers:
                self._readers[counter] = asyncio.create_task(self._serve(counter))
        # Shielded: a caller that gives up must not cancel the read the others wait for.
        return await asyncio.shield(future)

    async def _serve(self, counter: CounterId) -> None:
        try:
            while (future := self._next.pop(counter, None)) is not None:
                try:
                    future.set_result(await self._read(counter))
                except Exception as error:  # each waiter of this read learns why it failed
                    future.set_exception(error)
        finally:
            del self._readers[counter]
