"""The files browsers load from this server: the dashboard's script and stylesheet, and
`tracker.js`, which other sites embed to count their page views.

Each file is read once, at import, from the package's `static/` directory. The dashboard names
its files with their version (`/static/dashboard.css?v=…`, a hash of the content), so a browser
may keep them for good: a new release names new URLs. `tracker.js` is embedded under a fixed
URL, so browsers keep it a day and then ask again, which costs a 304 while it is unchanged.
Each file answers HEAD as it answers GET, without the body, for link checkers and caches (see
`routing`).
"""

import hashlib
from dataclasses import dataclass
from importlib.resources import files

from fastapi import Request, Response
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from visit_tracker.api.routing import Router

STATIC = files("visit_tracker") / "static"

MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}

VERSIONED_CACHE = "public, max-age=31536000, immutable"
"""A file asked for by its current version never changes."""
UNVERSIONED_CACHE = "no-cache"
"""A file asked for by another version or none: ask again each time (a 304 when unchanged)."""
TRACKER_CACHE = "public, max-age=86400"
"""tracker.js: a day in the browser's cache, so a change reaches every site within a day."""
FRESHNESS = StaticFiles()
"""Serves nothing: its `is_not_modified` is Starlette's test of `If-None-Match` as RFC 9110
has it (a list of tags, `*`, weak tags compared weakly), the one its own files get."""


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    version: str
    """The first 16 hexadecimal digits of the body's SHA-256: its URL's `v` and its ETag."""

    @classmethod
    def load(cls, name: str) -> "Asset":
        body = (STATIC / name).read_bytes()
        media_type = MEDIA_TYPES[name[name.rindex(".") :]]
        return cls(body, media_type, hashlib.sha256(body).hexdigest()[:16])

    def answer(self, request: Request, *, cache: str) -> Response:
        """The file, or a 304 if the browser has this version already."""
        headers = {
            "Cache-Control": cache,
            "ETag": f'"{self.version}"',
            "X-Content-Type-Options": "nosniff",
        }
        if FRESHNESS.is_not_modified(Headers(headers), request.headers):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


DASHBOARD = {name: Asset.load(name) for name in ("dashboard.css", "dashboard.js")}
TRACKER = Asset.load("tracker.min.js")

router = Router(include_in_schema=False)


def asset_url(name: str) -> str:
    """The URL of one of the dashboard's files, with its current version."""
    return f"/static/{name}?v={DASHBOARD[name].version}"


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    """One of the dashboard's files."""
    asset = DASHBOARD.get(name)
    if asset is None:
        raise HTTPException(404, "Not Found")
    current = request.query_params.get("v") == asset.version
    return asset.answer(request, cache=VERSIONED_CACHE if current else UNVERSIONED_CACHE)


@router.get("/tracker.js")
async def tracker_js(request: Request) -> Response:
    """The script that counts a page view on the page that embeds it (see the README)."""
    return TRACKER.answer(request, cache=TRACKER_CACHE)
