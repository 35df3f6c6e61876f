"""A direct path for the hottest routes: `POST /visit`, `GET /stats` (and its HEAD) and a named
counter's hits.

The framework's routing, dependency solving and response validation cost about 150 µs a request
here, several times the work of counting the visit. `RequestObserver`, in front of the
framework, sends those routes straight to their endpoint functions — the very functions the
router documents in OpenAPI — and `answer_directly` writes the same pydantic models as JSON.

A direct route is a `DirectAnswer`. What other layers do for the framework's routes — rate
limits, CORS — they do for a direct route by wrapping its answer (see `app.direct_routes`), so
that a concern turned off costs a direct route nothing.

The hits route has names in its path and may have a page and a referrer, in its query string
or its body. Its direct path takes a request only when all are as the framework would take them
without a word — names by the same pattern, details that `HitDetails` accepts in the query
string or in no body or a small JSON one, not in both — and hands anything else (a bad name or
page, a body to refuse, a chunked or large one, another media type) to the framework with
whatever it read, so that every refusal is the framework's own, documented answer.
"""

import re
from collections.abc import Awaitable, Callable
from functools import lru_cache, partial
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.types import Message, Receive, Scope, Send

from visit_tracker.api import counters, errors, visits
from visit_tracker.api.body_limit import declared_length
from visit_tracker.api.deps import visitor_of
from visit_tracker.api.observer import DirectAnswer, Header
from visit_tracker.service import Tracker
from visit_tracker.stores.base import NAME_PATTERN

Endpoint = Callable[[Tracker, Scope], Awaitable[BaseModel]]
"""Calls a route's endpoint function with what its dependencies are made of."""


async def visit(tracker: Tracker, scope: Scope) -> BaseModel:
    return await visits.visit(tracker, visitor_of(scope))


async def stats(tracker: Tracker, _: Scope) -> BaseModel:
    return await visits.stats(tracker)


HOT_ROUTES: dict[tuple[str, str], tuple[Callable[..., Any], Endpoint]] = {
    ("POST", "/visit"): (visits.visit, visit),
    ("GET", "/stats"): (visits.stats, stats),
    ("HEAD", "/stats"): (visits.stats, stats),
}
"""Per direct route, the endpoint function its framework route documents, and its call. HEAD
/stats answers as GET does, as the framework's twin of the route would (see `routing`): the
server sends no body for a HEAD."""

HITS_PATH = re.compile(rf"/v1/counters/({NAME_PATTERN.pattern})/({NAME_PATTERN.pattern})/hits")
HITS_TEMPLATE = "/v1/counters/{namespace}/{key}/hits"
LARGEST_DIRECT_BODY = 4096
"""The largest hit body taken directly: a page and a referrer of 512 characters each, escaped."""
JSON_MEDIA_TYPES = (b"application/json", b"text/plain")
"""The media types the hits route reads as JSON: tracker.js sends text/plain (see `counters`)."""
QUERY_DETAILS = ("page", "referrer")
DETAILS_CACHED = 2048
"""How many query strings and bodies a worker remembers the details of, each: a site's hits
repeat a few pages and referrers, and reading them anew (parsing, validating) cost about 9 µs
of a hit's 40 µs of CPU, measured in-process. At most 4 KiB each: 16 MiB a worker at worst."""
HIT = "visit_tracker.hit"
"""Where the scope of a hit taken directly holds its namespace, key and details."""


async def hit(tracker: Tracker, scope: Scope) -> BaseModel:
    namespace, key, details = scope[HIT]
    return await counters.hit(namespace, key, tracker, visitor_of(scope), details)


def hit_taker(
    *, max_body_size: int
) -> Callable[[re.Match[str], Scope, Receive], Awaitable[Receive | None]]:
    """What decides whether the direct path takes a request to the hits route (see
    `observer.PatternRoute`), given the server's body size limit."""
    largest = min(LARGEST_DIRECT_BODY, max_body_size)

    async def take_hit(match: re.Match[str], scope: Scope, receive: Receive) -> Receive | None:
        media_type, chunked = None, False
        for name, value in scope["headers"]:
            if name == b"content-type" and media_type is None:  # the first, as the framework reads
                media_type = value.split(b";", 1)[0].strip().lower()
            elif name == b"transfer-encoding":
                chunked = True
        json_body = media_type in JSON_MEDIA_TYPES
        length = declared_length(scope["headers"]) or 0
        if chunked or length > largest:
            return receive
        body = await read_body(receive) if length else b""
        if body is None or len(body) != length:  # the client went away, or sent less
            return disconnected
        declined = replaying(body, then=receive) if body else receive
        details = None
        if body:
            details = details_in_body(body) if json_body else None
            if details is None:
                return declined
        if query := scope["query_string"]:
            in_query = details_in_query(query) if len(query) <= largest else None
            if in_query is None:
                return declined
            if in_query.given:
                if details is not None and details.given:
                    return declined  # given twice: the framework says so
                details = in_query
        scope[HIT] = (match[1], match[2], details)
        return None

    return take_hit


@lru_cache(maxsize=DETAILS_CACHED)
def details_in_body(body: bytes) -> counters.HitDetails | None:
    """The page and referrer a JSON body gives; None if the framework would refuse it."""
    try:
        return counters.HitDetails.model_validate_json(body)
    except ValidationError:
        return None


@lru_cache(maxsize=DETAILS_CACHED)
def details_in_query(query: bytes) -> counters.HitDetails | None:
    """The page and referrer a query string gives, read as the framework reads it (`parse_qsl`
    of the string decoded as Latin-1, the last of each name winning); None if the framework
    would refuse them."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    try:
        return counters.HitDetails.model_validate(
            {name: value for name, value in pairs if name in QUERY_DETAILS}
        )
    except ValidationError:
        return None


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None if the client went away before sending it all."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def disconnected() -> Message:
    """What the framework receives of a request whose client went away: it counts nothing."""
    return {"type": "http.disconnect"}


def replaying(body: bytes, *, then: Receive) -> Receive:
    """A receive that gives the framework the body already read, then what the server sends
    (the client's disconnect)."""
    given = False

    async def receive_again() -> Message:
        nonlocal given
        if given:
            return await then()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again


CONTENT_TYPE = (b"content-type", b"application/json")


def direct_answer(endpoint: Endpoint) -> DirectAnswer:
    return partial(answer_directly, endpoint)


async def answer_directly(
    endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, extra_headers: list[Header]
) -> int:
    """Answer with `endpoint`'s model as JSON, or an anticipated failure's JSON error, adding
    `extra_headers`; return the status sent. Anything unanticipated is logged and answered with
    the framework's JSON 500, as on every other route."""
    try:
        model = await endpoint(scope["state"]["tracker"], scope)
    except Exception as error:
        return await errors.answer_failure(error, scope, receive, send, extra_headers)
    body = model.__pydantic_serializer__.to_json(model)
    headers = [CONTENT_TYPE, (b"content-length", b"%d" % len(body)), *extra_headers]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return 200
