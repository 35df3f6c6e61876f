"""What the rate-limit tests ask of a limiter."""

from visit_tracker.rate_limits import RateLimiter, RouteClass

CLIENT = ("203.0.113.7", 50000)


async def allowed(limiter: RateLimiter, kind: RouteClass, client: tuple[str, int] = CLIENT) -> bool:
    """Whether the limiter lets this request through; it must know (not fail open)."""
    decision = await limiter.check(kind, client)
    assert decision is not None
    return decision.allowed
