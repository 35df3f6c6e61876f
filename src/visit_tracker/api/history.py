"""A named counter's history: its hits per hour or day, its top pages and referrers.

Times in and out are ISO-8601; a time without a zone is UTC. A series lists every bucket of its
range, empty ones included, so that a chart needs no gap filling; a range too long to answer in
one go is a 422 that says how long it may be.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, Field

from visit_tracker.api.counters import Key, Namespace
from visit_tracker.api.deps import TrackerDep
from visit_tracker.api.rate_limits import READS
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import BODY_TOO_LARGE, NOT_FOUND, RATE_LIMITED, STORE_UNAVAILABLE
from visit_tracker.api.visits import utc_timestamp
from visit_tracker.history import (
    DEFAULT_BUCKETS,
    DEFAULT_TOP_DAYS,
    INTERVAL_MS,
    MOST_BUCKETS,
    Interval,
    bucket_starts,
)
from visit_tracker.stores import CounterId
from visit_tracker.stores.base import now_ms

router = Router(
    prefix="/v1/counters",
    tags=["history"],
    dependencies=[READS],
    responses={**BODY_TOO_LARGE, **NOT_FOUND, **STORE_UNAVAILABLE, **RATE_LIMITED},
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Times are asked for between EPOCH and LATEST: every bucket of such a range has a date."""

LARGEST_TOP = 100


class Bucket(BaseModel):
    start: str = Field(
        description="The hour's or UTC day's start: UTC, ISO-8601.",
        examples=["2025-07-22T01:00:00.000Z"],
    )
    hits: int = Field(description="Hits counted in it.", examples=[42])
    visitors: int = Field(
        description="Distinct visitors in it: exact below 100, else estimated within about 1 %.",
        examples=[17],
    )


class Series(BaseModel):
    namespace: str = Field(examples=["example.com"])
    key: str = Field(examples=["home"])
    interval: Interval
    buckets: list[Bucket] = Field(description="Every bucket of the range, in time order.")


class PageHits(BaseModel):
    page: str = Field(examples=["/blog/post"])
    hits: int = Field(examples=[42])


class ReferrerHits(BaseModel):
    referrer: str = Field(examples=["https://news.example.org/item"])
    hits: int = Field(examples=[7])


class TopViews(BaseModel):
    pages: list[PageHits] = Field(description="The most viewed pages, most hits first.")
    referrers: list[ReferrerHits] = Field(description="The most frequent referrers, most first.")


DATE_AND_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?([Zz]|[+-]\d{2}:?\d{2})?"
)
"""An ISO-8601 date and time; without a zone, UTC."""


def date_and_time(text: Any) -> Any:
    """The text if it is an ISO-8601 date and time: not a bare date, nor a number, which the
    framework would read as a Unix time."""
    if isinstance(text, str) and not DATE_AND_TIME.fullmatch(text):
        raise ValueError("must be an ISO-8601 date and time, as in 2026-03-01T10:00:00Z")
    return text


def time_parameter(description: str) -> Any:  # fastapi.Query() is typed as returning Any
    return Query(description=f"{description} ISO-8601; UTC if no zone is given.")


Start = Annotated[
    datetime | None, time_parameter("Where the range starts."), BeforeValidator(date_and_time)
]
End = Annotated[
    datetime | None,
    time_parameter("Where the range ends (excluded); now if not given."),
    BeforeValidator(date_and_time),
]


def invalid(field: str, message: str) -> RequestValidationError:
    """A 422 about one query parameter, shaped like the framework's own."""
    return RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error"}]
    )


def unix_ms(moment: datetime, field: str) -> int:
    """The moment in Unix milliseconds; a 422 if it is outside the times a range may cover."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not EPOCH <= moment <= LATEST:
        raise invalid(field, f"must be between {EPOCH:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return (moment - EPOCH) // timedelta(milliseconds=1)


def time_range(
    start: datetime | None, end: datetime | None, *, interval: Interval, default_buckets: int
) -> tuple[int, int]:
    """[start, end) in Unix ms: by default the `default_buckets` buckets up to and including
    the current one; a 422 if it is empty or longer than a series may be."""
    width = INTERVAL_MS[interval]
    end_ms = unix_ms(end, "end") if end else now_ms() // width * width + width
    start_ms = unix_ms(start, "start") if start else max(end_ms - default_buckets * width, 0)
    buckets = len(bucket_starts(interval, start_ms=start_ms, end_ms=end_ms))
    if end_ms <= start_ms:
        raise invalid("end", "must be after start")
    if buckets > MOST_BUCKETS[interval]:
        raise invalid(
            "start",
            f"the range holds {buckets} {interval}s; one answer covers at most "
            f"{MOST_BUCKETS[interval]}",
        )
    return start_ms, end_ms


@router.get("/{namespace}/{key}/series")
async def series(
    namespace: Namespace,
    key: Key,
    tracker: TrackerDep,
    *,
    start: Start = None,
    end: End = None,
    interval: Annotated[
        Interval,
        Query(
            description="Buckets of an hour (up to 31 days of them; the last 48 hours by "
            "default) or of a UTC day (up to 400; the last 30 days by default)."
        ),
    ] = "hour",
) -> Series:
    """A counter's hits and unique visitors per hour or per UTC day over a range, every bucket
    listed, empty ones included."""
    start_ms, end_ms = time_range(
        start, end, interval=interval, default_buckets=DEFAULT_BUCKETS[interval]
    )
    buckets = await tracker.series(
        CounterId(namespace, key), interval=interval, start_ms=start_ms, end_ms=end_ms
    )
    return Series(
        namespace=namespace,
        key=key,
        interval=interval,
        buckets=[
            Bucket(start=_timestamp(bucket), hits=hits, visitors=visitors)
            for bucket, hits, visitors in buckets
        ],
    )


@router.get("/{namespace}/{key}/pages")
async def pages(
    namespace: Namespace,
    key: Key,
    tracker: TrackerDep,
    *,
    start: Start = None,
    end: End = None,
    limit: Annotated[
        int, Query(ge=1, le=LARGEST_TOP, description="Pages, and referrers, to list.")
    ] = 10,
) -> TopViews:
    """A counter's most viewed pages and most frequent referrers over the UTC days of a range
    (up to 400; the last 30 days by default), as the hits that sent them counted them."""
    start_ms, end_ms = time_range(start, end, interval="day", default_buckets=DEFAULT_TOP_DAYS)
    top_pages, top_referrers = await tracker.top_views(
        CounterId(namespace, key), start_ms=start_ms, end_ms=end_ms, limit=limit
    )
    return TopViews(
        pages=[PageHits(page=page, hits=hits) for page, hits in top_pages],
        referrers=[ReferrerHits(referrer=referrer, hits=hits) for referrer, hits in top_referrers],
    )


def _timestamp(unix_ms: int) -> str:
    return utc_timestamp(EPOCH + timedelta(milliseconds=unix_ms))
