"""A CountAPI-compatible facade: the paths and answers of the hosted CountAPI (`GET
/hit/{namespace}/{key}` → `{"value": 42}` …), so that pages written for it keep counting once
pointed at this server.

Each path also has CountAPI's one-segment form, `/hit/{key}`, for a key of the namespace
`default` — where `/hit/visits` is the counter of `POST /visit`. Where this facade differs from
CountAPI it is safer:

- `set` and `update` take the counter's admin key or the operator token as `Authorization:
  Bearer`. CountAPI let anyone set a key created with `enable_reset=1`, and update one by an
  amount between its `update_lowerbound` and `update_upperbound`; `create` accepts those options
  and ignores them, and answers the new counter's admin key instead.
- `update` takes any amount; the value stops at 0.
- Refusals add a `detail` sentence to CountAPI's body. A store failure is a 503 or 504
  `{"detail": ...}` where CountAPI answered 500 `{"error": ...}`; invalid input is a 422.
- No JSONP (`?callback=`) and no `?img`: `pixel.gif` is the image that counts.
- Counters never expire, where CountAPI's had a time to live.
"""

import uuid
from typing import Annotated, Any

from fastapi import Depends, Query
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field

from visit_tracker.api import errors
from visit_tracker.api.caching import NO_CACHE, uncached
from visit_tracker.api.counters import (
    EXISTS,
    NAME_RULE,
    Credential,
    Key,
    Namespace,
    ValueChange,
    follows_name_rule,
)
from visit_tracker.api.deps import TrackerDep, VisitorDep
from visit_tracker.api.rate_limits import ADMIN, HITS, READS
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import (
    BODY_TOO_LARGE,
    NEEDS_ADMIN,
    RATE_LIMITED,
    STORE_UNAVAILABLE,
    STORE_UNCONFIRMED,
)
from visit_tracker.errors import CounterNotFound, Forbidden, Refused, Unauthenticated
from visit_tracker.service import Tracker
from visit_tracker.stores import DEFAULT_COUNTER, CounterId
from visit_tracker.stores.base import LARGEST_SET, NAME_PATTERN

router = Router(
    tags=["countapi"],
    dependencies=[Depends(uncached)],
    responses={**RATE_LIMITED, **BODY_TOO_LARGE},
)

DEFAULT_NAMESPACE = DEFAULT_COUNTER.namespace


class CountValue(BaseModel):
    value: int = Field(examples=[42])


class CreatedCount(BaseModel):
    namespace: str = Field(examples=["example.com"])
    key: str = Field(examples=["home"])
    value: int = Field(examples=[0])
    admin_key: str = Field(
        description="The counter's admin key, shown this once (not part of CountAPI's answer): "
        "`set` and `update` need it as `Authorization: Bearer …`.",
        examples=["fW9sS1o1cE0xZk5aR3pQb3l0aHlYZ0hhV2tQc1l6cA"],
    )


class CountInfo(BaseModel):
    namespace: str = Field(examples=["example.com"])
    key: str = Field(examples=["home"])
    value: int = Field(examples=[42])
    created: int = Field(
        description="When the counter was created: Unix time in milliseconds.",
        examples=[1553794487479],
    )


class NoCount(BaseModel):
    value: None = None
    detail: str = Field(examples=["Counter example.com/home does not exist."])


class UnchangedCount(BaseModel):
    value: int | None = Field(description="The value, unchanged; null if there is none.")
    detail: str


class UnchangedValue(BaseModel):
    old_value: int | None = Field(description="The value, unchanged; null if there is none.")
    value: int | None
    detail: str


def _missing(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {404: {"model": model, "description": "No such counter: the value is null."}}


def _refused(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """NEEDS_ADMIN's answers, with CountAPI's body for a refused change."""
    return {status: {**answer, "model": model} for status, answer in NEEDS_ADMIN.items()}


COUNTS = {**STORE_UNAVAILABLE, **STORE_UNCONFIRMED}
SET_ANSWERS = {**_missing(UnchangedValue), **_refused(UnchangedValue), **COUNTS}
UPDATE_ANSWERS = {**_missing(NoCount), **_refused(UnchangedCount), **COUNTS}

NewValue = Annotated[int, Query(ge=0, le=LARGEST_SET, description="The value to set.")]
Amount = Annotated[
    int,
    Query(
        ge=-LARGEST_SET,
        le=LARGEST_SET,
        description="What to add; negative subtracts (down to 0).",
    ),
]


def _name_query(what: str) -> Any:  # fastapi.Query() is typed as returning Any
    return Query(
        description=f"The counter's {what}: {NAME_RULE}.",
        json_schema_extra={"pattern": f"^{NAME_PATTERN.pattern}$"},
    )


NamespaceQuery = Annotated[str, _name_query("namespace"), AfterValidator(follows_name_rule)]
KeyQuery = Annotated[
    str, _name_query("key (a new UUID when not given)"), AfterValidator(follows_name_rule)
]
StartValue = Annotated[int, Query(ge=0, le=LARGEST_SET, description="Where the count starts.")]


def _refusal(error: Refused, body: dict[str, int | None]) -> JSONResponse:
    """CountAPI's body for a refusal, with our status and a sentence saying why."""
    status, headers = errors.refusal_status(error)
    content = {**body, "detail": errors.sentence(error)}
    return JSONResponse(content, status, {**headers, **NO_CACHE})


async def _current(tracker: Tracker, counter: CounterId, error: Refused) -> int | None:
    """The counter's value for a refused change: None if it does not exist, or if the request
    brought no credential at all — then it is refused without asking the store."""
    if isinstance(error, Unauthenticated):
        return None
    try:
        return (await tracker.counter(counter)).value
    except CounterNotFound:
        return None


@router.get("/hit/{namespace}/{key}", dependencies=[HITS], responses=COUNTS)
async def hit(
    namespace: Namespace, key: Key, tracker: TrackerDep, visitor: VisitorDep
) -> CountValue:
    """Count one hit, creating the counter on its first; its new value."""
    return CountValue(value=await tracker.visit(CounterId(namespace, key), visitor=visitor))


@router.get("/hit/{key}", dependencies=[HITS], responses=COUNTS)
async def hit_default(key: Key, tracker: TrackerDep, visitor: VisitorDep) -> CountValue:
    """`hit` on a key of the namespace `default`."""
    return await hit(DEFAULT_NAMESPACE, key, tracker, visitor)


@router.get(
    "/get/{namespace}/{key}",
    dependencies=[READS],
    response_model=CountValue,
    responses={**_missing(NoCount), **STORE_UNAVAILABLE},
)
async def get(namespace: Namespace, key: Key, tracker: TrackerDep) -> CountValue | JSONResponse:
    """A counter's value; 404 `{"value": null}` if it does not exist."""
    try:
        record = await tracker.counter(CounterId(namespace, key))
    except CounterNotFound as error:
        return _refusal(error, {"value": None})
    return CountValue(value=record.value)


@router.get(
    "/get/{key}",
    dependencies=[READS],
    response_model=CountValue,
    responses={**_missing(NoCount), **STORE_UNAVAILABLE},
)
async def get_default(key: Key, tracker: TrackerDep) -> CountValue | JSONResponse:
    """`get` on a key of the namespace `default`."""
    return await get(DEFAULT_NAMESPACE, key, tracker)


@router.get(
    "/set/{namespace}/{key}",
    dependencies=[ADMIN],
    response_model=ValueChange,
    responses=SET_ANSWERS,
)
async def set_value(
    namespace: Namespace, key: Key, value: NewValue, tracker: TrackerDep, token: Credential
) -> ValueChange | JSONResponse:
    """Set a counter's value (its admin key or the operator token); the value before and after.
    Refused, the answer holds the unchanged value as both."""
    counter = CounterId(namespace, key)
    try:
        old = await tracker.set_value(counter, value, credential=token)
    except CounterNotFound as error:
        return _refusal(error, {"old_value": None, "value": None})
    except (Unauthenticated, Forbidden) as error:
        current = await _current(tracker, counter, error)
        return _refusal(error, {"old_value": current, "value": current})
    return ValueChange(old_value=old, value=value)


@router.get("/set/{key}", dependencies=[ADMIN], response_model=ValueChange, responses=SET_ANSWERS)
async def set_value_default(
    key: Key, value: NewValue, tracker: TrackerDep, token: Credential
) -> ValueChange | JSONResponse:
    """`set` on a key of the namespace `default`."""
    return await set_value(DEFAULT_NAMESPACE, key, value, tracker, token)


@router.get(
    "/update/{namespace}/{key}",
    dependencies=[ADMIN],
    response_model=CountValue,
    responses=UPDATE_ANSWERS,
)
async def update(
    namespace: Namespace, key: Key, amount: Amount, tracker: TrackerDep, token: Credential
) -> CountValue | JSONResponse:
    """Add `amount` to a counter (its admin key or the operator token) in one atomic step that
    loses no concurrent hit; its new value. Refused, the answer holds the unchanged value."""
    counter = CounterId(namespace, key)
    try:
        value = await tracker.add(counter, amount, credential=token)
    except CounterNotFound as error:
        return _refusal(error, {"value": None})
    except (Unauthenticated, Forbidden) as error:
        return _refusal(error, {"value": await _current(tracker, counter, error)})
    return CountValue(value=value)


@router.get(
    "/update/{key}", dependencies=[ADMIN], response_model=CountValue, responses=UPDATE_ANSWERS
)
async def update_default(
    key: Key, amount: Amount, tracker: TrackerDep, token: Credential
) -> CountValue | JSONResponse:
    """`update` on a key of the namespace `default`."""
    return await update(DEFAULT_NAMESPACE, key, amount, tracker, token)


@router.get(
    "/create",
    dependencies=[ADMIN],
    responses={**EXISTS, **COUNTS},
)
async def create(
    tracker: TrackerDep,
    namespace: NamespaceQuery = DEFAULT_NAMESPACE,
    key: KeyQuery = "",
    value: StartValue = 0,
) -> CreatedCount:
    """Create a counter (a new UUID as its key if none is given), starting at `value`; the
    answer holds its admin key, shown this once. CountAPI's `enable_reset`,
    `update_lowerbound` and `update_upperbound` are accepted and ignored."""
    counter = CounterId(namespace, key or str(uuid.uuid4()))
    record, admin_key = await tracker.create(counter, value=value)
    return CreatedCount(
        namespace=counter.namespace, key=counter.key, value=record.value, admin_key=admin_key
    )


@router.get(
    "/info/{namespace}/{key}",
    dependencies=[READS],
    response_model=CountInfo,
    responses={**_missing(NoCount), **STORE_UNAVAILABLE},
)
async def info(namespace: Namespace, key: Key, tracker: TrackerDep) -> CountInfo | JSONResponse:
    """A counter's name, value and creation time; 404 `{"value": null}` if it does not exist."""
    try:
        record = await tracker.counter(CounterId(namespace, key))
    except CounterNotFound as error:
        return _refusal(error, {"value": None})
    return CountInfo(namespace=namespace, key=key, value=record.value, created=record.created_at)


@router.get(
    "/info/{key}",
    dependencies=[READS],
    response_model=CountInfo,
    responses={**_missing(NoCount), **STORE_UNAVAILABLE},
)
async def info_default(key: Key, tracker: TrackerDep) -> CountInfo | JSONResponse:
    """`info` on a key of the namespace `default`."""
    return await info(DEFAULT_NAMESPACE, key, tracker)
