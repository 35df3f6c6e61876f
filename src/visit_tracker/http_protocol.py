"""uvicorn's HTTP protocol (httptools) with a deadline for reading each request.

uvicorn times out idle keep-alive connections, but not a client that sends a request slowly: one
that opens a connection and dribbles header bytes (slow loris) holds it for as long as it likes.
Here each connection must deliver each complete request (head and body) within
`VISIT_TRACKER_REQUEST_TIMEOUT` seconds, counted from the connection's opening or the request's
first byte; otherwise it is closed. One timer per connection checks the deadline, so a request
costs only a clock reading.
"""

import asyncio
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from visit_tracker.settings import Settings


@cache
def request_timeout() -> float:
    """This process's setting: worker processes read their settings from the environment."""
    return Settings().request_timeout


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """Closes a connection whose request has not fully arrived within the request timeout."""

    def __init__(self, *arguments: Any, **keywords: Any) -> None:
        super().__init__(*arguments, **keywords)
        self._timeout = request_timeout()
        self._request_began: float | None = None
        self._deadline_check: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._request_began = self.loop.time()
        self._check_after(self._timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline_check is not None:
            self._deadline_check.cancel()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._request_began = self.loop.time()
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._request_began = None
        super().on_message_complete()

    def _check_after(self, delay: float) -> None:
        self._deadline_check = self.loop.call_later(delay, self._check_deadline)

    def _check_deadline(self) -> None:
        began = self._request_began
        if began is None:  # between requests: uvicorn's keep-alive timeout applies
            self._check_after(self._timeout)
            return
        remaining = began + self._timeout - self.loop.time()
        if remaining > 0:
            self._check_after(remaining)
        elif not self.transport.is_closing():
            self.transport.close()
