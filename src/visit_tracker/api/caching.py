"""Headers that keep browsers, CDNs and image proxies (GitHub's camo among them) from caching an
answer: each view of a badge or a pixel must reach the server to be counted and to show the
count of that moment."""

from fastapi import Response

NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
    "Expires": "0",  # for HTTP/1.0 caches, which ignore Cache-Control
    "Pragma": "no-cache",
}


async def uncached(response: Response) -> None:
    """A route dependency: the route's answer carries `NO_CACHE`."""
    response.headers.update(NO_CACHE)
