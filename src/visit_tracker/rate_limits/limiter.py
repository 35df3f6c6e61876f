"""The rate limiter: which route classes are limited, how much, and where the buckets live.

Each route belongs to one class (`RouteClass`), and each class has its own quota per client,
set by the `VISIT_TRACKER_RATE_LIMIT_*` settings (a rate of 0 turns a class off). The buckets
live in this process (`LocalBuckets`) or in Redis (`RedisBuckets`), shared by every instance.

When the Redis of the buckets fails, requests go ahead unlimited (fail open): a counter that
turns visitors away because its rate limiter is unreachable loses the visits it exists to
count, while going unlimited for a while costs at most some load. The limiter says so in the
log once when Redis fails and once when it answers again.
"""

import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from enum import StrEnum
from urllib.parse import urlsplit

from visit_tracker.metrics import Metrics
from visit_tracker.rate_limits.base import Buckets, BucketsUnavailable
from visit_tracker.rate_limits.clients import bucket_name, client_address
from visit_tracker.rate_limits.gcra import Decision, Quota
from visit_tracker.rate_limits.local import LocalBuckets
from visit_tracker.settings import Settings
from visit_tracker.stores import REDIS_SCHEMES

logger = logging.getLogger("visit_tracker")


class RouteClass(StrEnum):
    """The kinds of route a client is limited on separately."""

    VISIT = "visit"
    """`POST /visit`, `GET /stats`: the original contract."""
    HITS = "hits"
    """Routes that count a hit on a named counter."""
    READS = "reads"
    """Routes that read named counters."""
    ADMIN = "admin"
    """Routes that create, set or delete named counters."""


def quotas(settings: Settings) -> dict[RouteClass, Quota]:
    """Each limited class's quota; a class whose rate is 0 is left out."""
    configured = {
        RouteClass.VISIT: (settings.rate_limit_visit, settings.rate_limit_visit_burst),
        RouteClass.HITS: (settings.rate_limit_hits, settings.rate_limit_hits_burst),
        RouteClass.READS: (settings.rate_limit_reads, settings.rate_limit_reads_burst),
        RouteClass.ADMIN: (settings.rate_limit_admin, settings.rate_limit_admin_burst),
    }
    return {kind: Quota(rate, burst) for kind, (rate, burst) in configured.items() if rate > 0}


def buckets_url(settings: Settings) -> str:
    """Where the buckets live: `auto` is the store's Redis if it is one, else this process."""
    if settings.rate_limit_store != "auto":
        return settings.rate_limit_store
    return settings.store if urlsplit(settings.store).scheme in REDIS_SCHEMES else "memory://"


class RateLimiter:
    """Decides, per client and route class, whether a request may go ahead."""

    def __init__(
        self, quotas: Mapping[RouteClass, Quota], buckets: Buckets, *, metrics: Metrics
    ) -> None:
        self._quotas = dict(quotas)
        self._buckets = buckets
        self._metrics = metrics
        self._failing = False
        metrics.rate_limits_on(self._quotas)

    @classmethod
    @asynccontextmanager
    async def running(cls, settings: Settings, *, metrics: Metrics) -> AsyncIterator["RateLimiter"]:
        """The limiter these settings describe; its connections are closed on exit."""
        limits = quotas(settings)
        url = buckets_url(settings)
        buckets: Buckets
        if limits and urlsplit(url).scheme in REDIS_SCHEMES:
            # Imported only when used, as the Redis store is: the driver weighs on every worker.
            from visit_tracker.rate_limits.redis import RedisBuckets  # noqa: PLC0415

            buckets = RedisBuckets.open(url)
        else:
            buckets = LocalBuckets()
        try:
            yield cls(limits, buckets, metrics=metrics)
        finally:
            await buckets.close()

    async def check(
        self, route_class: RouteClass, client: Sequence[object] | None
    ) -> Decision | None:
        """Take a token from the bucket of this class and client (the ASGI scope's `client`).

        None when the class is not limited, or when the buckets cannot be reached: the request
        goes ahead and nothing is known to tell the client. A refusal is counted in the metrics.
        """
        quota = self._quotas.get(route_class)
        if quota is None:
            return None
        try:
            secret = await self._buckets.secret()
            name = bucket_name(route_class, client_address(client), secret=secret)
            decision = await self._buckets.take(name, quota=quota, now=time.time_ns() // 1000)
        except BucketsUnavailable as error:
            if not self._failing:
                self._failing = True
                logger.warning("rate limits are off until their Redis answers: %s", error)
            return None
        if self._failing:
            self._failing = False
            logger.warning("rate limits are on again: their Redis answers")
        if not decision.allowed:
            self._metrics.rate_limit_refused(route_class)
        return decision
