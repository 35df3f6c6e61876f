"""A limit on request bodies: one declared larger is refused with a JSON 413, unread.

No route reads a body sent without a length (chunked) today, so such a body is never
collected. Of the direct routes in front of the framework, `POST /visit` and `GET /stats` read
no body, and the hits route takes directly only a body declared within this limit (see
`fast_path`): this guards the framework's routes.
"""

from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

CONTENT_LENGTH = b"content-length"


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The request's `Content-Length`, if it sent a valid one."""
    for name, value in headers:
        if name == CONTENT_LENGTH:
            return int(value) if value.isdigit() else None
    return None


class BodyLimit:
    """Refuses request bodies larger than `max_bytes` with 413 `{"detail": ...}`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.detail = f"The request body is larger than {max_bytes} bytes."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope["headers"])
        if declared is not None and declared > self.max_bytes:
            response = JSONResponse({"detail": self.detail}, status_code=413)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
