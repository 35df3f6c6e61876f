"""Buckets in a real Redis: one limit across instances, no address stored, and failing open."""

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
import redis
from time_machine import TimeMachineFixture

from tests.rate_limits.checks import CLIENT, allowed
from tests.redis_servers import RedisServer, fresh_prefix, redis_server, shared_redis
from tests.server import free_port
from visit_tracker.metrics import Metrics
from visit_tracker.rate_limits import Quota, RateLimiter, RouteClass
from visit_tracker.rate_limits.redis import RedisBuckets

pytestmark = pytest.mark.anyio

HITS = {RouteClass.HITS: Quota(rate=1, burst=3)}


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A URL on the shared Redis with a key prefix of this test's own, its keys deleted after."""
    with fresh_prefix(shared_redis()) as url:
        yield url


@asynccontextmanager
async def limiter_on(url: str, *, pause: float = 1.0) -> AsyncIterator[RateLimiter]:
    buckets = RedisBuckets.open(url, pause=pause)
    try:
        yield RateLimiter(HITS, buckets, metrics=Metrics())
    finally:
        await buckets.close()


async def test_two_instances_on_one_redis_share_each_clients_bucket(redis_url: str) -> None:
    """Two limiters (two instances) on one Redis grant a client one burst between them."""
    async with limiter_on(redis_url) as first, limiter_on(redis_url) as second:
        assert await allowed(first, RouteClass.HITS)
        assert await allowed(second, RouteClass.HITS)
        assert await allowed(first, RouteClass.HITS)
        assert not await allowed(second, RouteClass.HITS)
        assert not await allowed(first, RouteClass.HITS)
        assert await allowed(second, RouteClass.HITS, ("203.0.113.8", 1))


async def test_a_bucket_in_redis_refills_with_the_clock(
    redis_url: str, time_machine: TimeMachineFixture
) -> None:
    """With the clock stopped the burst is all there is; a second later one more passes."""
    time_machine.move_to(datetime(2026, 11, 28, 12, tzinfo=UTC), tick=False)
    async with limiter_on(redis_url) as limiter:
        assert [await allowed(limiter, RouteClass.HITS) for _ in range(4)] == [True] * 3 + [False]
        time_machine.shift(1)
        assert [await allowed(limiter, RouteClass.HITS) for _ in range(2)] == [True, False]


async def test_redis_holds_hashes_that_expire_never_an_address(redis_url: str) -> None:
    """Besides the shared secret, Redis holds one key per bucket, named by a hash, which
    expires once the bucket would be full again."""
    async with limiter_on(redis_url) as limiter:
        await allowed(limiter, RouteClass.HITS)
    prefix = redis_url.split("prefix=")[1]
    with redis.Redis.from_url(shared_redis()) as client:
        keys = sorted(key.decode() for key in client.scan_iter(match=f"{prefix}:*"))
        assert len(keys) == 2
        secret_key, bucket_key = f"{prefix}:rate-limit:secret", keys[0]
        assert keys[1] == secret_key
        assert CLIENT[0] not in bucket_key
        assert bucket_key.startswith(f"{prefix}:rate-limit:hits:")
        assert 0 < client.pttl(bucket_key) <= 1000  # one token owed: full again within 1 s
        assert client.ttl(secret_key) == -1


async def test_an_unreachable_redis_lets_requests_through(caplog: pytest.LogCaptureFixture) -> None:
    """With no Redis listening, checks answer None (go ahead, unlimited), and say so once."""
    async with limiter_on(f"redis://127.0.0.1:{free_port()}/0") as limiter:
        with caplog.at_level(logging.WARNING, logger="visit_tracker"):
            for _ in range(5):
                assert await limiter.check(RouteClass.HITS, CLIENT) is None
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert warnings[0].startswith("rate limits are off until their Redis answers")


async def test_limits_come_back_with_redis(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis killed mid-way lets requests through; started again, the limits hold again."""
    with redis_server(tmp_path) as server:
        url = f"{server.url}?prefix=test-{uuid4().hex}"
        async with limiter_on(url, pause=0) as limiter:
            assert [await allowed(limiter, RouteClass.HITS) for _ in range(4)] == [True] * 3 + [
                False
            ]
            server.kill()
            with caplog.at_level(logging.WARNING, logger="visit_tracker"):
                assert await limiter.check(RouteClass.HITS, CLIENT) is None
                server.start()
                assert await allowed(limiter, RouteClass.HITS)
    assert [record.getMessage().split(":")[0] for record in caplog.records] == [
        "rate limits are off until their Redis answers",
        "rate limits are on again",
    ]


async def test_a_redis_cluster_shares_buckets_too(cluster_nodes: list[RedisServer]) -> None:
    """Two limiters on a Redis Cluster grant a client one burst between them."""
    url = f"redis+cluster://127.0.0.1:{cluster_nodes[0].port}?prefix=test-{uuid4().hex}"
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(limiter_on(url))
        second = await stack.enter_async_context(limiter_on(url))
        assert [await allowed(limiter, RouteClass.HITS) for limiter in (first, second, first)] == [
            True
        ] * 3
        assert not await allowed(second, RouteClass.HITS)
