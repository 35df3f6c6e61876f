"""Request ids and the access log, outermost, so that the direct routes get them too.

Every HTTP response carries an `X-Request-ID`: the client's own when it sent a usable one (at
most 128 characters from `A-Z a-z 0-9 . _ : = + / -`, so it can go into a log line as it is),
otherwise a new random one. With the access log on, each request is one log line: request id,
method, path, status and duration. Never the client's address, its User-Agent or the query
string: they identify people, and visit-tracker promises to keep none of that.

This runs for every request, so it stays small: one closure per request, whose calls hand back
the awaitable of the layer below instead of adding a coroutine each.
"""

import os
import re
import time
from collections.abc import Awaitable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from visit_tracker.logs import AccessLog

HEADER = b"x-request-id"
USABLE_ID = re.compile(rb"[A-Za-z0-9._:=+/-]{1,128}")
NO_RESPONSE = 500
"""The status logged when the application failed before answering: the server answers 500."""


def new_request_id() -> bytes:
    """A random id: 32 hexadecimal digits, unique without coordination between processes."""
    return os.urandom(16).hex().encode()


def request_id(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The client's `X-Request-ID` if it sent a usable one, else a new id."""
    for name, value in headers:
        if name == HEADER and USABLE_ID.fullmatch(value):
            return value
    return new_request_id()


def with_id(start: Message, the_id: bytes) -> None:
    """Add the request id to a response's start message."""
    start["headers"] = [*start.get("headers", ()), (HEADER, the_id)]


def sending_id(send: Send, the_id: bytes) -> Send:
    """`send`, adding the request id to the response's headers."""

    def send_with_id(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            with_id(message, the_id)
        return send(message)

    return send_with_id


class RequestLog:
    """Gives each response an `X-Request-ID`; logs each request when given an access log."""

    def __init__(self, app: ASGIApp, *, access_log: AccessLog | None) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif self.access_log is None:
            await self.app(scope, receive, sending_id(send, request_id(scope["headers"])))
        else:
            await self._logged(scope, receive, send, self.access_log)

    async def _logged(self, scope: Scope, receive: Receive, send: Send, log: AccessLog) -> None:
        the_id = request_id(scope["headers"])
        status = NO_RESPONSE

        def send_noting_status(message: Message) -> Awaitable[None]:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                with_id(message, the_id)
            return send(message)

        started = time.perf_counter_ns()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            log.request(
                request_id=the_id.decode(),
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=(time.perf_counter_ns() - started) // 1000 / 1000,
            )
