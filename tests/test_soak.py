"""A soak test: the real server, two workers on a Redis that crashes and comes back, under mixed
traffic for about half a minute.

Every visit acknowledged is still counted afterwards, and nothing is counted that was neither
acknowledged nor answered "may have been counted"; the only failures are the documented 503 and
504, as JSON, while Redis is away; the service recovers without a restart; and each worker's
memory after the run is within RSS_GROWTH_LIMIT_MIB of what it was before.
"""

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from math import inf
from pathlib import Path

import httpx2
import pytest

from tests.redis_servers import RedisServer, redis_server
from tests.server import AS_BROWSER, Server, running_server
from visit_tracker.stores import DEFAULT_COUNTER, CounterId, open_store

CLIENTS = 8
RATE = 600
"""Requests a second at most, all clients together: a soak on a shared machine, not a benchmark."""
WARM_UP_SECONDS = 3.0
LOAD_SECONDS = 20.0
OUTAGE_AFTER = 6.0
"""Seconds into the load when Redis is killed; it is started again OUTAGE_SECONDS later."""
OUTAGE_SECONDS = 3.0
RECOVERY_SECONDS = 5.0
"""How long after Redis answers again the service may still fail requests."""
STORE_TIMEOUT = 0.5
MAX_BODY_SIZE = 1024
RSS_GROWTH_LIMIT_MIB = 20.0
MIB = 2**20

WRITE_FAILURES = frozenset({503, 504})
READ_FAILURES = frozenset({503})


@dataclass(frozen=True)
class Request:
    """One kind of request the clients send, and the answers it may get."""

    name: str
    method: str
    path: str
    answer: int
    outage_answers: frozenset[int] = frozenset()
    """Further answers allowed while Redis is away (and shortly after)."""
    counter: CounterId | None = None
    """The counter a 200 counts on, and the field of the answer holding its value."""
    value_field: str = "value"
    content: bytes | None = None


def hit(key: str) -> Request:
    path = f"/v1/counters/soak/{key}/hits"
    return Request(f"hit {key}", "POST", path, 200, WRITE_FAILURES, CounterId("soak", key))


MIX = [
    *[Request("visit", "POST", "/visit", 200, WRITE_FAILURES, DEFAULT_COUNTER, "visits")] * 8,
    *[Request("stats", "GET", "/stats", 200, READ_FAILURES)] * 3,
    *[hit(key) for key in ("a", "b", "c")] * 2,
    Request("healthz", "GET", "/healthz", 200),
    Request("readyz", "GET", "/readyz", 200, READ_FAILURES),
    Request("bad name", "POST", "/v1/counters/soak/bad%20key/hits", 422),
    Request("wrong method", "GET", "/visit", 405),
    Request("unknown path", "GET", "/nowhere", 404),
    Request("oversize", "POST", "/v1/counters/soak/a/hits", 413, content=b"x" * 2 * MAX_BODY_SIZE),
]
"""Mostly visits and hits, some reads and probes, one request in five a bad one."""
COUNTERS = {request.counter for request in MIX if request.counter is not None}


@dataclass
class Outcome:
    """What the clients saw."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    acknowledged: dict[CounterId, list[int]] = field(default_factory=dict)
    """Each counter's values in its 200 answers."""
    unconfirmed: Counter[CounterId] = field(default_factory=Counter)
    """Each counter's 504 answers: the visit may have been counted."""
    problems: list[str] = field(default_factory=list)
    outage_began: float = inf
    store_back: float = inf
    last_failure: float = -inf
    acknowledged_after_recovery: int = 0

    def record(self, request: Request, response: httpx2.Response, answered: float) -> None:
        status = response.status_code
        self.statuses[request.name, status] += 1
        if status == 200 and request.counter is not None:
            value = response.json()[request.value_field]
            self.acknowledged.setdefault(request.counter, []).append(value)
            if answered > self.store_back + RECOVERY_SECONDS:
                self.acknowledged_after_recovery += 1
        if status == 504 and request.counter is not None:
            self.unconfirmed[request.counter] += 1
        if status == request.answer:
            return
        if status in request.outage_answers:
            self.last_failure = max(self.last_failure, answered)
        if status not in request.outage_answers:
            self.problems.append(f"{request.name}: unexpected {status} {response.text[:200]}")
        elif not self.outage_began <= answered <= self.store_back + RECOVERY_SECONDS:
            self.problems.append(f"{request.name}: {status} while Redis was up")
        elif not response.headers.get("content-type", "").startswith("application/json"):
            self.problems.append(f"{request.name}: {status} without a JSON body")
        elif not isinstance(response.json().get("detail"), str):
            self.problems.append(f"{request.name}: {status} without a detail: {response.text}")
        elif status == 503 and response.headers.get("retry-after") != "1":
            self.problems.append(f"{request.name}: 503 without Retry-After")


async def send_mix(
    client: httpx2.AsyncClient, mix: Iterator[Request], outcome: Outcome, *, seconds: float
) -> None:
    """CLIENTS clients send requests from `mix` for `seconds`, at RATE a second at most."""
    until = time.monotonic() + seconds
    interval = CLIENTS / RATE

    async def one_client() -> None:
        due = time.monotonic()
        while time.monotonic() < until:
            request = next(mix)
            try:
                response = await client.request(
                    request.method, request.path, content=request.content
                )
            except httpx2.TransportError as error:
                outcome.problems.append(f"{request.name}: {type(error).__name__} {error}")
            else:
                outcome.record(request, response, time.monotonic())
            due += interval
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            else:
                due = time.monotonic()  # behind: carry on at the rate, without a burst

    await asyncio.gather(*(one_client() for _ in range(CLIENTS)))


def worker_rss_mib(server: Server) -> dict[int, float]:
    return {worker.pid: worker.memory_info().rss / MIB for worker in server.workers()}


def mib(rss: dict[int, float]) -> str:
    return " / ".join(f"{rss[pid]:.1f}" for pid in sorted(rss)) + " MiB"


@dataclass
class Soak:
    outcome: Outcome
    rss_before: dict[int, float]
    rss_after: dict[int, float]


async def soak(server: Server, redis: RedisServer) -> Soak:
    """Warm up, note the workers' memory, then load the server while Redis crashes and returns."""
    outcome = Outcome()
    mix = itertools.cycle(MIX)
    limits = httpx2.Limits(max_connections=CLIENTS)
    async with httpx2.AsyncClient(
        base_url=server.url, limits=limits, timeout=10, headers=AS_BROWSER
    ) as client:
        await send_mix(client, mix, outcome, seconds=WARM_UP_SECONDS)
        rss_before = worker_rss_mib(server)
        load = asyncio.ensure_future(send_mix(client, mix, outcome, seconds=LOAD_SECONDS))
        await asyncio.sleep(OUTAGE_AFTER)
        outcome.outage_began = time.monotonic()
        await asyncio.to_thread(redis.kill)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(redis.start)
        outcome.store_back = time.monotonic()
        await load
    return Soak(outcome, rss_before, worker_rss_mib(server))


async def stored_values(url: str) -> dict[CounterId, int]:
    store = await open_store(url, wait_limit=5.0)
    try:
        return {counter: await store.value(counter) for counter in COUNTERS}
    finally:
        await store.close()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis that keeps every acknowledged write across a crash (AOF, fsync always)."""
    with redis_server(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always") as rs:
        yield rs


def test_mixed_traffic_through_a_redis_crash_loses_nothing_and_leaks_nothing(
    durable_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through a Redis crash under mixed traffic: no acknowledged visit lost, only documented
    JSON 503/504 failures while Redis is away, recovery without a restart, flat worker memory."""
    with running_server(
        "--workers", "2",
        "--store", durable_redis.url,
        "--store-timeout", str(STORE_TIMEOUT),
        "--max-body-size", str(MAX_BODY_SIZE),
        "--rate-limit-hits", "0",  # a few clients make all the traffic: no limit to spend
    ) as server:  # fmt: skip
        workers_before = {worker.pid for worker in server.workers()}
        result = asyncio.run(soak(server, durable_redis))
        assert httpx2.get(f"{server.url}/readyz").status_code == 200
        assert {worker.pid for worker in server.workers()} == workers_before
        stored = asyncio.run(stored_values(durable_redis.url))

    outcome = result.outcome
    with capsys.disabled():  # the figures show in every run's output, passed or failed
        print(
            f"\nsoak: {outcome.statuses.total()} requests, the last failure "
            f"{outcome.last_failure - outcome.store_back:.2f} s after Redis was back; "
            f"worker RSS before {mib(result.rss_before)}, after {mib(result.rss_after)} "
            f"(allowed growth {RSS_GROWTH_LIMIT_MIB:g} MiB); answers by request: "
            + ", ".join(
                f"{name} {status}: {n}" for (name, status), n in sorted(outcome.statuses.items())
            )
        )
    assert outcome.problems == []
    assert outcome.statuses["visit", 503] > 0, "the outage was not seen"
    assert outcome.acknowledged_after_recovery > 0, "nothing acknowledged after recovery"
    for counter in COUNTERS:
        values = outcome.acknowledged[counter]
        assert len(set(values)) == len(values), counter
        assert len(values) <= stored[counter] <= len(values) + outcome.unconfirmed[counter]
    assert result.rss_after.keys() == result.rss_before.keys()
    for pid, before in result.rss_before.items():
        assert result.rss_after[pid] - before < RSS_GROWTH_LIMIT_MIB, (pid, before)
