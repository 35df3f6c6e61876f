"""Buckets in Redis (or Redis Cluster), shared by every instance that uses the same Redis.

Keys, under the URL's `?prefix=` (default `visit-tracker`):

    {prefix}:rate-limit:secret            the random key of bucket names: made by the first
                                          instance (SET NX), read by the others, so that every
                                          instance names a client's bucket alike
    {prefix}:rate-limit:{class}:{hash}    one bucket's TAT (see `gcra`), which expires when the
                                          bucket is full again

So Redis holds the buckets of the clients of the last few seconds, never an address. Instances
read the secret again every minute, so that they agree again soon after Redis lost it.

Taking a token is one Lua script, atomic however many instances ask at once. The time comes
from the instance that asks: instances whose clocks differ by `d` seconds may grant a client
up to `d * rate` more requests, so keep their clocks synchronised (NTP), as usual.

Failures: every call gives up after `TIMEOUT` seconds and raises `BucketsUnavailable`, and for
`PAUSE` seconds after a failure calls raise it at once rather than wait on a Redis that is
likely still away. The limiter then lets requests through (see `limiter`).
"""

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from visit_tracker.rate_limits.base import BucketsUnavailable
from visit_tracker.rate_limits.clients import SECRET_BYTES
from visit_tracker.rate_limits.gcra import Decision, Quota, decide
from visit_tracker.stores.redis import parse_redis_url

TIMEOUT = 0.5
"""Seconds one call may take: a Redis near the instances answers in a millisecond, and a
request should not wait long on its rate limit."""
PAUSE = 1.0
"""Seconds after a failure during which calls fail at once."""
SECRET_REFRESH = 60.0
"""Seconds between two readings of the shared secret."""
CONNECTIONS = 32
"""Connections one process keeps to a single Redis server at most."""

TAKE = """
-- KEYS[1]: the bucket. ARGV: now, interval, capacity, in integer microseconds (see gcra.py).
-- Returns {1 if allowed else 0, the TAT afterwards}. Numbers are written with %d: Lua's own
-- formatting would round microseconds since 1970 to 14 digits.
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local after = tat + interval
if after - now > capacity then
    return {0, string.format('%d', tat)}
end
redis.call('SET', KEYS[1], string.format('%d', after), 'PX', math.ceil((after - now) / 1000))
return {1, string.format('%d', after)}
"""

MAKE_OR_READ_KEY = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""


class RedisBuckets:
    """Buckets every instance on the same Redis and prefix shares."""

    def __init__(
        self, client: "Redis | RedisCluster", *, prefix: str, where: str, pause: float = PAUSE
    ) -> None:
        self._client = client
        self._pause = pause
        self._prefix = f"{prefix}:rate-limit"
        self.where = where
        self._take = client.register_script(TAKE)
        self._secret: bytes | None = None
        self._secret_read_at = 0.0
        self._paused_until = 0.0

    @classmethod
    def open(cls, url: str, *, pause: float = PAUSE) -> "RedisBuckets":
        """Buckets on the Redis a (checked) URL names; connections are made when first needed,
        so that a Redis that is away at start only means requests go unlimited meanwhile."""
        location = parse_redis_url(url)
        options: dict[str, Any] = {
            "socket_timeout": TIMEOUT,
            "socket_connect_timeout": TIMEOUT,
            # A retried script would take a second token; a failed one lets the request go.
            "retry": Retry(NoBackoff(), retries=0),
        }
        client: Redis | RedisCluster
        if location.cluster:
            client = RedisCluster.from_url(location.server_url, **options)
        else:
            pool = BlockingConnectionPool.from_url(
                location.server_url, max_connections=CONNECTIONS, timeout=TIMEOUT, **options
            )
            client = Redis.from_pool(pool)  # closes the pool when closed
        return cls(client, prefix=location.prefix, where=location.where, pause=pause)

    async def secret(self) -> bytes:
        """The key of bucket names that every instance on this Redis shares."""
        now = asyncio.get_running_loop().time()
        if self._secret is None or now - self._secret_read_at > SECRET_REFRESH:
            key = f"{self._prefix}:secret"
            fresh = secrets.token_hex(SECRET_BYTES)
            self._secret = await self._call(
                lambda: self._client.eval(MAKE_OR_READ_KEY, 1, key, fresh)
            )
            self._secret_read_at = now
        return self._secret

    async def take(self, bucket: str, *, quota: Quota, now: int) -> Decision:
        """Take a token from `bucket` at `now` if it has one; the decision either way."""
        key = f"{self._prefix}:{bucket}"
        allowed, tat = await self._call(
            lambda: self._take(keys=[key], args=[now, quota.interval, quota.capacity])
        )
        return decide(allowed=bool(allowed), tat=int(tat), now=now, quota=quota)

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Run a command within `TIMEOUT`, or fail at once while paused after a failure."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._paused_until:
            raise BucketsUnavailable(f"Redis {self.where} failed less than {self._pause:g} s ago")
        try:
            async with asyncio.timeout(TIMEOUT):
                return await command()
        except (RedisError, OSError, TimeoutError) as error:
            self._paused_until = loop.time() + self._pause
            reason = str(error) or f"no answer in {TIMEOUT:g} s"
            raise BucketsUnavailable(f"Redis {self.where}: {reason}") from error
