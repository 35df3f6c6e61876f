"""The real server on a private Redis that dies or stalls: quick answers, recovery, no loss."""

import asyncio
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx2
import pytest

from tests.redis_servers import RedisServer, redis_server
from tests.server import Server, running_server
from tests.test_server import send_visits, total_visits, visit_until_refused

WAIT_LIMIT = 0.5
SLACK = 0.5
"""How far past the wait limit a loaded two-core machine may take to answer."""
RECOVERY_TIMEOUT = 10.0


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis that keeps every acknowledged write across a SIGKILL (AOF, fsync always)."""
    with redis_server(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always") as rs:
        yield rs


def serve(redis: RedisServer, *, workers: int) -> AbstractContextManager[Server]:
    """visit-tracker serving on that Redis with a short store wait limit."""
    return running_server(
        "--workers", str(workers), "--store", redis.url, "--store-timeout", str(WAIT_LIMIT)
    )


def timed_visit(server: Server) -> tuple[httpx2.Response, float]:
    started = time.monotonic()
    response = httpx2.post(f"{server.url}/visit", timeout=10)
    return response, time.monotonic() - started


def wait_until_ready(server: Server) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while httpx2.get(f"{server.url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, f"not ready {RECOVERY_TIMEOUT} s after Redis returned"
        time.sleep(0.05)


def test_a_dead_redis_gets_quick_503s_and_the_service_recovers_by_itself(
    durable_redis: RedisServer,
) -> None:
    """With Redis killed, visits get a JSON 503 with Retry-After within the wait limit and
    /readyz fails; once Redis is back on its port, counting goes on with nothing lost."""
    with serve(durable_redis, workers=2) as server:
        assert sorted(asyncio.run(send_visits(server.url, 200))) == list(range(1, 201))
        durable_redis.kill()
        for _ in range(4):  # reaching both workers, whichever takes each request
            response, elapsed = timed_visit(server)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert "not counted" in response.json()["detail"]
            assert elapsed < WAIT_LIMIT + SLACK
        assert httpx2.get(f"{server.url}/readyz", timeout=10).status_code == 503
        durable_redis.start()
        wait_until_ready(server)
        assert httpx2.post(f"{server.url}/visit", timeout=10).json() == {"visits": 201}
        assert total_visits(server) == 201


def test_killing_redis_under_load_loses_no_acknowledged_visit(durable_redis: RedisServer) -> None:
    """Redis killed mid-load: every visit that got a 200 had its own number and is still
    counted when Redis comes back."""
    with serve(durable_redis, workers=2) as server:
        acknowledged = asyncio.run(
            visit_until_refused(server.url, then=durable_redis.kill, after=500)
        )
        durable_redis.start()
        wait_until_ready(server)
        total = total_visits(server)
    assert len(acknowledged) >= 500
    assert len(set(acknowledged)) == len(acknowledged)
    assert max(acknowledged) <= total


def test_a_stalled_redis_gets_504s_saying_the_visit_may_have_been_counted(
    durable_redis: RedisServer,
) -> None:
    """When Redis takes a visit and stalls past the wait limit, the 504 says the visit may have
    been counted, with no invitation to retry — and once Redis resumes, it was."""
    with serve(durable_redis, workers=1) as server:
        assert httpx2.post(f"{server.url}/visit", timeout=10).json() == {"visits": 1}
        durable_redis.stall()
        try:
            response, elapsed = timed_visit(server)
        finally:
            durable_redis.resume()
        assert response.status_code == 504
        assert "retry-after" not in response.headers
        assert "may or may not have been counted" in response.json()["detail"]
        assert WAIT_LIMIT <= elapsed < WAIT_LIMIT + SLACK
        assert total_visits(server) == 2
