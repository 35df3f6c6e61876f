"""What the PostgreSQL store adds to the contract: bounded waits, honest failures, safe starts."""

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import psycopg
import pytest

from tests.postgres import execute, fresh_schema, private_server, store_backends
from tests.server import free_port
from visit_tracker.errors import StoreOpenError, StoreOutcomeUnknown, StoreUnavailable
from visit_tracker.stores import CounterId, CounterRecord, Hit, Store, open_store, postgres
from visit_tracker.stores.postgres import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

T = TypeVar("T")

HOME = CounterId("site", "home")
WAIT_LIMIT = 0.5
SLACK = 0.4
"""Seconds an answer may come after the wait limit: scheduling, not waiting."""


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as made:
        yield made


async def elapsed_while_failing(call: Awaitable[object], error: type[Exception]) -> float:
    """Seconds until `call` raised `error`."""
    started = time.monotonic()
    with pytest.raises(error):
        await call
    return time.monotonic() - started


async def eventually(condition: Callable[[], T | None], *, seconds: float = 5.0) -> T:
    """The first truthy result of `condition`, polled every 10 ms for `seconds` at most."""
    for _ in range(int(seconds * 100)):
        if result := condition():
            return result
        await asyncio.sleep(0.01)
    raise TimeoutError(f"condition not met within {seconds:g} s")


async def test_a_connection_numbered_past_1023_works(url: str) -> None:
    """A store whose connections get file descriptors above 1023 — a worker holding a thousand
    event streams — counts and reads: nothing watches them with select(), which cannot."""
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        store = await open_store(url, wait_limit=WAIT_LIMIT)
        try:
            assert await store.apply([Hit(HOME)]) == [1]
            assert await store.value(HOME) == 1
        finally:
            await store.close()
    finally:
        for descriptor in held:
            os.close(descriptor)


async def test_instances_starting_together_create_the_schema_once(url: str) -> None:
    """Stores opened at the same moment on an empty schema all start, at the current version."""
    stores = await asyncio.gather(*(open_store(url, wait_limit=2.0) for _ in range(6)))
    for store in stores:
        await store.close()
    assert execute(url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


async def test_a_schema_from_a_newer_version_is_refused_at_start(url: str) -> None:
    """A schema_version above this release's stops the start and says so."""
    await (await open_store(url, wait_limit=2.0)).close()
    execute(url, "UPDATE schema_version SET version = 99")
    with pytest.raises(StoreOpenError, match="schema version 99 is newer"):
        await open_store(url, wait_limit=2.0)


async def test_an_unreachable_server_stops_the_start_in_one_line_without_the_password() -> None:
    """A server that refuses connections fails the start, naming it but never its password."""
    port = free_port()
    with pytest.raises(StoreOpenError) as raised:
        await open_store(f"postgres://postgres:s3cret@127.0.0.1:{port}/visits", wait_limit=1.0)
    message = str(raised.value)
    assert f"postgresql://postgres@127.0.0.1:{port}/visits" in message
    assert "s3cret" not in message
    assert "\n" not in message


async def test_batches_naming_counters_in_opposite_orders_never_deadlock(url: str) -> None:
    """Concurrent batches over the same counters, listed in opposite orders, all commit."""
    store = await open_store(url, wait_limit=10.0)
    counters = [CounterId("ns", f"key{i:02}") for i in range(50)]
    batches = [[Hit(c) for c in (counters if i % 2 else counters[::-1])] for i in range(40)]
    try:
        await asyncio.gather(*(store.apply(batch) for batch in batches))
        assert [await store.value(c) for c in counters] == [40] * 50
    finally:
        await store.close()


async def test_a_batch_stuck_behind_a_lock_is_refused_in_time_and_not_applied(url: str) -> None:
    """A batch blocked by a row lock fails with StoreUnavailable within the limit, uncounted."""
    store = await open_store(url, wait_limit=WAIT_LIMIT)
    try:
        await store.apply([Hit(HOME)])
        async with await psycopg.AsyncConnection.connect(url) as blocker:
            await blocker.execute("SELECT * FROM counters FOR UPDATE")
            batch = store.apply([Hit(HOME)] * 3)
            assert await elapsed_while_failing(batch, StoreUnavailable) < WAIT_LIMIT + SLACK
        assert await store.value(HOME) == 1
        assert await store.apply([Hit(HOME)]) == [2]
    finally:
        await store.close()


async def test_a_restore_stuck_behind_a_lock_fails_in_time_and_applies_nothing(url: str) -> None:
    """A restore whose later chunk waits on a row lock fails with StoreUnavailable within the
    limit, and the chunks it wrote before are rolled back with it."""
    store = await open_store(url, wait_limit=WAIT_LIMIT)
    records = [CounterRecord(CounterId("many", f"k{i:04}"), i, 1, 2) for i in range(1500)]
    try:
        await store.apply([Hit(CounterId("many", "k1499"))])
        async with await psycopg.AsyncConnection.connect(url) as blocker:
            await blocker.execute("SELECT * FROM counters FOR UPDATE")
            restore = store.restore(records, replace_history=True)
            assert await elapsed_while_failing(restore, StoreUnavailable) < WAIT_LIMIT + SLACK
        assert [record.counter.key async for record in store.export()] == ["k1499"]
        assert await store.value(CounterId("many", "k1499")) == 1
    finally:
        await store.close()


async def test_a_write_whose_connection_breaks_is_reported_as_unknown(url: str) -> None:
    """A write sent before its connection broke raises StoreOutcomeUnknown, not "not applied"."""
    store = await open_store(url, wait_limit=5.0)
    try:
        await store.apply([Hit(HOME)])
        async with await psycopg.AsyncConnection.connect(url) as blocker:
            await blocker.execute("SELECT * FROM counters FOR UPDATE")
            batch = asyncio.ensure_future(store.apply([Hit(HOME)]))
            waiting = await eventually(lambda: store_backends(url, waiting_on_a_lock=True))
            execute(url, "SELECT pg_terminate_backend(%s)", (waiting[0],))
            with pytest.raises(StoreOutcomeUnknown, match="may"):
                await batch
        assert await store.apply([Hit(HOME)]) == [2]
    finally:
        await store.close()


async def test_connections_the_server_ended_while_idle_are_replaced_unseen(url: str) -> None:
    """After the server ends every idle pooled connection, the next batch succeeds at once."""
    store = await open_store(url, wait_limit=5.0)
    try:
        await store.apply([Hit(HOME)])
        ended = execute(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'visit-tracker' AND datname = current_database()",
        )
        assert len(ended) >= 2
        await eventually(lambda: not store_backends(url))
        started = time.monotonic()
        assert await store.apply([Hit(HOME)]) == [2]
        assert time.monotonic() - started < 1.0
    finally:
        await store.close()


async def backends_that_ran_batches(url: str, *, batches: int) -> tuple[int, int]:
    """How many server processes a store of its own had, and on how many of them it ran the
    last of `batches` batches applied one after another."""
    name = f"vt-{uuid.uuid4().hex[:16]}"
    store = await open_store(f"{url}&application_name={name}", wait_limit=5.0)
    try:
        for _ in range(batches):
            await store.apply([Hit(HOME)])
        last_queries = execute(
            url, "SELECT query FROM pg_stat_activity WHERE application_name = %s", (name,)
        )
    finally:
        await store.close()
    ran_batches = [query for (query,) in last_queries if "INSERT INTO counters" in str(query)]
    return len(last_queries), len(ran_batches)


async def test_batches_one_after_another_run_on_one_connection(url: str) -> None:
    """Batches applied one after another all go to one server process, not to each of the
    pool's connections in turn."""
    assert await backends_that_ran_batches(url, batches=10) == (2, 1)


async def test_the_batch_connection_goes_back_to_the_pool_in_time(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once kept for its time, the batch connection goes back to the pool, which hands out its
    connections in turn."""
    monkeypatch.setattr(postgres, "KEEP_BATCH_CONNECTION", 0.0)
    assert await backends_that_ran_batches(url, batches=10) == (2, 2)


async def test_a_window_set_elsewhere_applies_within_the_recheck_time(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that found a counter without a window counts every hit of a visitor until
    WINDOW_RECHECK has passed since, though another process gave the counter a window; then
    it holds the visitor's repeats back. A window set through the process itself applies at
    once."""
    now = [1000.0]
    monkeypatch.setattr(postgres, "_clock", lambda: now[0])
    home = CounterId("site", "home")
    counting, other = await open_store(url, wait_limit=2.0), await open_store(url, wait_limit=2.0)
    try:
        assert await counting.apply([Hit(home, visitor=7)]) == [1]
        assert await other.update(home, count_once_per=30) is not None
        assert await counting.apply([Hit(home, visitor=7)]) == [2]
        now[0] += postgres.WINDOW_RECHECK
        assert await counting.apply([Hit(home, visitor=7)]) == [3]  # counted, window begins
        assert await counting.apply([Hit(home, visitor=7)]) == [3]
        assert await counting.update(home, count_once_per=0) is not None
        assert await counting.apply([Hit(home, visitor=7), Hit(home, visitor=7)]) == [4, 5]
        assert await counting.update(home, count_once_per=30) is not None
        assert await counting.apply([Hit(home, visitor=8), Hit(home, visitor=8)]) == [6, 6]
    finally:
        await counting.close()
        await other.close()


async def wait_until_answering(store: Store) -> None:
    """Ping until the store answers; 15 s at most."""
    for _ in range(150):
        try:
            await store.ping()
        except StoreUnavailable:
            await asyncio.sleep(0.1)
        else:
            return
    raise TimeoutError("the store did not come back within 15 s")


async def test_a_frozen_server_fails_calls_within_the_limit_then_the_store_recovers() -> None:
    """With the server silent, a write is unknown and a read unavailable, each within the limit.

    Once the server answers again the store works with no restart, and the count includes the
    unknown write or not — which is exactly why the caller could not be told either way.
    """
    with private_server() as server:
        store = await open_store(server.url, wait_limit=WAIT_LIMIT)
        try:
            await store.apply([Hit(HOME)])
            server.freeze(signal.SIGSTOP)
            try:
                write = store.apply([Hit(HOME)])
                assert await elapsed_while_failing(write, StoreOutcomeUnknown) < WAIT_LIMIT + SLACK
                read = store.value(HOME)
                assert await elapsed_while_failing(read, StoreUnavailable) < WAIT_LIMIT + SLACK
            finally:
                server.freeze(signal.SIGCONT)
            await wait_until_answering(store)
            before = await store.value(HOME)
            assert before in (1, 2)
            assert await store.apply([Hit(HOME)]) == [before + 1]
        finally:
            await store.close()
