"""The SQLite store's WAL checkpoints, which run in a thread of their own, and closing it."""

import asyncio
import functools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from visit_tracker.stores import CounterId, Hit, Store, open_store
from visit_tracker.stores import sqlite as sqlite_store

HOME = CounterId("site", "home")
CHECKPOINT_IN_ORDER = ["checkpoint starts", "checkpoint ends", "connection closed"]


class SlowCheckpoints:
    """Makes the store's connections real ones whose checkpoints, when run off the main thread,
    take 0.3 s, and notes when each checkpoint starts and ends and each connection closes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[str] = []
        self.started = threading.Event()
        events, started = self.events, self.started

        class Connection(sqlite3.Connection):
            def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
                main = threading.current_thread() is threading.main_thread()
                if main or not sql.startswith("PRAGMA wal_checkpoint"):
                    return super().execute(sql, *args)
                events.append("checkpoint starts")
                started.set()
                time.sleep(0.3)
                cursor = super().execute(sql, *args)
                events.append("checkpoint ends")
                return cursor

            def close(self) -> None:
                events.append("connection closed")
                super().close()

        connect = functools.partial(sqlite3.connect, factory=Connection)
        monkeypatch.setattr(sqlite3, "connect", connect)
        monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 0.01)

    async def open_during_a_checkpoint(self, path: Path) -> Store:
        """A store on `path` with a hit counted, once its first checkpoint has started."""
        store = await open_store(f"sqlite:///{path}", wait_limit=2.0)
        assert await store.apply([Hit(HOME)]) == [1]
        assert await asyncio.to_thread(self.started.wait, 5.0)
        return store


@pytest.mark.anyio
async def test_closing_the_store_lets_a_checkpoint_under_way_finish_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store closed while its checkpoint runs in a thread closes the checkpoint's connection
    only once the checkpoint is over: closed under the running thread, the connection crashed
    the process with SIGSEGV (stretched here to 0.3 s, the checkpoint would fail instead)."""
    slow = SlowCheckpoints(monkeypatch)
    store = await slow.open_during_a_checkpoint(tmp_path / "visits.db")
    await store.close()
    assert slow.events[:3] == CHECKPOINT_IN_ORDER


def test_a_store_left_open_when_its_event_loop_ends_lets_its_checkpoint_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event loop that ends with the store still open cancels its checkpoints, and the one
    under way finishes before its connection is closed, as when the store is closed."""
    slow = SlowCheckpoints(monkeypatch)
    asyncio.run(slow.open_during_a_checkpoint(tmp_path / "visits.db"))
    assert slow.events[:3] == CHECKPOINT_IN_ORDER
