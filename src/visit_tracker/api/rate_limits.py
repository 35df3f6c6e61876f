"""Rate limits on routes: a route's class is one dependency in its metadata.

    @router.post("/{namespace}/{key}/hits", dependencies=[HITS])
    admin = APIRouter(prefix="/v1/counters", dependencies=[ADMIN])   # or for a whole router

The dependency takes a token from the client's bucket of that class (see
`visit_tracker.rate_limits`). Refused, it raises `RateLimited`, which `api/errors` answers with
a JSON 429, `Retry-After` and the RateLimit fields. Allowed, it notes the fields in the scope,
and `RateLimitFields`, around the framework, writes them into the response, whatever kind of
response the route returns. A class whose rate is 0 costs its routes one dictionary lookup.

The direct routes (`POST /visit`, `GET /stats`, see `fast_path`) keep their class in the same
metadata; `limit_directly` applies it in front of the framework when that class is limited,
and when it is not, they run exactly as without rate limits.

A class also says what a route does: a GET of the `hits` or `admin` class counts or changes
counters, and so answers no HEAD (see `routing`).
"""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request, params
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visit_tracker.api.errors import answer_failure
from visit_tracker.api.observer import DirectAnswer, Header
from visit_tracker.errors import RateLimited
from visit_tracker.rate_limits import Decision, RateLimiter, RouteClass

FIELDS = "visit_tracker.rate_limit_fields"
"""Where an allowed request's RateLimit fields wait in the scope for its response."""


def encoded(decision: Decision) -> list[Header]:
    return [(name.lower().encode(), value.encode()) for name, value in decision.fields()]


class RateLimit:
    """The dependency that puts a route in a class: it takes a token from the client's bucket."""

    def __init__(self, route_class: RouteClass) -> None:
        self.route_class = route_class

    async def __call__(self, request: Request) -> None:
        limiter: RateLimiter = request.state.limiter
        decision = await limiter.check(self.route_class, request.scope.get("client"))
        if decision is None:
            return
        if not decision.allowed:
            raise RateLimited(decision)
        request.scope[FIELDS] = encoded(decision)


VISIT = Depends(RateLimit(RouteClass.VISIT))
HITS = Depends(RateLimit(RouteClass.HITS))
READS = Depends(RateLimit(RouteClass.READS))
ADMIN = Depends(RateLimit(RouteClass.ADMIN))

TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
"""The query values the framework reads as true for a bool."""


CHANGING = frozenset({RouteClass.HITS, RouteClass.ADMIN})
"""The classes of the routes that count hits or change counters: none answers HEAD (see
`routing`)."""


async def hits_when_counting(request: Request) -> None:
    """The hits class for a request that counts (`count=true`), the reads class otherwise: a
    HEAD never counts."""
    counts = request.method != "HEAD" and request.query_params.get("count", "").lower() in TRUE
    await (HITS if counts else READS).dependency(request)


HITS_WHEN_COUNTING = Depends(hits_when_counting)


def class_of(dependencies: Iterable[params.Depends]) -> RouteClass | None:
    """The class the first rate limit among a route's dependencies puts it in, if any."""
    for depends in dependencies:
        if isinstance(depends.dependency, RateLimit):
            return depends.dependency.route_class
    return None


def changes_counters(dependencies: Iterable[params.Depends]) -> bool:
    """Whether a route with these dependencies counts hits or changes counters: whether any
    of its rate limits is of such a class."""
    return any(
        isinstance(depends.dependency, RateLimit) and depends.dependency.route_class in CHANGING
        for depends in dependencies
    )


def route_class(router: APIRouter, endpoint: Callable[..., Any]) -> RouteClass | None:
    """The class the metadata of `endpoint`'s route in `router` puts it in: the route's own
    dependencies, else its router's."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            kind = class_of([*route.dependencies, *router.dependencies])
            if kind is not None:
                return kind
    return None


def limit_directly(answer: DirectAnswer, kind: RouteClass) -> DirectAnswer:
    """`answer`, for a direct route of class `kind`, within the client's limit."""

    async def answer_within_limit(
        scope: Scope, receive: Receive, send: Send, extra_headers: list[Header]
    ) -> int:
        limiter: RateLimiter = scope["state"]["limiter"]
        decision = await limiter.check(kind, scope.get("client"))
        if decision is None:
            return await answer(scope, receive, send, extra_headers)
        if not decision.allowed:
            return await answer_failure(RateLimited(decision), scope, receive, send, extra_headers)
        return await answer(scope, receive, send, [*extra_headers, *encoded(decision)])

    return answer_within_limit


class RateLimitFields:
    """Writes the RateLimit fields a route's dependency noted into the route's response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        def send_with_fields(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start" and FIELDS in scope:
                message["headers"] = [*message.get("headers", ()), *scope[FIELDS]]
            return send(message)

        await self.app(scope, receive, send_with_fields)
