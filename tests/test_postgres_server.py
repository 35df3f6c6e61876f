"""The real server on PostgreSQL: a lost answer, an outage and a recovery, as clients see them."""

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
import psycopg
from fastapi.testclient import TestClient

from tests.conftest import NewStoreUrl
from tests.postgres import PrivateServer, execute, private_server, store_backends
from tests.server import Server, running_server
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

T = TypeVar("T")

WAIT_LIMIT = 1.0
SLACK = 0.5
"""Seconds an answer may come after the wait limit: HTTP and scheduling, not waiting."""
CLIENTS = 20
MAX_REQUESTS = 100_000
"""A cap on the load test's requests, whatever happens to the server."""


def eventually(condition: Callable[[], T | None], *, seconds: float) -> T:
    """The first truthy result of `condition`, polled every 10 ms for `seconds` at most."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.01)
    raise TimeoutError(f"condition not met within {seconds:g} s")


def timed(request: Callable[[], httpx2.Response]) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


def serving_on(database: PrivateServer) -> contextlib.AbstractContextManager[Server]:
    """The service on `database`, with one worker.

    One, so that no second worker is still starting, and failing to open its store, when a
    test stops PostgreSQL.
    """
    return running_server("--store", database.url, "--store-timeout", str(WAIT_LIMIT))


def test_a_visit_whose_answer_was_lost_gets_a_504_saying_it_may_be_counted(
    new_store_url: NewStoreUrl,
) -> None:
    """When the connection breaks after a visit's write was sent, the visit gets a 504 that says
    it may have been counted, with no invitation to retry."""
    url = new_store_url("postgresql")
    with TestClient(create_app(Settings(store=url, store_timeout=5.0))) as client:
        assert client.post("/visit").json() == {"visits": 1}
        with psycopg.connect(url) as blocker, ThreadPoolExecutor(1) as background:
            blocker.execute("SELECT * FROM counters FOR UPDATE")
            visit = background.submit(client.post, "/visit")
            waiting = eventually(lambda: store_backends(url, waiting_on_a_lock=True), seconds=5)
            execute(url, "SELECT pg_terminate_backend(%s)", (waiting[0],))
            response = visit.result(timeout=10)
        assert response.status_code == 504
        assert "retry-after" not in response.headers
        assert "may or may not have been counted" in response.json()["detail"]
        assert client.post("/visit").json() == {"visits": 2}


def test_a_stopped_postgresql_gives_503_in_time_and_the_service_recovers_by_itself() -> None:
    """With PostgreSQL stopped, visits and /readyz answer 503 within the wait limit; once it is
    back, counting goes on where it was, with no restart."""
    with private_server() as database, serving_on(database) as server:
        for expected in (1, 2, 3):
            assert httpx2.post(f"{server.url}/visit").json() == {"visits": expected}
        database.stop()
        for _ in range(4):
            response, seconds = timed(lambda: httpx2.post(f"{server.url}/visit", timeout=10))
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "not counted" in response.json()["detail"]
            assert seconds < WAIT_LIMIT + SLACK
        response, seconds = timed(lambda: httpx2.get(f"{server.url}/readyz", timeout=10))
        assert response.status_code == 503
        assert seconds < WAIT_LIMIT + SLACK

        database.start()

        def visit() -> int | None:
            response = httpx2.post(f"{server.url}/visit", timeout=10)
            return int(response.json()["visits"]) if response.status_code == 200 else None

        assert eventually(visit, seconds=20) == 4
        assert httpx2.get(f"{server.url}/stats").json()["total_visits"] == 4
        assert httpx2.get(f"{server.url}/readyz").status_code == 200


@dataclass
class Outcome:
    """What the clients saw during a load test."""

    acknowledged: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    slowest_failure: float = 0.0
    unavailable_without_retry_after: int = 0

    def record(self, response: httpx2.Response, seconds: float) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code == 200:
            self.acknowledged.append(response.json()["visits"])
            return
        self.slowest_failure = max(self.slowest_failure, seconds)
        if response.status_code == 503 and "retry-after" not in response.headers:
            self.unavailable_without_retry_after += 1


async def visit_through(url: str, outage: Callable[[], None]) -> Outcome:
    """CLIENTS clients visit while `outage()` runs, until 200 more visits are acknowledged."""
    outcome = Outcome()
    target = 200
    reached, done = asyncio.Event(), asyncio.Event()
    limits = httpx2.Limits(max_connections=CLIENTS)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def visitor() -> None:
            while not done.is_set() and outcome.statuses.total() < MAX_REQUESTS:
                started = time.monotonic()
                response = await client.post("/visit")
                outcome.record(response, time.monotonic() - started)
                if len(outcome.acknowledged) >= target:
                    reached.set()

        async def conductor() -> None:
            nonlocal target
            await reached.wait()
            target = MAX_REQUESTS
            await asyncio.to_thread(outage)
            target = len(outcome.acknowledged) + 200
            reached.clear()
            await reached.wait()
            done.set()

        visitors = [asyncio.ensure_future(visitor()) for _ in range(CLIENTS)]
        await asyncio.wait_for(conductor(), 60)
        await asyncio.gather(*visitors)
    return outcome


def test_an_outage_under_load_loses_no_acknowledged_visit() -> None:
    """PostgreSQL stopped and started under load: every failure is a 503 or 504 within the wait
    limit, every 200 is counted once, and the total counts nothing a 503 refused."""
    with private_server() as database, serving_on(database) as server:

        def outage() -> None:
            database.stop()
            time.sleep(2)
            database.start()

        outcome = asyncio.run(visit_through(server.url, outage))
        total = httpx2.get(f"{server.url}/stats").json()["total_visits"]

    assert set(outcome.statuses) <= {200, 503, 504}, outcome.statuses
    assert outcome.statuses[503] > 0
    assert outcome.unavailable_without_retry_after == 0
    assert outcome.slowest_failure < WAIT_LIMIT + SLACK
    assert len(set(outcome.acknowledged)) == len(outcome.acknowledged)
    assert max(outcome.acknowledged) <= total
    assert len(outcome.acknowledged) <= total <= len(outcome.acknowledged) + outcome.statuses[504]
