"""The token bucket, kept as one number: GCRA's theoretical arrival time. No I/O here.

A client's bucket holds up to `burst` tokens and gains `rate` tokens a second; each request
takes one, and a request that finds the bucket empty is refused. Instead of a token count and
the time it was counted, GCRA (the Generic Cell Rate Algorithm) keeps one number: the time at
which the bucket will be full again, its *theoretical arrival time* (TAT). A bucket whose TAT has
passed is full, so it need not be kept at all: an absent bucket and a full one are the same,
which lets stores forget buckets when their TAT passes (a Redis key's expiry, a map's pruning).

Every time is an integer count of microseconds of the wall clock, so that this module and the
Lua script of the Redis buckets compute exactly the same thing.

The answer's fields follow draft-ietf-httpapi-ratelimit-headers-06 ("RateLimit Fields for
HTTP", December 2022, https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-06):
`RateLimit-Limit` is the burst, `RateLimit-Remaining` the tokens left, `RateLimit-Reset` the
seconds until the bucket is full again, and `RateLimit-Policy: {burst};w={window}` says that
`burst` requests may be made per window, the seconds an empty bucket takes to fill. A refusal
adds `Retry-After`: the seconds until the next token.
"""

from dataclasses import dataclass

MICROSECONDS = 1_000_000


def _seconds_up(microseconds: int) -> int:
    """Whole seconds, rounded up: a client that waits that long is never early."""
    return -(-microseconds // MICROSECONDS)


@dataclass(frozen=True, slots=True)
class Quota:
    """What one client may do in one route class: `rate` requests a second, `burst` at once."""

    rate: float
    burst: int

    @property
    def interval(self) -> int:
        """Microseconds one token takes to come back."""
        return max(1, round(MICROSECONDS / self.rate))

    @property
    def capacity(self) -> int:
        """Microseconds an empty bucket takes to fill."""
        return self.burst * self.interval


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may go ahead, and what the client is told about its bucket."""

    allowed: bool
    limit: int
    remaining: int
    reset: int
    """Seconds until the bucket is full again."""
    window: int
    """Seconds an empty bucket takes to fill."""
    retry_after: int
    """Seconds until the next request would be allowed; 0 when this one is."""

    def fields(self) -> list[tuple[str, str]]:
        """The response header fields that tell the client about its bucket."""
        fields = [
            ("RateLimit-Limit", str(self.limit)),
            ("RateLimit-Remaining", str(self.remaining)),
            ("RateLimit-Reset", str(self.reset)),
            ("RateLimit-Policy", f"{self.limit};w={self.window}"),
        ]
        if not self.allowed:
            fields.append(("Retry-After", str(self.retry_after)))
        return fields


def admit(tat: int | None, *, now: int, quota: Quota) -> tuple[bool, int]:
    """Whether a request at `now` may go ahead, and the bucket's TAT after it.

    `tat` is the bucket's TAT, or None for a bucket never used or forgotten (a full one). A
    refused request leaves the bucket as it was.
    """
    start = now if tat is None or tat < now else tat
    after = start + quota.interval
    if after - now > quota.capacity:
        return False, start
    return True, after


def decide(*, allowed: bool, tat: int, now: int, quota: Quota) -> Decision:
    """The decision for a request at `now` that `admit` answered with (`allowed`, `tat`)."""
    owed = max(0, tat - now)  # microseconds until full: the tokens missing, as time
    return Decision(
        allowed=allowed,
        limit=quota.burst,
        remaining=(quota.capacity - owed) // quota.interval,
        reset=_seconds_up(owed),
        window=_seconds_up(quota.capacity),
        retry_after=0 if allowed else _seconds_up(owed + quota.interval - quota.capacity),
    )
