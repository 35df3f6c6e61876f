"""Request ids, metrics and the access log, in front of the framework, so that the direct
routes get them too. Only the trusted-proxies layer (see `proxies`), when on, comes before.

Every HTTP response carries an `X-Request-ID`: the client's own when it sent a usable one (at
most 128 characters from `A-Z a-z 0-9 . _ : = + / -`, so it can go into a log line as it is),
otherwise a new random one. Every request is counted and timed by route template (see
`visit_tracker.metrics`). With the access log on, each request is also one log line: request
id, method, path, status and duration. Never the client's address, its User-Agent or the query
string: they identify people, and visit-tracker promises to keep none of that.

This runs for every request, so it stays small. The direct routes (see `fast_path`) are
answered from here, their id header written with the response's own: no layer or header copy
between them and the server; what else applies to them (rate limits, CORS) wraps their answer
only when it is turned on. Other requests get one closure, whose calls hand back
the awaitable of the layer below instead of adding a coroutine each.
"""

import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visit_tracker.logs import AccessLog
from visit_tracker.metrics import UNMATCHED, Metrics

Header = tuple[bytes, bytes]
DirectAnswer = Callable[[Scope, Receive, Send, list[Header]], Awaitable[int]]
"""A route answered here, in front of the framework (see `fast_path`): it answers with the
extra response headers it is given, and returns the status it sent."""


@dataclass(frozen=True, slots=True)
class PatternRoute:
    """A direct route whose path has parameters: requests of `method` whose path matches
    `pattern` go to `take` first, with the match. It reads what the route needs, noting it in
    the scope, and returns None when `answer` may take the request, else the receive the
    framework must use instead: one that gives it again whatever `take` read."""

    method: str
    pattern: re.Pattern[str]
    template: str
    """The route's template, as the framework names it in the metrics."""
    take: Callable[[re.Match[str], Scope, Receive], Awaitable[Receive | None]]
    answer: DirectAnswer


HEADER = b"x-request-id"
USABLE_ID = re.compile(rb"[A-Za-z0-9._:=+/-]{1,128}")
NO_RESPONSE = 500
"""The status noted when the application failed before answering: the server answers 500."""


def new_request_id() -> bytes:
    """A random id: 32 hexadecimal digits, unique without coordination between processes.

    Not a secret, so the fast generator does: each process seeds it from the system's entropy,
    and 128 random bits do not repeat in practice. (`os.urandom` costs several times more here:
    it gives up the GIL around a system call.)
    """
    return b"%032x" % random.getrandbits(128)


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The client's `X-Request-ID` if it sent a usable one, else a new id."""
    for name, value in headers:
        if name == HEADER and USABLE_ID.fullmatch(value):
            return value
    return new_request_id()


def route_template(scope: Scope) -> str:
    """The template of the framework's route that answered, which its routing notes in the
    scope, or `unmatched`."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    template: str = route.path
    return template


class RequestObserver:
    """Gives each response an `X-Request-ID`, counts and times each request, and logs it when
    given an access log. Answers the direct routes, by method and path or by pattern, itself;
    passes the rest to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        direct_routes: Mapping[tuple[str, str], DirectAnswer],
        pattern_routes: Sequence[PatternRoute] = (),
        metrics: Metrics,
        access_log: AccessLog | None,
    ) -> None:
        self.app = app
        self.direct_routes = direct_routes
        self.pattern_routes = pattern_routes
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        the_id = request_id(scope["headers"])
        direct = self.direct_routes.get((scope["method"], scope["path"]))
        template = scope["path"]
        status = NO_RESPONSE
        started = time.perf_counter_ns()
        try:
            if direct is None and self.pattern_routes:
                direct, template, receive = await self._take(scope, receive)
            if direct is not None:
                status = await direct(scope, receive, send, [(HEADER, the_id)])
            else:

                def send_with_id(message: Message) -> Awaitable[None]:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        message["headers"] = [*message.get("headers", ()), (HEADER, the_id)]
                    return send(message)

                await self.app(scope, receive, send_with_id)
        finally:
            nanoseconds = time.perf_counter_ns() - started
            route = template if direct is not None else route_template(scope)
            self.metrics.request(route, scope["method"], status, nanoseconds / 1e9)
            if self.access_log is not None:
                self.access_log.request(
                    the_id, scope["method"], scope["path"], status, nanoseconds // 1000 / 1000
                )

    async def _take(
        self, scope: Scope, receive: Receive
    ) -> tuple[DirectAnswer | None, str, Receive]:
        """The pattern route that takes the request, its template, and the receive to use from
        now on; no route when none matches or the one that matches declines."""
        for route in self.pattern_routes:
            if route.method == scope["method"]:
                match = route.pattern.fullmatch(scope["path"])
                if match is not None:
                    declined = await route.take(match, scope, receive)
                    if declined is None:
                        return route.answer, route.template, receive
                    return None, scope["path"], declined
        return None, scope["path"], receive
