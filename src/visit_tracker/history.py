"""Visit history: the buckets a series is made of, the ranges a client may ask for, and what a
page or a referrer may hold once no personal data is left in it.

Stores keep hits per UTC hour and pages and referrers per UTC day; a day's hits are the sum of
its hours. Times are Unix milliseconds throughout.
"""

import re
from collections.abc import Sequence
from typing import Literal

from visit_tracker.stores.base import DAY_MS, HOUR_MS, day_of, hour_of

Interval = Literal["hour", "day"]

INTERVAL_MS: dict[Interval, int] = {"hour": HOUR_MS, "day": DAY_MS}

MOST_BUCKETS: dict[Interval, int] = {"hour": 31 * 24, "day": 400}
"""The most buckets one series may have: 31 days of hours, 400 days of days."""

DEFAULT_BUCKETS: dict[Interval, int] = {"hour": 48, "day": 30}
"""The buckets of a series whose start is not given: the last 48 hours, the last 30 days."""

DEFAULT_TOP_DAYS = 30
"""The days of top pages and referrers whose start is not given."""

LONGEST_VIEW = 512
"""The most characters a page or a referrer may have."""


def bucket_of(interval: Interval, unix_ms: int) -> int:
    """The start of the hour or UTC day `unix_ms` falls in."""
    return hour_of(unix_ms) if interval == "hour" else day_of(unix_ms)


def bucket_starts(interval: Interval, *, start_ms: int, end_ms: int) -> range:
    """The starts of the buckets that overlap [start_ms, end_ms)."""
    return range(bucket_of(interval, start_ms), end_ms, INTERVAL_MS[interval])


def filled(
    interval: Interval, hours: Sequence[tuple[int, int]], *, start_ms: int, end_ms: int
) -> list[tuple[int, int]]:
    """Every bucket overlapping [start_ms, end_ms) with its hits, empty ones included, from the
    hourly buckets that hold hits."""
    totals = dict.fromkeys(bucket_starts(interval, start_ms=start_ms, end_ms=end_ms), 0)
    for hour, hits in hours:
        bucket = bucket_of(interval, hour)
        if bucket in totals:
            totals[bucket] += hits
    return list(totals.items())


def purge_before(now_ms: int, *, history_days: int) -> int:
    """Where history starts that is kept `history_days` full days besides today."""
    return day_of(now_ms) - history_days * DAY_MS


PAGE_PATTERN = r"^/([^/\x00-\x20\x7f][^\x00-\x20\x7f]*)?$"
"""A page: a path of one '/' and visible characters (no spaces, no control characters)."""

REFERRER_PATTERN = (
    r"^([Hh][Tt][Tt][Pp][Ss]?)://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
    r"([/?#][^\x00-\x20\x7f]*)?$"
)
"""A referrer: an http or https URL of a host name or address, with no user name or password,
and visible characters only."""


def clean_page(page: str) -> str:
    """The page's path without its query string or fragment, which can carry personal data;
    ValueError unless it is a path (`/…`) of visible characters."""
    if not re.fullmatch(PAGE_PATTERN, page):
        raise ValueError(
            "a page is the path of a URL, starting with one '/', with no spaces or control "
            "characters, as in /blog/post"
        )
    return page.split("#", 1)[0].split("?", 1)[0]


def clean_referrer(referrer: str) -> str:
    """The referring URL's origin and path only: no query string or fragment, which can carry
    personal data; ValueError unless it is an http or https URL of visible characters."""
    parts = re.fullmatch(REFERRER_PATTERN, referrer)
    if parts is None:
        raise ValueError(
            "a referrer is an http or https URL with no user name, spaces or control "
            "characters, as in https://example.com/page"
        )
    scheme, host, port, rest = parts.groups()
    path = (rest or "").split("#", 1)[0].split("?", 1)[0]
    return f"{scheme.lower()}://{host.lower()}{port or ''}{path or '/'}"
