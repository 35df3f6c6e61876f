"""Buckets in this process's memory, bounded however many clients come.

Buckets are kept in least-recently-used order. A bucket that is full again (its TAT has passed)
is the same as no bucket, so full ones are dropped from the old end as requests come; and
beyond `max_buckets` the least recently used is dropped even if not full, which at worst hands
a client that has been quiet the longest a full bucket early. A flood of requests from ever new
addresses costs a bounded amount of memory and no sweep: each bucket is dropped once at most,
so the pruning costs a request O(1) on average.
"""

import secrets
from collections import OrderedDict

from visit_tracker.rate_limits.clients import SECRET_BYTES
from visit_tracker.rate_limits.gcra import Decision, Quota, admit, decide

MAX_BUCKETS = 50_000
"""About 11 MB when full: a bucket's name, its TAT and the map's links take about 210 bytes."""


class LocalBuckets:
    """Buckets of this process alone: with several workers, each worker limits on its own."""

    def __init__(self, *, max_buckets: int = MAX_BUCKETS) -> None:
        self._tats: OrderedDict[str, int] = OrderedDict()
        self._max_buckets = max_buckets
        self._secret = secrets.token_bytes(SECRET_BYTES)

    def __len__(self) -> int:
        return len(self._tats)

    async def secret(self) -> bytes:
        """This process's key for bucket names, random and never written anywhere."""
        return self._secret

    async def take(self, bucket: str, *, quota: Quota, now: int) -> Decision:
        """Take a token from `bucket` at `now` if it has one; the decision either way."""
        tats = self._tats
        allowed, tat = admit(tats.pop(bucket, None), now=now, quota=quota)
        if tat > now:
            tats[bucket] = tat  # the most recently used end
        while tats:
            oldest, oldest_tat = next(iter(tats.items()))
            if oldest_tat > now and len(tats) <= self._max_buckets:
                break
            del tats[oldest]
        return decide(allowed=allowed, tat=tat, now=now, quota=quota)

    async def close(self) -> None:
        self._tats.clear()
