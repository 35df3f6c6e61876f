"""The bucket arithmetic: bursts, refills and the RateLimit fields, at times given exactly."""

from visit_tracker.rate_limits.gcra import MICROSECONDS, Decision, Quota, admit, decide

NOW = 1_790_000_000 * MICROSECONDS


def requests(quota: Quota, *, at: list[int], tat: int | None = None) -> list[Decision]:
    """The decisions for requests at those times on one bucket."""
    decisions = []
    for now in at:
        allowed, tat = admit(tat, now=now, quota=quota)
        decisions.append(decide(allowed=allowed, tat=tat, now=now, quota=quota))
    return decisions


def test_a_full_bucket_allows_its_burst_at_once_then_refuses() -> None:
    """Three requests at one instant pass a burst of 3 with 2, 1, 0 left; the fourth is refused."""
    decisions = requests(Quota(rate=1, burst=3), at=[NOW] * 4)
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[3].retry_after == 1


def test_tokens_come_back_at_the_rate() -> None:
    """After the burst, one request passes per interval (here 0.5 s), not more."""
    half_second = MICROSECONDS // 2
    times = [NOW, NOW, NOW + half_second, NOW + half_second, NOW + 2 * half_second]
    decisions = requests(Quota(rate=2, burst=2), at=times)
    assert [d.allowed for d in decisions] == [True, True, True, False, True]


def test_a_refused_request_takes_nothing() -> None:
    """Refusals do not push the next allowed request further away."""
    quota = Quota(rate=1, burst=1)
    times = [NOW, *[NOW + 1000 * n for n in range(1, 50)], NOW + MICROSECONDS]
    decisions = requests(quota, at=times)
    assert decisions[0].allowed
    assert not any(d.allowed for d in decisions[1:-1])
    assert decisions[-1].allowed


def test_an_idle_bucket_fills_up_to_its_burst_and_no_further() -> None:
    """However long a bucket waits, it holds no more than its burst."""
    quota = Quota(rate=10, burst=5)
    _, tat = admit(None, now=NOW, quota=quota)
    later = NOW + 3600 * MICROSECONDS
    decisions = requests(quota, at=[later] * 6, tat=tat)
    assert [d.allowed for d in decisions] == [True] * 5 + [False]


def test_the_fields_follow_draft_06() -> None:
    """Limit is the burst, Remaining the tokens left, Reset the seconds until full, Policy the
    burst per refill window; Retry-After appears on a refusal only."""
    quota = Quota(rate=10, burst=60)
    first = requests(quota, at=[NOW])[0]
    assert first.fields() == [
        ("RateLimit-Limit", "60"),
        ("RateLimit-Remaining", "59"),
        ("RateLimit-Reset", "1"),
        ("RateLimit-Policy", "60;w=6"),
    ]
    refused = requests(Quota(rate=0.25, burst=1), at=[NOW, NOW + MICROSECONDS])[1]
    assert dict(refused.fields()) == {
        "RateLimit-Limit": "1",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3",
        "RateLimit-Policy": "1;w=4",
        "Retry-After": "3",
    }
