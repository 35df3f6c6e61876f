"""Counters on other people's pages: an SVG badge (`badge.svg`) and a transparent pixel
(`pixel.gif`) under `/v1/counters/{namespace}/{key}`, for pages that can show an image but run
no script of ours — a README, a static site, an e-mail.

Neither answer may be cached anywhere (see `caching`), or views would go uncounted. A store
failure is answered as on every route, with a JSON 503 or 504: an image tag shows nothing then.

Both answer HEAD with the headers of a GET, and a HEAD never counts: link checkers probe a
README's images with HEAD and, refused, would GET them, counting a view nobody made. A HEAD of
the badge reads the value, to give the length of the badge a GET that does not count would
draw; one of the pixel needs no store. The badge's HEAD is its router's (see `routing`), a read
whatever `count` says; the pixel's, a route of its own in the reads class, as a route that
counts gets none from its router.
"""

from typing import Annotated

from fastapi import Query, Request, Response
from pydantic import AfterValidator

from visit_tracker import badges
from visit_tracker.api.caching import NO_CACHE
from visit_tracker.api.counters import Key, Namespace
from visit_tracker.api.deps import TrackerDep, VisitorDep
from visit_tracker.api.rate_limits import HITS, HITS_WHEN_COUNTING, READS
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import (
    BODY_TOO_LARGE,
    RATE_LIMITED,
    STORE_UNAVAILABLE,
    STORE_UNCONFIRMED,
)
from visit_tracker.stores import CounterId

router = Router(prefix="/v1/counters", tags=["embedding"], responses=BODY_TOO_LARGE)

PIXEL = bytes.fromhex(
    "474946383961"  # GIF89a
    "01000100" "800000"  # 1 x 1 pixels; a global colour table of 2 colours follows
    "000000" "ffffff"  # the colour table: black, white
    "21f904" "01000000" "00"  # graphic control extension: colour 0 is transparent
    "2c" "00000000" "01000100" "00"  # image descriptor: at 0,0, 1 x 1, no local colour table
    "02" "02" "4401" "00"  # LZW-compressed pixels (minimum code size 2): clear, 0, end
    "3b"  # trailer
)  # fmt: skip
"""A 1 x 1 transparent GIF of 43 bytes, an image every browser and mail client shows."""

SVG_HEADERS = {
    **NO_CACHE,
    # A badge opened on its own is a document: it may run nothing and load nothing.
    "Content-Security-Policy": "default-src 'none'",
    "X-Content-Type-Options": "nosniff",
}

Label = Annotated[
    str,
    Query(
        max_length=badges.MAX_LABEL,
        description="The text on the left; empty for none. Control characters are refused.",
        json_schema_extra={"pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"},
    ),
    AfterValidator(badges.check_label),
]
Color = Annotated[
    str,
    Query(
        description=f"The colour of the count's side: {badges.COLOR_RULE}.",
        json_schema_extra={"pattern": badges.COLOR_PATTERN},
    ),
    AfterValidator(badges.check_color),
]
Style = Annotated[badges.Style, Query(description="The badge's shape, as on shields.io.")]
CountView = Annotated[bool, Query(description="Count this view as a hit before drawing the badge.")]

IMAGE_ERRORS = {**STORE_UNAVAILABLE, **STORE_UNCONFIRMED, **RATE_LIMITED}


@router.get(
    "/{namespace}/{key}/badge.svg",
    response_class=Response,
    dependencies=[HITS_WHEN_COUNTING],
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "The badge, never cached."},
        **IMAGE_ERRORS,
    },
)
async def badge(
    *,
    request: Request,
    namespace: Namespace,
    key: Key,
    tracker: TrackerDep,
    visitor: VisitorDep,
    count: CountView = False,
    label: Label = "visits",
    color: Color = "brightgreen",
    style: Style = "flat",
) -> Response:
    """An SVG badge showing a counter's value, shortened and rounded down (12.3k); with
    `count=true` the view counts as a hit first (never on HEAD). A counter that does not exist
    shows 0 and is not created by a badge that does not count."""
    counter = CounterId(namespace, key)
    if count and request.method != "HEAD":
        value = await tracker.visit(counter, visitor=visitor)
    else:
        value = await tracker.total(counter)
    svg = badges.render(label=label, count=value, color=color, style=style)
    return Response(svg, media_type="image/svg+xml", headers=SVG_HEADERS)


@router.head("/{namespace}/{key}/pixel.gif", dependencies=[READS], include_in_schema=False)
@router.get(
    "/{namespace}/{key}/pixel.gif",
    response_class=Response,
    dependencies=[HITS],
    responses={
        200: {"content": {"image/gif": {}}, "description": "A 1 x 1 transparent GIF."},
        **IMAGE_ERRORS,
    },
)
async def pixel(
    request: Request, namespace: Namespace, key: Key, tracker: TrackerDep, visitor: VisitorDep
) -> Response:
    """Count a hit (creating the counter on its first; not on HEAD) and answer a 1 x 1
    transparent GIF: an `<img>` counts a page view without JavaScript."""
    if request.method != "HEAD":
        await tracker.visit(CounterId(namespace, key), visitor=visitor)
    return Response(PIXEL, media_type="image/gif", headers=NO_CACHE)
