"""Security headers on HTML answers: the dashboard and the `/docs` and `/redoc` pages.

The dashboard's pages load their script and stylesheet from this server and hold no inline
script or style: their Content-Security-Policy allows this origin ('self') and nothing else.
The documentation pages load their scripts and styles from the CDN FastAPI names and start with
an inline script; their policy allows exactly those, each inline script by its SHA-256 hash,
computed from the page as it is sent, so the policy follows the page if FastAPI changes it.
JSON answers need none of this: browsers do not render them as documents.
"""

import base64
import hashlib
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
POLICY = (
    "default-src 'none'; "
    "script-src https://cdn.jsdelivr.net {hashes}; "
    "style-src https://cdn.jsdelivr.net https://fonts.googleapis.com 'unsafe-inline'; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "connect-src 'self'; worker-src blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""ReDoc needs inline styles and a worker made from a blob; the Swagger UI, inline styles."""
PAGE_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The dashboard's pages: everything from this server, nothing inline, no framing."""
FIXED_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def content_security_policy(page: bytes) -> bytes:
    """The policy for this page: its inline scripts allowed by hash, nothing else inline."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in INLINE_SCRIPT.findall(page)
    )
    return POLICY.format(hashes=hashes).encode()


class HtmlSecurityHeaders:
    """Adds the security headers to every `text/html` answer of `app`: the documentation's
    policy to the pages at `doc_paths`, the strict `PAGE_POLICY` to every other."""

    def __init__(self, app: ASGIApp, *, doc_paths: frozenset[str]) -> None:
        self.app = app
        self.doc_paths = doc_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] not in self.doc_paths:
            await self.app(scope, receive, self.strict(send))
            return
        start: Message | None = None
        body: list[bytes] = []

        async def send_secured(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", ()))
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    await send(message)
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            page = b"".join(body)
            policy = (b"content-security-policy", content_security_policy(page))
            start["headers"] = [*start.get("headers", ()), *FIXED_HEADERS, policy]
            await send(start)
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, send_secured)

    @staticmethod
    def strict(send: Send) -> Send:
        """`send`, adding the headers and `PAGE_POLICY` to an HTML answer as it starts."""

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                if dict(headers).get(b"content-type", b"").startswith(b"text/html"):
                    policy = (b"content-security-policy", PAGE_POLICY)
                    message["headers"] = [*headers, *FIXED_HEADERS, policy]
            await send(message)

        return send_secured
