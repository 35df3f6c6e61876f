"""What the limiter needs of a place that keeps buckets: the small `Buckets` protocol."""

from typing import Protocol

from visit_tracker.rate_limits.gcra import Decision, Quota


class BucketsUnavailable(Exception):
    """The buckets could not be reached in time; nothing is known of the bucket asked for."""


class Buckets(Protocol):
    """Where buckets live: `LocalBuckets` (this process) or `RedisBuckets` (shared)."""

    async def secret(self) -> bytes:
        """The key of the hash that names buckets (see `clients.bucket_name`)."""
        ...

    async def take(self, bucket: str, *, quota: Quota, now: int) -> Decision:
        """Take a token from `bucket` at `now` (microseconds) if it has one; the decision."""
        ...

    async def close(self) -> None: ...
