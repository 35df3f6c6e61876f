"""Buckets in one process: refilled by the clock, and bounded however many clients come."""

from datetime import UTC, datetime

import pytest
from time_machine import TimeMachineFixture

from tests.rate_limits.checks import allowed
from visit_tracker.metrics import Metrics
from visit_tracker.rate_limits import Quota, RateLimiter, RouteClass
from visit_tracker.rate_limits.gcra import MICROSECONDS
from visit_tracker.rate_limits.local import LocalBuckets

pytestmark = pytest.mark.anyio

START = datetime(2026, 11, 28, 12, tzinfo=UTC)
NOW = int(START.timestamp()) * MICROSECONDS
ONE_A_SECOND = Quota(rate=1, burst=2)


async def test_a_client_gets_its_burst_then_one_request_a_second(
    time_machine: TimeMachineFixture,
) -> None:
    """With the clock stopped the burst is all there is; a second later one more request passes."""
    time_machine.move_to(START, tick=False)
    limiter = RateLimiter({RouteClass.HITS: ONE_A_SECOND}, LocalBuckets(), metrics=Metrics())
    client = ("203.0.113.7", 50000)
    assert [await allowed(limiter, RouteClass.HITS, client) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    time_machine.shift(1)
    assert [await allowed(limiter, RouteClass.HITS, client) for _ in range(2)] == [True, False]


async def test_clients_and_classes_have_buckets_of_their_own(
    time_machine: TimeMachineFixture,
) -> None:
    """One client's empty bucket refuses neither another client nor another class."""
    time_machine.move_to(START, tick=False)
    quotas = {RouteClass.HITS: Quota(rate=1, burst=1), RouteClass.READS: Quota(rate=1, burst=1)}
    limiter = RateLimiter(quotas, LocalBuckets(), metrics=Metrics())
    first, second = ("203.0.113.7", 1), ("203.0.113.8", 1)
    assert await allowed(limiter, RouteClass.HITS, first)
    assert not await allowed(limiter, RouteClass.HITS, first)
    assert await allowed(limiter, RouteClass.HITS, second)
    assert await allowed(limiter, RouteClass.READS, first)


async def test_a_class_with_no_quota_is_not_limited() -> None:
    """A class left out of the quotas (its rate set to 0) answers None: no limit, no fields."""
    limiter = RateLimiter({RouteClass.HITS: ONE_A_SECOND}, LocalBuckets(), metrics=Metrics())
    assert await limiter.check(RouteClass.VISIT, ("203.0.113.7", 1)) is None


async def test_a_flood_of_distinct_clients_keeps_at_most_max_buckets() -> None:
    """Ten thousand new addresses at once leave at most the configured number of buckets."""
    buckets = LocalBuckets(max_buckets=1000)
    for number in range(10_000):
        await buckets.take(f"hits:{number}", quota=ONE_A_SECOND, now=NOW)
        assert len(buckets) <= 1000
    assert len(buckets) == 1000


async def test_buckets_full_again_are_forgotten() -> None:
    """Once their window has passed, earlier buckets are dropped by the next request."""
    buckets = LocalBuckets()
    for number in range(500):
        await buckets.take(f"hits:{number}", quota=ONE_A_SECOND, now=NOW)
    assert len(buckets) == 500
    await buckets.take("hits:late", quota=ONE_A_SECOND, now=NOW + 2 * MICROSECONDS)
    assert len(buckets) == 1


async def test_the_least_recently_used_bucket_goes_first() -> None:
    """At the bound, a bucket just used stays and the one unused the longest is dropped."""
    buckets = LocalBuckets(max_buckets=2)
    busy = Quota(rate=1, burst=1)
    await buckets.take("hits:first", quota=busy, now=NOW)
    await buckets.take("hits:second", quota=busy, now=NOW)
    await buckets.take("hits:first", quota=busy, now=NOW)  # refused, but used
    await buckets.take("hits:third", quota=busy, now=NOW)  # pushes "second" out
    assert not (await buckets.take("hits:first", quota=busy, now=NOW)).allowed
    assert (await buckets.take("hits:second", quota=busy, now=NOW)).allowed
