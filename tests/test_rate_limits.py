"""Rate limits over HTTP: the RateLimit fields, JSON 429s, the visit class off by default, one
limit for instances sharing Redis, and requests let through when that Redis is away."""

import asyncio
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import requests
from fastapi import APIRouter, FastAPI, Response
from fastapi.testclient import TestClient
from starlette.types import ASGIApp
from time_machine import TimeMachineFixture

from tests.redis_servers import fresh_prefix, shared_redis
from tests.server import AS_BROWSER, free_port, running_server
from visit_tracker.api import errors
from visit_tracker.api.rate_limits import ADMIN, HITS, READS, RateLimitFields, route_class
from visit_tracker.app import create_app
from visit_tracker.metrics import Metrics
from visit_tracker.rate_limits import RateLimiter, RouteClass
from visit_tracker.settings import Settings
from visit_tracker.stores import DEFAULT_COUNTER, CounterId, open_store

HIT = "/v1/counters/example.com/home/hits"
SLOW = "0.001"
"""A rate so slow (one request in 1000 s) that no token comes back during a test."""


def fields(response: httpx2.Response) -> dict[str, str]:
    """The response's RateLimit fields and Retry-After."""
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("ratelimit-") or name == "retry-after"
    }


def stored_value(store_url: str, counter: CounterId) -> int:
    async def read() -> int:
        store = await open_store(store_url, wait_limit=2.0)
        try:
            return await store.value(counter)
        finally:
            await store.close()

    return asyncio.run(read())


def test_hits_carry_the_fields_and_the_burst_ends_in_a_json_429(tmp_path: Path) -> None:
    """Three hits in a burst of 3 say 2, 1, 0 remain; the fourth is a JSON 429 with Retry-After
    and the request id, and is not counted."""
    store = f"sqlite:///{tmp_path}/v.db"
    limits = ("--rate-limit-hits", SLOW, "--rate-limit-hits-burst", "3")
    with running_server("--store", store, *limits) as server:
        answers = [httpx2.post(f"{server.url}{HIT}", headers=AS_BROWSER) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert [fields(answer)["ratelimit-remaining"] for answer in answers] == ["2", "1", "0", "0"]
    assert fields(answers[0]) == {
        "ratelimit-limit": "3",
        "ratelimit-remaining": "2",
        "ratelimit-reset": "1000",
        "ratelimit-policy": "3;w=3000",
    }
    refused = answers[3]
    assert fields(refused)["retry-after"] == "1000"
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {
        "detail": "Too many requests: this client may make 3 requests every 3000 s here. "
        "Retry in 1000 s."
    }
    assert len(refused.headers["x-request-id"]) == 32
    assert stored_value(store, CounterId("example.com", "home")) == 3


def test_the_visit_class_is_off_by_default(tmp_path: Path) -> None:
    """By default POST /visit carries no RateLimit field and the original stress test — 1,000
    visits from 100 threads, one client — all succeed; hits are limited at 60 at once."""
    with running_server("--store", f"sqlite:///{tmp_path}/v.db") as server:
        with ThreadPoolExecutor(max_workers=100) as pool:
            answers = list(
                pool.map(lambda _: requests.post(f"{server.url}/visit", timeout=30), range(1000))
            )
        assert [answer.status_code for answer in answers] == [200] * 1000
        assert not any("ratelimit-limit" in answer.headers for answer in answers)
        assert httpx2.get(f"{server.url}/stats").json()["total_visits"] == 1000
        hit = httpx2.post(f"{server.url}{HIT}")
        assert fields(hit)["ratelimit-limit"] == "60"
        assert fields(hit)["ratelimit-policy"] == "60;w=6"


def test_the_visit_class_when_on_limits_the_direct_routes(tmp_path: Path) -> None:
    """With a visit rate set, POST /visit and GET /stats, answered before the framework, share
    the client's visit bucket, carry its fields, and a refused visit is a JSON 429, uncounted."""
    store = f"sqlite:///{tmp_path}/v.db"
    limits = ("--rate-limit-visit", SLOW, "--rate-limit-visit-burst", "3")
    with running_server("--store", store, *limits) as server:
        visits = [httpx2.post(f"{server.url}/visit") for _ in range(2)]
        stats = httpx2.get(f"{server.url}/stats")
        refused = httpx2.post(f"{server.url}/visit")
    assert [visit.json() for visit in visits] == [{"visits": 1}, {"visits": 2}]
    assert [fields(visit)["ratelimit-remaining"] for visit in visits] == ["2", "1"]
    assert stats.status_code == 200
    assert fields(stats)["ratelimit-remaining"] == "0"
    assert refused.status_code == 429
    assert fields(refused)["retry-after"] == "1000"
    assert refused.json()["detail"].startswith("Too many requests")
    assert "x-request-id" in refused.headers
    assert stored_value(store, DEFAULT_COUNTER) == 2


def test_two_instances_sharing_redis_see_one_limit() -> None:
    """Two servers on one Redis give a client one burst of 3 hits between them."""
    limits = ("--rate-limit-hits", SLOW, "--rate-limit-hits-burst", "3")
    with (
        fresh_prefix(shared_redis()) as store,
        running_server("--store", store, *limits) as first,
        running_server("--store", store, *limits) as second,
    ):
        servers = [first, second, first, second, first]
        statuses = [httpx2.post(f"{server.url}{HIT}").status_code for server in servers]
    assert statuses == [200, 200, 200, 429, 429]


def test_an_unreachable_rate_limit_redis_lets_requests_through(tmp_path: Path) -> None:
    """With the buckets' Redis away, hits beyond the burst succeed, without RateLimit fields,
    and the server logs once that the limits are off."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    limits = ("--rate-limit-store", dead_redis, "--rate-limit-hits-burst", "1")
    with (
        tempfile.TemporaryFile() as log,
        running_server("--store", f"sqlite:///{tmp_path}/v.db", *limits, stderr=log) as server,
    ):
        answers = [httpx2.post(f"{server.url}{HIT}", headers=AS_BROWSER) for _ in range(5)]
        log.seek(0)
        lines = log.read().decode().splitlines()
    assert [answer.json()["value"] for answer in answers] == [1, 2, 3, 4, 5]
    assert not any(fields(answer) for answer in answers)
    assert len([line for line in lines if "rate limits are off" in line]) == 1


def test_a_bucket_refills_with_the_clock_through_the_whole_app(
    time_machine: TimeMachineFixture,
) -> None:
    """With the clock stopped, a burst of 2 ends in a 429 saying retry in 1 s; one second later
    one more hit passes."""
    time_machine.move_to(datetime(2026, 11, 28, 12, tzinfo=UTC), tick=False)
    settings = Settings(store="memory://", rate_limit_hits=1, rate_limit_hits_burst=2)
    with TestClient(create_app(settings)) as client:
        statuses = [client.post(HIT).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert client.post(HIT).headers["retry-after"] == "1"
        time_machine.shift(1)
        assert [client.post(HIT).status_code for _ in range(2)] == [200, 429]


def app_with_routes_added_later() -> ASGIApp:
    """Routes as a later change might add them, each put in its class by one dependency."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, RateLimiter]]:
        async with RateLimiter.running(Settings(store="memory://"), metrics=Metrics()) as limiter:
            yield {"limiter": limiter}

    app = FastAPI(lifespan=lifespan)
    admin = APIRouter(prefix="/v1/counters", dependencies=[ADMIN])

    @admin.delete("/{namespace}/{key}", status_code=204)
    async def delete(namespace: str, key: str) -> Response:
        return Response(status_code=204)

    @app.get("/v1/counters/{namespace}/{key}/pixel.gif", dependencies=[HITS])
    async def pixel(namespace: str, key: str) -> Response:
        return Response(b"GIF89a", media_type="image/gif")

    @app.get("/v1/counters/{namespace}", dependencies=[READS])
    async def listing(namespace: str) -> dict[str, list[str]]:
        return {"counters": []}

    app.include_router(admin)
    errors.install(app)
    assert route_class(admin, delete) is RouteClass.ADMIN
    return RateLimitFields(app)


def test_routes_added_later_take_their_class_from_their_metadata() -> None:
    """An admin router's routes get the strict admin limit (10 at once, then a JSON 429), a
    counting route that answers a raw Response still gets its fields, and a read route the
    generous read limit."""
    with TestClient(app_with_routes_added_later()) as client:
        deletes = [client.delete("/v1/counters/site/home") for _ in range(11)]
        pixel = client.get("/v1/counters/site/home/pixel.gif")
        listing = client.get("/v1/counters/site")
    assert [answer.status_code for answer in deletes] == [204] * 10 + [429]
    assert deletes[0].headers["ratelimit-policy"] == "10;w=10"
    assert deletes[10].json()["detail"].startswith("Too many requests")
    assert deletes[10].headers["retry-after"] == "1"
    assert pixel.content == b"GIF89a"
    assert pixel.headers["ratelimit-policy"] == "60;w=6"
    assert listing.headers["ratelimit-policy"] == "200;w=4"
