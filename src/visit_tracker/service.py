"""The visit-counting service: what the HTTP layer asks for, in the domain's terms.

Routes translate HTTP to calls on `Tracker`; `Tracker` talks to the store, writes going through
the group-commit `Recorder`.
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from visit_tracker.errors import StoreError, StoreOutcomeUnknown
from visit_tracker.metrics import Metrics
from visit_tracker.reads import SharedReads
from visit_tracker.recorder import Recorder
from visit_tracker.settings import Settings
from visit_tracker.stores import DEFAULT_COUNTER, CounterId, Hit, Store, open_store


class Tracker:
    """Counts visits and reports on them."""

    def __init__(self, store: Store, *, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._recorder = Recorder(store, metrics=metrics)
        self._reads = SharedReads(self._read)
        self._started = time.monotonic()

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings, *, metrics: Metrics) -> AsyncIterator["Tracker"]:
        """Open the configured store; on exit, commit what is pending, then close the store."""
        store = await open_store(settings.store, wait_limit=settings.store_timeout)
        tracker = cls(store, metrics=metrics)
        try:
            yield tracker
        finally:
            await tracker._recorder.close()
            await store.close()

    async def visit(self, counter: CounterId = DEFAULT_COUNTER) -> int:
        """Count one visit and return the counter's value including it."""
        return await self._recorder.hit(Hit(counter))

    async def total(self, counter: CounterId = DEFAULT_COUNTER) -> int:
        """The counter's committed value, every visit acknowledged before this call included."""
        return await self._reads.value(counter)

    async def _read(self, counter: CounterId) -> int:
        """One store read, shared by the callers waiting for it; its failure counted once."""
        try:
            return await self._store.value(counter)
        except (StoreError, StoreOutcomeUnknown) as error:
            self._metrics.store_failed(error)
            raise

    def uptime(self) -> float:
        """Seconds since this process started serving."""
        return time.monotonic() - self._started

    async def check_ready(self) -> None:
        """Raise `StoreError` unless the store answers."""
        try:
            await self._store.ping()
        except StoreError as error:
            self._metrics.store_failed(error)
            raise
