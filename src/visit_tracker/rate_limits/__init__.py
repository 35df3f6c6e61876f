"""Per-client rate limits: a token bucket per client and route class, in this process or Redis.

gcra.py     the bucket arithmetic (no I/O) and the draft-06 RateLimit fields of a decision
clients.py  a request's bucket: a keyed hash of its client's address, never the address
base.py     the `Buckets` protocol
local.py    buckets in this process, bounded in number
redis.py    buckets in Redis, shared by every instance (imported only when used)
limiter.py  route classes, quotas from the settings, failing open when Redis fails
"""

from visit_tracker.rate_limits.gcra import Decision, Quota
from visit_tracker.rate_limits.limiter import RateLimiter, RouteClass

__all__ = ["Decision", "Quota", "RateLimiter", "RouteClass"]
