"""HEAD wherever a GET only reads (RFC 9110 §9.3.2): every router of the API is a `Router`.

A GET route registered on a `Router` gets a twin for HEAD, registered right after it with the
same endpoint, dependencies and response class: the same rate limit, validation, status and
headers, Content-Length included, from the same layers (CORS, caching headers, ETags). The
server sends no body for a HEAD. Uptime checkers, link checkers and caches probe with HEAD;
refused, some fall back to GET.

A HEAD must never count nor change anything, so a GET that does — a route of the rate-limit
class `hits` or `admin` (see `rate_limits`), as CountAPI's `/hit/`, `/set/`, `/update/` and
`/create` are — gets no twin: HEAD of it is the framework's JSON 405 with `Allow: GET`. A route
whose class depends on the request (the badge, which counts with `count=true`) answers a HEAD
as a read. An endpoint that must answer HEAD otherwise than by running as for GET reads
`request.method`: the badge counts nothing on HEAD, the event stream opens no stream.

The twins stay out of the OpenAPI document, where clients take HEAD for granted beside GET.
"""

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, params

from visit_tracker.api.rate_limits import changes_counters


class Router(APIRouter):
    """An `APIRouter` whose GET routes answer HEAD too, unless they count or change counters."""

    def add_api_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        methods: set[str] | list[str] | None = None,
        dependencies: Sequence[params.Depends] | None = None,
        **options: Any,
    ) -> None:
        super().add_api_route(path, endpoint, methods=methods, dependencies=dependencies, **options)
        if {method.upper() for method in methods or ["GET"]} != {"GET"}:
            return
        if changes_counters([*self.dependencies, *(dependencies or ())]):
            return
        super().add_api_route(
            path,
            endpoint,
            methods=["HEAD"],
            dependencies=dependencies,
            **{**options, "include_in_schema": False},
        )
