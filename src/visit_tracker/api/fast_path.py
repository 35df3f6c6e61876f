"""A direct path for the hottest routes, `POST /visit` and `GET /stats`.

The framework's routing, dependency solving and response validation cost about 150 µs a request
here, several times the work of counting the visit. `RequestObserver`, in front of the
framework, sends those two routes straight to their endpoint functions — the very functions the
router documents in OpenAPI — and `answer_directly` writes the same pydantic models as JSON.
"""

from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from visit_tracker.api import errors, visits
from visit_tracker.service import Tracker

Endpoint = Callable[[Tracker], Awaitable[BaseModel]]
Header = tuple[bytes, bytes]

HOT_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/visit"): visits.visit,
    ("GET", "/stats"): visits.stats,
}

CONTENT_TYPE = (b"content-type", b"application/json")


async def answer_directly(
    endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, *, extra_header: Header
) -> int:
    """Answer with `endpoint`'s model as JSON, or an anticipated failure's JSON error, adding
    `extra_header`; return the status sent. Anything unanticipated is logged and answered with
    the framework's JSON 500, as on every other route."""
    try:
        model = await endpoint(scope["state"]["tracker"])
    except Exception as error:
        handler = errors.handler_for(error) or errors.unexpected
        response = await handler(Request(scope), error)
        response.raw_headers.append(extra_header)
        await response(scope, receive, send)
        return response.status_code
    body = model.__pydantic_serializer__.to_json(model)
    headers = [CONTENT_TYPE, (b"content-length", b"%d" % len(body)), extra_header]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return 200
