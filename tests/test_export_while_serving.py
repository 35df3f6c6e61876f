"""An export taken while another instance counts: each counter's record and history are read at
one moment, so the file agrees with itself and imports, even when midnight UTC falls inside it."""

import asyncio
import json
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from time_machine import TimeMachineFixture

from tests.conftest import NewStoreUrl
from visit_tracker import backup
from visit_tracker.stores import CounterId, Hit, Store, open_store
from visit_tracker.transfer import export_counters, import_counters

KINDS = ["sqlite", "redis", "redis-cluster", "postgresql"]
"""Every store an export reads from another process: `memory://` opens a fresh, empty one."""

COUNTERS = [CounterId("site", f"page-{i}") for i in range(5)]
MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
STEP = timedelta(seconds=10)

T = TypeVar("T")


def visits(step: int, *, visitors: bool) -> list[Hit]:
    """Two hits on every counter, with a page, a referrer and, if `visitors`, visitor ids."""
    return [
        Hit(
            counter,
            page=f"/p{step % 3}",
            referrer="https://a.example/",
            visitor=step * 10 + i if visitors else None,
        )
        for counter in COUNTERS
        for i in range(2)
    ]


class OtherInstance:
    """The same store opened in a thread of its own, with its own event loop: another instance
    of the service, whose batches commit while the export, in the test's thread, waits."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._store: Store = self._call(open_store(url, wait_limit=10.0))

    def apply(self, hits: list[Hit]) -> None:
        self._call(self._store.apply(hits))

    def close(self) -> None:
        self._call(self._store.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=30)


@contextmanager
def other_instance(url: str) -> Iterator[OtherInstance]:
    instance = OtherInstance(url)
    try:
        yield instance
    finally:
        instance.close()


@pytest.mark.parametrize("kind", KINDS)
def test_an_export_while_hits_land_across_midnight_agrees_with_itself_and_imports(
    kind: str, new_store_url: NewStoreUrl, time_machine: TimeMachineFixture
) -> None:
    """With another instance committing a batch on every counter as each line of the export is
    written (the write waits for it, so each batch lands at a known point of the export; ten
    seconds apart, midnight UTC falling after the first counter's hours, and after it hits
    without visitor ids, so that no visitor bucket lists the new day), the file imports into a
    fresh store and every exported counter's hours add up to its value."""
    url = new_store_url(kind)
    clock = MIDNIGHT - 3 * STEP
    time_machine.move_to(clock, tick=False)
    lines: list[str] = []
    with other_instance(url) as other:
        other.apply(visits(0, visitors=True))

        def write(text: str) -> None:
            nonlocal clock
            lines.append(text)
            clock += STEP
            time_machine.move_to(clock, tick=False)
            other.apply(visits(len(lines), visitors=clock < MIDNIGHT))

        count = asyncio.run(export_counters(url, write=write, counted=lambda: None))
    assert count == len(COUNTERS)
    assert clock > MIDNIGHT + 4 * STEP  # hits of both days landed while counters were read
    exported = [line.encode() for line in "".join(lines).splitlines()]
    assert backup.check(exported).counters == len(COUNTERS)
    fresh = new_store_url(kind)
    asyncio.run(import_counters(fresh, backup.entries(exported), replace_history=True))
    value: dict[str, int] = {}
    hours: dict[str, int] = {}
    for line in lines[1:]:
        fields = json.loads(line)
        if "key" in fields:
            counter = fields["key"]
            value[counter], hours[counter] = fields["value"], 0
        elif "hours" in fields:
            hours[counter] += sum(hits for _, hits in fields["hours"])
    assert hours == value
