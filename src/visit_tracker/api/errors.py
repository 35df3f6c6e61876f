"""How failures reach clients: always JSON `{"detail": ...}`, never a stack trace or HTML.

Invalid input gives 422 with one `{"loc", "msg", "type"}` entry per problem, naming the field.

A request the service refuses gets its own status: 404 (no such counter), 409 (the counter to
create exists), 401 (a change without credential, with `WWW-Authenticate: Bearer`) or 403 (a
credential that does not own the counter).

A store that did not answer or a server that is draining gives 503 with `Retry-After`: the visit
was not counted and a retry will likely succeed. A store that took the write but whose answer was
lost gives 504 without `Retry-After`: the visit may have been counted, and a blind retry could
count it twice. A worker that serves as many event streams as it may answers a new one with 503
and `Retry-After` too. A client over its rate limit gets 429 with `Retry-After` and the RateLimit
fields (see `visit_tracker.rate_limits`). Anything unexpected is logged and gives 500.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from visit_tracker.errors import (
    CounterExists,
    CounterNotFound,
    Forbidden,
    RateLimited,
    Refused,
    ShuttingDown,
    StoreError,
    StoreOutcomeUnknown,
    TooManyStreams,
    Unauthenticated,
)

logger = logging.getLogger("visit_tracker")

RETRY_AFTER_SECONDS = "1"
STREAMS_RETRY_AFTER_SECONDS = "5"
"""Streams end only when their clients leave: a slot frees up more slowly than a store recovers."""

Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


async def store_failed(request: Request, error: Exception) -> JSONResponse:
    logger.error("store failed on %s %s: %s", request.method, request.url.path, error)
    return JSONResponse(
        {"detail": "The visit store is unavailable; the visit was not counted. Retry shortly."},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def store_unconfirmed(request: Request, error: Exception) -> JSONResponse:
    logger.error("store outcome unknown on %s %s: %s", request.method, request.url.path, error)
    return JSONResponse(
        {
            "detail": "The visit store did not confirm the visit: it may or may not have been "
            "counted. Check the count before retrying."
        },
        status_code=504,
    )


async def shutting_down(_: Request, __: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "The server is shutting down; the visit was not counted. Retry shortly."},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def too_many_streams(_: Request, __: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "This server serves as many event streams as it may. Retry shortly."},
        status_code=503,
        headers={"Retry-After": STREAMS_RETRY_AFTER_SECONDS},
    )


REFUSAL_STATUS: dict[type[Refused], int] = {
    CounterNotFound: 404,
    CounterExists: 409,
    Unauthenticated: 401,
    Forbidden: 403,
}
"""A refusal's status is its most specific kind's here (a subclass answers as its parent)."""


def refusal_status(error: Refused) -> tuple[int, dict[str, str]]:
    """The status that answers a refusal, and the headers that go with it."""
    status = next(REFUSAL_STATUS[kind] for kind in type(error).__mro__ if kind in REFUSAL_STATUS)
    return status, {"WWW-Authenticate": "Bearer"} if status == 401 else {}


def sentence(error: Refused) -> str:
    """A refusal's message, written for the client, as a sentence."""
    message = str(error)
    return f"{message[0].upper()}{message[1:]}."


async def refused(_: Request, error: Exception) -> JSONResponse:
    # Registered for Refused only; its message is written for the client.
    status, headers = refusal_status(cast(Refused, error))
    return JSONResponse({"detail": sentence(cast(Refused, error))}, status, headers)


async def too_many_requests(_: Request, error: Exception) -> JSONResponse:
    decision = cast(RateLimited, error).decision
    return JSONResponse(
        {
            "detail": f"Too many requests: this client may make {decision.limit} requests "
            f"every {decision.window} s here. Retry in {decision.retry_after} s."
        },
        status_code=429,
        headers=dict(decision.fields()),
    )


async def invalid_request(_: Request, error: Exception) -> JSONResponse:
    # Registered for RequestValidationError only; starlette types handlers for any Exception.
    problems_found = cast(RequestValidationError, error).errors()
    problems = [
        {
            "loc": list(problem["loc"]),
            "msg": problem["msg"].removeprefix("Value error, "),
            "type": problem["type"],
        }
        for problem in problems_found
    ]
    return JSONResponse({"detail": problems}, status_code=422)


async def http_error(request: Request, error: Exception) -> JSONResponse:
    """The framework's own refusals (404, 405, 400), as it answers them, except that a 405's
    `Allow` lists every method the path serves: the router names only the first route it
    found for the path, and several routes may share one (GET and PUT of a counter)."""
    # Registered for HTTPException only; starlette types handlers for any Exception.
    refusal = cast(HTTPException, error)
    headers = dict(refusal.headers or {})
    if refusal.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
    return JSONResponse({"detail": refusal.detail}, refusal.status_code, headers)


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route fully matches for the request's path, asked of each route (the
    framework keeps included routers' routes nested)."""
    routes = request.app.router.routes
    return [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": "Internal server error."}, status_code=500)


EXPECTED: dict[type[Exception], Handler] = {
    StoreError: store_failed,
    StoreOutcomeUnknown: store_unconfirmed,
    ShuttingDown: shutting_down,
    TooManyStreams: too_many_streams,
    Refused: refused,
    RateLimited: too_many_requests,
}
"""Failures we anticipate, each with its answer."""


def handler_for(error: Exception) -> Handler | None:
    """The handler of the most specific anticipated failure `error` is, if any."""
    return next((EXPECTED[kind] for kind in type(error).__mro__ if kind in EXPECTED), None)


def install(app: FastAPI) -> None:
    for kind, handler in EXPECTED.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


async def answer_failure(
    error: Exception,
    scope: Scope,
    receive: Receive,
    send: Send,
    extra_headers: list[tuple[bytes, bytes]],
) -> int:
    """Answer `error` as the framework's handlers would, adding `extra_headers`, for a route
    answered in front of the framework; return the status sent."""
    handler = handler_for(error) or unexpected
    response = await handler(Request(scope), error)
    response.raw_headers.extend(extra_headers)
    await response(scope, receive, send)
    return response.status_code
