"""A direct path for the hottest routes, `POST /visit` and `GET /stats`.

The framework's routing, dependency solving and response validation cost about 150 µs a request
here, several times the work of counting the visit. `RequestObserver`, in front of the
framework, sends those two routes straight to their endpoint functions — the very functions the
router documents in OpenAPI — and `answer_directly` writes the same pydantic models as JSON.

A direct route is a `DirectAnswer`. What other layers do for the framework's routes — rate
limits, CORS — they do for a direct route by wrapping its answer (see `app.direct_routes`), so
that a concern turned off costs a direct route nothing.
"""

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from visit_tracker.api import errors, visits
from visit_tracker.api.deps import visitor_of
from visit_tracker.api.observer import DirectAnswer, Header
from visit_tracker.service import Tracker

Endpoint = Callable[[Tracker, Scope], Awaitable[BaseModel]]
"""Calls a route's endpoint function with what its dependencies are made of."""


async def visit(tracker: Tracker, scope: Scope) -> BaseModel:
    return await visits.visit(tracker, visitor_of(scope))


async def stats(tracker: Tracker, _: Scope) -> BaseModel:
    return await visits.stats(tracker)


HOT_ROUTES: dict[tuple[str, str], tuple[Callable[..., Any], Endpoint]] = {
    ("POST", "/visit"): (visits.visit, visit),
    ("GET", "/stats"): (visits.stats, stats),
}
"""Per direct route, the endpoint function its framework route documents, and its call."""

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
