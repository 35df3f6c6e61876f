"""Cross-origin requests from browsers (CORS), for the pages that count and show visits.

Pages on the origins of `VISIT_TRACKER_CORS_ORIGINS` (any, by default) may GET, HEAD and POST,
with no request header beyond the CORS-safelisted ones and `Content-Type`, and may read the
RateLimit fields, `Retry-After` and `X-Request-ID` of the answers. Admin requests — PUT,
DELETE, or anything with an `Authorization` header — are never approved for another origin: a
preflight asking for them gets a JSON 400 and no `Access-Control-Allow-*` field, and a response
to such a method carries no CORS field either. (A browser only sends what a preflight approved,
so an admin key pasted into a page cannot be used from it against this server.)

This is Starlette's `CORSMiddleware` told that policy, with the two changes above, and the
empty elements of a preflight's header list ignored, as HTTP asks. The direct routes, answered
before it, get the same fields from `direct` (see `fast_path`).
"""

from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from visit_tracker.api.observer import DirectAnswer, Header

ALLOWED_METHODS = ("GET", "HEAD", "POST")
"""The methods a preflight approves and whose answers carry CORS fields; HEAD answers as GET
does."""
ALLOWED_HEADERS = ("Content-Type",)
EXPOSED_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "Retry-After",
    "X-Request-ID",
)
VARY_ORIGIN = (b"vary", b"Origin")
MAX_AGE = 86_400
"""Seconds a browser may keep a preflight's approval (browsers cap it: Chrome at 2 hours)."""


class Cors(CORSMiddleware):
    """CORS for reads and hits from `origins`; never for admin methods or headers."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=MAX_AGE,
        )
        self.encoded_simple_headers = [
            (name.lower().encode(), value.encode()) for name, value in self.simple_headers.items()
        ]
        self.any_origin_fields = [*self.encoded_simple_headers, VARY_ORIGIN]

    def preflight_response(self, request_headers: Headers) -> Response:
        problems = self.refusals(request_headers)
        if problems:
            return JSONResponse(
                {"detail": "Cross-origin request refused: " + "; ".join(problems) + "."},
                status_code=400,
                headers={"Vary": self.preflight_headers["Vary"]},
            )
        # Approved here: CORSMiddleware would refuse, in plain text, a header list with empty
        # elements (`content-type,`), which HTTP says to ignore and `refusals` does.
        headers = dict(self.preflight_headers)
        if self.preflight_explicit_allow_origin:
            headers["Access-Control-Allow-Origin"] = request_headers["origin"]
        return PlainTextResponse("OK", headers=headers)

    def refusals(self, request_headers: Headers) -> list[str]:
        """What a preflight asks for that this policy refuses, each said in a few words."""
        problems = []
        origin = request_headers["origin"]
        if not self.is_allowed_origin(origin=origin):
            problems.append(f"origin {origin} is not allowed")
        method = request_headers["access-control-request-method"]
        if method not in self.allow_methods:
            problems.append(f"method {method} is not allowed, only {', '.join(ALLOWED_METHODS)}")
        requested = request_headers.get("access-control-request-headers", "")
        refused = [
            name.strip()
            for name in requested.lower().split(",")
            if name.strip() and name.strip() not in self.allow_headers
        ]
        if refused:
            problems.append(
                f"header {', '.join(refused)} is not allowed, only the CORS-safelisted ones"
            )
        if "access-control-request-private-network" in request_headers:
            problems.append("private network access is not allowed")
        return problems

    async def simple_response(
        self, scope: Scope, receive: Receive, send: Send, request_headers: Headers
    ) -> None:
        if scope["method"] not in self.allow_methods:  # PUT, DELETE: never cross-origin
            await self.app(scope, receive, send)
            return
        await super().simple_response(scope, receive, send, request_headers)

    def direct(self, answer: DirectAnswer) -> DirectAnswer:
        """`answer` with this policy's CORS fields, for a route answered before this layer.

        The fields are those `CORSMiddleware.send` adds to a simple response, computed without
        its header objects: a direct route is answered in a few microseconds, and those would
        add several to every request.
        """

        async def answer_with_cors(
            scope: Scope, receive: Receive, send: Send, extra_headers: list[Header]
        ) -> int:
            fields = self.simple_fields(origin_of(scope["headers"]))
            return await answer(scope, receive, send, [*extra_headers, *fields])

        return answer_with_cors

    def simple_fields(self, origin: bytes | None) -> list[Header]:
        """The CORS fields of a simple response to a request from `origin`."""
        if origin is None:
            return [VARY_ORIGIN]
        if self.allow_all_origins:
            return self.any_origin_fields
        fields = [*self.encoded_simple_headers]
        if self.is_allowed_origin(origin.decode("latin-1")):
            fields.append((b"access-control-allow-origin", origin))
        fields.append(VARY_ORIGIN)
        return fields


def origin_of(headers: Iterable[Header]) -> bytes | None:
    for name, value in headers:
        if name == b"origin":
            return value
    return None
