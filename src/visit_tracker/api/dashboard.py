"""The dashboard: HTML pages of the visits, at `/` and `/dashboard/{namespace}/{key}`.

The pages show what the JSON routes answer — they call the same route functions and read
their answers' fields — so a field the API gains (unique visitors) shows here too, and a dash
stands in for one it does not have. They are drawn on the server, charts included (SVG, each
with a table that says the same in text); `static/dashboard.js` keeps them live by reading the
counter's events (or polling its JSON where the event stream is not served) and fetching the
page again when the value changes, to swap in its `data-live` sections.

A counter page that cannot be shown — no such counter, or a name that is not one — is a small
HTML page saying so, with the status the API would answer (404, 422), to a browser; a client
that prefers JSON to HTML, by its `Accept` header, gets the API's JSON refusal.
"""

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined

from visit_tracker import charts
from visit_tracker.api import counters, history
from visit_tracker.api.assets import asset_url
from visit_tracker.api.counters import Key, Namespace
from visit_tracker.api.deps import TrackerDep
from visit_tracker.api.errors import sentence
from visit_tracker.api.negotiation import prefers_json
from visit_tracker.api.rate_limits import READS
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import (
    BODY_TOO_LARGE,
    NOT_FOUND,
    RATE_LIMITED,
    STORE_UNAVAILABLE,
    Responses,
)
from visit_tracker.errors import CounterNotFound
from visit_tracker.service import Tracker
from visit_tracker.stores import DEFAULT_COUNTER, CounterId

T = TypeVar("T")

TOP_COUNTERS = 10
PAGES_OF = 5
"""The home page's top pages are those of the counters with the most visits, this many."""
TOP_VIEWS = 10


def as_json(responses: Responses) -> Responses:
    """Failure answers documented as JSON, as they are sent, on routes whose own answer is HTML
    (the framework would document every answer of such a route as HTML)."""
    documented: Responses = {}
    for status, response in responses.items():
        fields = {name: value for name, value in response.items() if name != "model"}
        schema = {"$ref": f"#/components/schemas/{response['model'].__name__}"}
        documented[status] = {**fields, "content": {"application/json": {"schema": schema}}}
    return documented


class PageRoute(APIRoute):
    """A dashboard route whose refusals about the counter asked for (there is none, or its name
    is not one) are pages to a browser, and the API's JSON to a client that prefers JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (CounterNotFound, RequestValidationError) as error:
                if prefers_json(request.headers.get("accept", "")):
                    raise
                return refusal_page(error)

        return handle


def refusal_page(error: CounterNotFound | RequestValidationError) -> HTMLResponse:
    if isinstance(error, CounterNotFound):
        return page(
            "refused.html",
            status_code=404,
            title="No such counter",
            lines=[sentence(error), "Nothing has counted a visit on it yet, or it was deleted."],
        )
    return page(
        "refused.html",
        status_code=422,
        title="Not a counter's name",
        lines=[
            f"The {problem['loc'][-1]} “{problem['input']}” "
            f"{problem['msg'].removeprefix('Value error, ')}."
            for problem in error.errors()
        ],
    )


PAGE = {"text/html": {"schema": {"type": "string"}}}
REFUSED_PAGES: Responses = {
    404: {
        "description": "No such counter: a page that says so, or to a client that prefers JSON "
        "(by `Accept`), the API's JSON.",
        "content": {**PAGE, **as_json(NOT_FOUND)[404]["content"]},
    },
    422: {
        "description": "The namespace or key is not a counter's name: a page that says so, or to "
        "a client that prefers JSON (by `Accept`), the API's JSON.",
        "content": {
            **PAGE,
            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}},
        },
    },
}
"""The counter page's refusals, documented with both their forms."""

router = Router(
    route_class=PageRoute,
    tags=["dashboard"],
    dependencies=[READS],
    default_response_class=HTMLResponse,
    responses=as_json({**BODY_TOO_LARGE, **STORE_UNAVAILABLE, **RATE_LIMITED}),
)

templates = Environment(
    loader=PackageLoader("visit_tracker"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(asset=asset_url, count=charts.count, duration=charts.duration)

PAGE_HEADERS = {"Cache-Control": "no-cache"}
"""The figures change with every visit: a browser asks again each time it shows a page."""


def page(template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


@router.get("/", responses={200: {"description": "The dashboard's page."}})
async def home(tracker: TrackerDep) -> HTMLResponse:
    """The dashboard: visits counted by `POST /visit` (the counter default/visits) per hour and
    per day, unique visitors, uptime, the counters with the most visits and their top pages."""
    counter, top = await asyncio.gather(
        counter_details(tracker, DEFAULT_COUNTER), tracker.top_counters(TOP_COUNTERS)
    )
    views = await asyncio.gather(
        *(
            found(history.pages(c.namespace, c.key, tracker, limit=TOP_VIEWS))
            for c, _ in top[:PAGES_OF]
        )
    )
    top_pages = sorted(
        (
            (view.page, c, view.hits)
            for (c, _), answer in zip(top, views, strict=False)
            if answer is not None
            for view in answer.pages
        ),
        key=lambda row: -row[2],
    )[:TOP_VIEWS]
    return page(
        "home.html",
        counter=DEFAULT_COUNTER,
        details=counter,
        uptime=tracker.uptime(),
        top_counters=top,
        top_pages=top_pages,
        pages_of=min(PAGES_OF, len(top)),
    )


@router.get(
    "/dashboard/{namespace}/{key}",
    responses={200: {"description": "The counter's page."}, **REFUSED_PAGES},
)
async def counter_page(
    namespace: Namespace, key: Key, tracker: TrackerDep, request: Request
) -> HTMLResponse:
    """A counter's page: its value, unique visitors, visits per hour and per day, its top pages
    and referrers, and the snippet that counts a page's views on it."""
    counter = CounterId(namespace, key)
    details = await counter_details(tracker, counter)
    if details is None:
        raise CounterNotFound(f"counter {namespace}/{key} does not exist")
    views = await history.pages(namespace, key, tracker, limit=TOP_VIEWS)
    return page(
        "counter.html",
        counter=counter,
        details=details,
        views=views.model_dump(),
        origin=str(request.base_url).rstrip("/"),
    )


async def counter_details(tracker: Tracker, counter: CounterId) -> dict[str, Any] | None:
    """A counter's fields and its hourly and daily charts, as the JSON routes answer them; None
    if it does not exist."""
    ns, key = counter.namespace, counter.key
    answers = await found(
        asyncio.gather(
            counters.read(ns, key, tracker),
            history.series(ns, key, tracker, interval="hour"),
            history.series(ns, key, tracker, interval="day"),
        )
    )
    if answers is None:
        return None
    fields, hourly, daily = answers
    return {
        **fields.model_dump(),
        "hourly": charts.bar_chart(hourly.model_dump()["buckets"], interval="hour"),
        "daily": charts.bar_chart(daily.model_dump()["buckets"], interval="day"),
    }


async def found(answer: Awaitable[T]) -> T | None:
    """The answer, or None if it is about a counter that does not exist (or no longer)."""
    try:
        return await answer
    except CounterNotFound:
        return None
