"""A direct path for the hottest routes, `POST /visit` and `GET /stats`.

The framework's routing, dependency solving and response validation cost about 150 µs a request
here, several times the work of counting the visit. This layer, in front of the framework,
sends those two routes straight to their endpoint functions — the very functions the router
documents in OpenAPI — and writes the same pydantic models as JSON. Everything else (lifespan
included) goes to the framework.
"""

from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from visit_tracker.api import errors, visits
from visit_tracker.service import Tracker

Endpoint = Callable[[Tracker], Awaitable[BaseModel]]

HOT_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/visit"): visits.visit,
    ("GET", "/stats"): visits.stats,
}

JSON_HEADERS = [(b"content-type", b"application/json")]


class FastPath:
    """Serves the routes in `HOT_ROUTES` directly; passes everything else to `app`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = scope["type"] == "http" and HOT_ROUTES.get((scope["method"], scope["path"]))
        if not endpoint:
            await self.app(scope, receive, send)
            return
        try:
            model = await endpoint(scope["state"]["tracker"])
        except Exception as error:
            handler = errors.handler_for(error)
            if handler is None:
                raise
            response = await handler(Request(scope), error)
            await response(scope, receive, send)
            return
        body = model.__pydantic_serializer__.to_json(model)
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
