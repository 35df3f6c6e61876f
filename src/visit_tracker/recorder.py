"""Group commit: visits that arrive together are stored in one store call.

Every waiting request is answered only after its batch is committed, with the value its own hit
produced. While one batch is being applied the next one gathers, so batches grow with the load
and a Python process keeps up with its HTTP layer.
"""

import asyncio
import time
from collections.abc import Sequence

from visit_tracker.errors import ShuttingDown
from visit_tracker.metrics import Metrics
from visit_tracker.stores import Hit, Store


class Recorder:
    """Queues hits and applies them to the store in batches, one batch at a time."""

    def __init__(self, store: Store, *, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._pending: list[tuple[Hit, asyncio.Future[int]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False

    async def hit(self, hit: Hit) -> int:
        """Count one hit; return its value once it is committed, or raise the store's error."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((hit, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def close(self) -> None:
        """Refuse new hits and wait until every queued hit is committed or has failed."""
        self._closed = True
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let the hits that arrive in this loop tick join in
                batch, self._pending = self._pending, []
                await self._apply(batch)
        finally:
            self._flusher = None

    async def _apply(self, batch: Sequence[tuple[Hit, asyncio.Future[int]]]) -> None:
        started = time.perf_counter()
        try:
            values = await self._store.apply([hit for hit, _ in batch])
        except Exception as error:  # every waiter learns why its visit was not counted
            self._metrics.batch_failed(error, seconds=time.perf_counter() - started)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        bots = sum(hit.bot for hit, _ in batch)
        self._metrics.batch_committed(
            size=len(batch), bots=bots, seconds=time.perf_counter() - started
        )
        for (_, future), value in zip(batch, values, strict=True):
            if not future.done():  # a client that went away still got counted
                future.set_result(value)
