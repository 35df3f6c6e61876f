"""Named counters under `/v1/counters/{namespace}/{key}`: one counter per page, site or thing.

Anyone may hit, read, list and create counters. Setting, deleting and re-keying one takes its
admin key — shown once, in the answer that created it — or the operator token, sent as
`Authorization: Bearer …`.
"""

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from starlette.datastructures import Headers

from visit_tracker.api.deps import TrackerDep, VisitorDep
from visit_tracker.api.rate_limits import ADMIN, HITS, READS
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import (
    BODY_TOO_LARGE,
    NEEDS_ADMIN,
    NOT_FOUND,
    RATE_LIMITED,
    STORE_UNAVAILABLE,
    STORE_UNCONFIRMED,
    UNREADABLE_BODY,
    ErrorBody,
    Responses,
)
from visit_tracker.api.visits import utc_timestamp
from visit_tracker.history import (
    LONGEST_VIEW,
    PAGE_PATTERN,
    REFERRER_PATTERN,
    clean_page,
    clean_referrer,
)
from visit_tracker.stores import CounterId, CounterRecord
from visit_tracker.stores.base import LARGEST_SET, LONGEST_WINDOW, NAME_PATTERN

router = Router(prefix="/v1/counters", tags=["counters"], responses=BODY_TOO_LARGE)

NAME_RULE = "1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-'"
PAGE_SIZE, LARGEST_PAGE = 50, 1000


def follows_name_rule(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"must be {NAME_RULE}")
    return name


def name_parameter(what: str) -> Any:  # fastapi.Path() is typed as returning Any
    return Path(
        description=f"The counter's {what}: {NAME_RULE}.",
        json_schema_extra={"pattern": f"^{NAME_PATTERN.pattern}$"},
    )


Namespace = Annotated[str, name_parameter("namespace"), AfterValidator(follows_name_rule)]
Key = Annotated[str, name_parameter("key"), AfterValidator(follows_name_rule)]

bearer = HTTPBearer(
    auto_error=False,
    description="The counter's admin key, or the operator token (VISIT_TRACKER_ADMIN_TOKEN).",
)


async def credential(
    authorization: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str | None:
    """The bearer token the request carries, if any."""
    return authorization.credentials if authorization else None


Credential = Annotated[str | None, Depends(credential)]

# Strict: a count in a body is a JSON integer, where pydantic would take true, "5" and 5.0 too.
# The descriptions say so: JSON Schema's `integer` takes 5.0 as well.
Value = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=LARGEST_SET,
        description="A count: a JSON integer from 0 to 2**53 - 1 (9007199254740991), not 5.0 "
        'or "5".',
    ),
]

Window = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=LONGEST_WINDOW,
        description="Count a visitor once per this many minutes, a JSON integer from 0 to "
        "1440: its other hits within them add nothing (a refresh, a reload). 0 counts every hit.",
        examples=[30],
    ),
]


Page = Annotated[
    str,
    Field(
        max_length=LONGEST_VIEW,
        description="The path of the page viewed, as in /blog/post. Its query string and "
        "fragment are dropped: they can carry personal data.",
        examples=["/blog/post"],
        json_schema_extra={"pattern": PAGE_PATTERN},
    ),
    AfterValidator(clean_page),
]
Referrer = Annotated[
    str,
    Field(
        max_length=LONGEST_VIEW,
        description="The http or https URL the visitor came from (`document.referrer`). Only "
        "its origin and path are kept: its query string can carry personal data.",
        examples=["https://news.example.org/item"],
        json_schema_extra={"pattern": REFERRER_PATTERN},
    ),
    AfterValidator(clean_referrer),
]


class HitDetails(BaseModel):
    """What is known of a hit besides its counter, kept per UTC day in the counter's history."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    page: Page | None = None
    referrer: Referrer | None = None

    @property
    def given(self) -> bool:
        """Whether they name a page or a referrer: `{}` names neither."""
        return self.page is not None or self.referrer is not None


class CounterValue(BaseModel):
    namespace: str = Field(examples=["example.com"])
    key: str = Field(examples=["home"])
    value: int = Field(
        description="The counter's value, this hit included; a known bot's hit is not counted "
        "in it (see `bot_hits`).",
        examples=[42],
    )


class Counter(BaseModel):
    namespace: str = Field(examples=["example.com"])
    key: str = Field(examples=["home"])
    value: int = Field(examples=[42])
    bot_hits: int = Field(
        description="Hits of known bots (by their User-Agent), which the value does not count.",
        examples=[7],
    )
    count_once_per: int = Field(
        description="Minutes within which a visitor's hits count once; 0 counts every hit.",
        examples=[30],
    )
    created_at: str = Field(
        description="When the counter was created (its first hit): UTC, ISO-8601.",
        examples=["2025-07-22T01:00:00.123Z"],
    )
    updated_at: str = Field(
        description="When it last changed: UTC, ISO-8601.", examples=["2025-07-22T01:00:00.123Z"]
    )
    owned: bool = Field(
        description="Whether the counter has an admin key. One that hits created has none "
        "until the operator claims it."
    )

    @classmethod
    def of(cls, record: CounterRecord) -> "Counter":
        return cls(
            namespace=record.counter.namespace,
            key=record.counter.key,
            value=record.value,
            bot_hits=record.bot_hits,
            count_once_per=record.count_once_per,
            created_at=_timestamp(record.created_at),
            updated_at=_timestamp(record.updated_at),
            owned=record.admin_key_hash is not None,
        )


class UniqueVisitors(BaseModel):
    today: int = Field(description="Distinct visitors today (UTC).", examples=[12])
    last_7_days: int = Field(
        description="Distinct visitors over the last 7 UTC days, today included; a visitor "
        "counts once per day it came.",
        examples=[70],
    )
    last_30_days: int = Field(description="The same over the last 30 UTC days.", examples=[301])


class CounterDetail(Counter):
    visitors: UniqueVisitors = Field(
        description="Unique visitors: exact below 100 a day, else estimated within about 1 %."
    )


class NewCounter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Value = Field(
        0,
        description="Where the count starts, a JSON integer: the count of a counter you move here.",
    )
    count_once_per: Window = 0


class CreatedCounter(Counter):
    admin_key: str = Field(
        description="The counter's admin key, shown this once: only its hash is kept. Send it "
        "as `Authorization: Bearer …` to set or delete the counter.",
        examples=["fW9sS1o1cE0xZk5aR3pQb3l0aHlYZ0hhV2tQc1l6cA"],
    )


def _one_or_both(schema: dict[str, Any]) -> None:
    """Make CounterChange's schema say what its validator checks: each field a number, never
    null, and at least one of them."""
    for field in schema["properties"].values():
        (number,) = [option for option in field.pop("anyOf") if option.get("type") != "null"]
        field.update(number)
        field.pop("default")
    schema["anyOf"] = [{"required": [name]} for name in schema["properties"]]


class CounterChange(BaseModel):
    """What to change of a counter: its value, its window, or both."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_or_both)

    value: Value | None = None
    count_once_per: Window | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> "CounterChange":
        if self.value is None and self.count_once_per is None:
            raise ValueError("give the value or count_once_per to set")
        return self


class ValueChange(BaseModel):
    old_value: int = Field(examples=[42])
    value: int = Field(examples=[0])


class AdminKey(BaseModel):
    admin_key: str = Field(
        description="The counter's new admin key, shown this once; the previous one no longer "
        "works.",
        examples=["fW9sS1o1cE0xZk5aR3pQb3l0aHlYZ0hhV2tQc1l6cA"],
    )


class CounterPage(BaseModel):
    counters: list[Counter]
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null on the last page.", examples=["home"]
    )


EXISTS: Responses = {
    403: {
        "model": ErrorBody,
        "description": "The counter of POST /visit (default/visits): only the operator claims it.",
    },
    409: {"model": ErrorBody, "description": "The counter exists already."},
}


class JsonAsText(Request):
    """A request whose `text/plain` body is read as JSON."""

    @property
    def headers(self) -> Headers:
        headers = super().headers
        if headers.get("content-type", "").partition(";")[0].strip().lower() != "text/plain":
            return headers
        as_json = headers.mutablecopy()
        as_json["content-type"] = "application/json"
        return as_json


class TextOrJsonRoute(APIRoute):
    """A route that reads a JSON body sent as `text/plain` as well as one sent as JSON.

    Browsers send a string body as `text/plain`, and `navigator.sendBeacon` can send nothing
    else to another origin: a body of type `application/json` needs a preflight request, which
    sendBeacon does not make. So a page that sends its hit's details as a JSON body sends them
    as text, and a page view costs one request whatever the server's CORS setting (tracker.js
    sends them in the query string instead). Only the hits route reads text so: it needs no
    credential, and anyone may hit a counter from anywhere already.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(JsonAsText(request.scope, request.receive))

        return handle


async def hit(
    namespace: Namespace,
    key: Key,
    tracker: TrackerDep,
    visitor: VisitorDep,
    body: HitDetails | None = None,
    *,
    page: Annotated[Page | None, Query(description="The page viewed, as in the body.")] = None,
    referrer: Annotated[
        Referrer | None, Query(description="The referring URL, as in the body.")
    ] = None,
) -> CounterValue:
    """Count one hit on a counter, creating it on its first hit; answers its new value. The
    page viewed and its referrer, for the counter's history, are optional and go either in the
    query string (`?page=/blog/post&referrer=…`, which costs the server least: tracker.js sends
    them so) or in a JSON body, sent as `application/json` or as `text/plain` (which a browser
    may send to another origin without a preflight request) — not in both."""
    details = in_query(page, referrer, body)
    counter = CounterId(namespace, key)
    if details is None or not details.given:
        value = await tracker.visit(counter, visitor=visitor)
    else:
        value = await tracker.view(
            counter, page=details.page, referrer=details.referrer, visitor=visitor
        )
    return CounterValue(namespace=namespace, key=key, value=value)


def in_query(page: str | None, referrer: str | None, body: HitDetails | None) -> HitDetails | None:
    """A hit's details, from its query string or its body; a 422 if both give some."""
    if page is None and referrer is None:
        return body
    if body is not None and body.given:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "page" if page is not None else "referrer"),
                    "msg": "give the page and referrer in the query string or in the body, "
                    "not in both",
                    "type": "value_error",
                }
            ]
        )
    return HitDetails(page=page, referrer=referrer)


router.add_api_route(
    "/{namespace}/{key}/hits",
    hit,
    methods=["POST"],
    route_class_override=TextOrJsonRoute,
    dependencies=[HITS],
    responses={**UNREADABLE_BODY, **STORE_UNAVAILABLE, **STORE_UNCONFIRMED, **RATE_LIMITED},
    openapi_extra={
        "requestBody": {
            "content": {"text/plain": {"schema": {"$ref": "#/components/schemas/HitDetails"}}}
        }
    },
)


@router.get(
    "/{namespace}/{key}",
    dependencies=[READS],
    responses={**NOT_FOUND, **STORE_UNAVAILABLE, **RATE_LIMITED},
)
async def read(namespace: Namespace, key: Key, tracker: TrackerDep) -> CounterDetail:
    """A counter's value, when it was created and last changed, and its unique visitors."""
    counter = CounterId(namespace, key)
    record = await tracker.counter(counter)
    today, week, month = await tracker.unique_visitors(counter)
    visitors = UniqueVisitors(today=today, last_7_days=week, last_30_days=month)
    return CounterDetail(**Counter.of(record).model_dump(), visitors=visitors)


@router.post(
    "/{namespace}/{key}",
    status_code=201,
    dependencies=[ADMIN],
    responses={
        **UNREADABLE_BODY,
        **EXISTS,
        **STORE_UNAVAILABLE,
        **STORE_UNCONFIRMED,
        **RATE_LIMITED,
    },
)
async def create(
    namespace: Namespace, key: Key, tracker: TrackerDep, body: NewCounter | None = None
) -> CreatedCounter:
    """Create a counter, starting at `value` (0 by default). The answer holds its admin key,
    shown this once."""
    body = body or NewCounter()
    record, admin_key = await tracker.create(
        CounterId(namespace, key), value=body.value, count_once_per=body.count_once_per
    )
    return CreatedCounter(**Counter.of(record).model_dump(), admin_key=admin_key)


@router.put(
    "/{namespace}/{key}",
    dependencies=[ADMIN],
    responses={
        **RATE_LIMITED,
        **UNREADABLE_BODY,
        **NEEDS_ADMIN,
        **NOT_FOUND,
        **STORE_UNAVAILABLE,
        **STORE_UNCONFIRMED,
    },
)
async def set_value(
    namespace: Namespace, key: Key, body: CounterChange, tracker: TrackerDep, token: Credential
) -> ValueChange:
    """Set a counter's value and/or its window, `count_once_per` (its admin key or the
    operator token)."""
    old = await tracker.change(
        CounterId(namespace, key),
        value=body.value,
        count_once_per=body.count_once_per,
        credential=token,
    )
    return ValueChange(old_value=old.value, value=old.value if body.value is None else body.value)


@router.delete(
    "/{namespace}/{key}",
    status_code=204,
    response_class=Response,
    dependencies=[ADMIN],
    responses={
        **NEEDS_ADMIN,
        **NOT_FOUND,
        **STORE_UNAVAILABLE,
        **STORE_UNCONFIRMED,
        **RATE_LIMITED,
    },
)
async def delete(namespace: Namespace, key: Key, tracker: TrackerDep, token: Credential) -> None:
    """Delete a counter (its admin key or the operator token). A later hit starts it afresh."""
    await tracker.delete(CounterId(namespace, key), credential=token)


@router.post(
    "/{namespace}/{key}/admin-key",
    dependencies=[ADMIN],
    responses={
        **NEEDS_ADMIN,
        **NOT_FOUND,
        **STORE_UNAVAILABLE,
        **STORE_UNCONFIRMED,
        **RATE_LIMITED,
    },
)
async def new_admin_key(
    namespace: Namespace, key: Key, tracker: TrackerDep, token: Credential
) -> AdminKey:
    """Give a counter a new admin key: its owner replaces a leaked key; the operator claims a
    counter that hits created, or takes one back for a user who lost the key."""
    admin_key = await tracker.new_admin_key(CounterId(namespace, key), credential=token)
    return AdminKey(admin_key=admin_key)


@router.get("/{namespace}", dependencies=[READS], responses={**STORE_UNAVAILABLE, **RATE_LIMITED})
async def list_counters(
    namespace: Namespace,
    tracker: TrackerDep,
    after: Annotated[
        str, Query(max_length=64, description="List the keys after this one (see next_after).")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=LARGEST_PAGE, description="Counters per page.")] = (
        PAGE_SIZE
    ),
) -> CounterPage:
    """The counters of a namespace, in key order, a page at a time."""
    records = await tracker.counters_in(namespace, after=after, limit=limit)
    next_after = records[-1].counter.key if len(records) == limit else None
    return CounterPage(counters=[Counter.of(r) for r in records], next_after=next_after)


def _timestamp(unix_ms: int) -> str:
    return utc_timestamp(datetime.fromtimestamp(unix_ms / 1000, UTC))
