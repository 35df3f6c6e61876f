"""`create_app`: builds the ASGI application; the store opens and closes with its lifespan."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from starlette.types import ASGIApp

from visit_tracker import __version__
from visit_tracker.api import (
    assets,
    compat,
    counters,
    dashboard,
    embed,
    errors,
    events,
    fast_path,
    history,
    ops,
    visits,
)
from visit_tracker.api.body_limit import BodyLimit
from visit_tracker.api.cors import Cors
from visit_tracker.api.fast_path import HOT_ROUTES, direct_answer
from visit_tracker.api.html_headers import HtmlSecurityHeaders
from visit_tracker.api.observer import DirectAnswer, PatternRoute, RequestObserver
from visit_tracker.api.proxies import behind_proxies
from visit_tracker.api.rate_limits import RateLimitFields, limit_directly, route_class
from visit_tracker.events import Streams
from visit_tracker.logs import access_log
from visit_tracker.metrics import Metrics
from visit_tracker.rate_limits import RateLimiter, RouteClass
from visit_tracker.rate_limits.limiter import quotas
from visit_tracker.service import Tracker
from visit_tracker.settings import Settings, split_origins
from visit_tracker.stopping import on_stop_signal

logger = logging.getLogger("visit_tracker")


class State(TypedDict):
    tracker: Tracker
    streams: Streams
    metrics: Metrics
    limiter: RateLimiter


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The application for these settings (read from the environment when not given).

    The hottest routes are answered in front of the framework (see `fast_path`); the framework
    serves, validates and documents everything, those routes included. `RequestObserver` gives
    every response a request id, counts and times every request for the metrics, and logs
    requests when the access log is on. Then come CORS, the body size limit, the HTML pages'
    security headers, and the rate limits' response fields. In front of everything, when proxies
    are trusted, `behind_proxies` puts the client's own address and scheme in the scope.
    """
    settings = settings or Settings()
    metrics = Metrics()
    # Request lines are at level info, so a less verbose level turns them off as well.
    log_requests = settings.access_log and settings.log_level in {"info", "debug"}
    log = access_log(settings.log_format) if log_requests else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        try:
            async with (
                Tracker.running(settings, metrics=metrics) as tracker,
                RateLimiter.running(settings, metrics=metrics) as limiter,
            ):
                streams = Streams(
                    tracker.total,
                    poll_seconds=settings.events_poll_seconds,
                    limit=settings.max_streams,
                    metrics=metrics,
                )
                # What exists once started (modules, the app, its routes) lives as long as the
                # process: spare it the garbage collector's full passes, which otherwise scan it
                # all every few thousand requests and stall every connection meanwhile.
                gc.collect()
                gc.freeze()
                logger.info("ready: store open")
                # Event streams never end by themselves: end them as soon as the server is
                # told to stop, or it would wait for them instead of stopping.
                with on_stop_signal(streams.close):
                    yield {
                        "tracker": tracker,
                        "streams": streams,
                        "metrics": metrics,
                        "limiter": limiter,
                    }
                streams.close()
            logger.info("stopped: pending visits committed, store closed")
        finally:
            metrics.close()
            if log is not None:
                log.flush()

    app = FastAPI(
        title="visit-tracker",
        version=__version__,
        summary="A self-hosted visit counter: durable, exact across workers, fast.",
        lifespan=lifespan,
    )
    app.include_router(visits.router)
    app.include_router(counters.router)
    app.include_router(history.router)
    app.include_router(events.router)
    app.include_router(embed.router)
    app.include_router(compat.router)
    app.include_router(ops.router)
    app.include_router(dashboard.router)
    app.include_router(assets.router)
    errors.install(app)
    origins = split_origins(settings.cors_origins)
    doc_paths = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    framework: ASGIApp = BodyLimit(
        HtmlSecurityHeaders(
            RateLimitFields(app), doc_paths=frozenset(path for path in doc_paths if path)
        ),
        max_bytes=settings.max_body_size,
    )
    cors = Cors(framework, origins=origins) if origins else None
    observed = RequestObserver(
        cors or framework,
        direct_routes=direct_routes(settings, cors),
        pattern_routes=[direct_hits(settings, cors)],
        metrics=metrics,
        access_log=log,
    )
    return behind_proxies(observed, trusted_proxies=settings.trusted_proxies)


def direct_routes(settings: Settings, cors: Cors | None) -> dict[tuple[str, str], DirectAnswer]:
    """The routes answered in front of the framework, by method and path."""
    return {
        method_and_path: with_layers(
            direct_answer(endpoint),
            kind=route_class(visits.router, documented),
            settings=settings,
            cors=cors,
        )
        for method_and_path, (documented, endpoint) in HOT_ROUTES.items()
    }


def direct_hits(settings: Settings, cors: Cors | None) -> PatternRoute:
    """The hits route, answered in front of the framework when its request is plain."""
    answer = with_layers(
        direct_answer(fast_path.hit),
        kind=route_class(counters.router, counters.hit),
        settings=settings,
        cors=cors,
    )
    return PatternRoute(
        "POST",
        fast_path.HITS_PATH,
        fast_path.HITS_TEMPLATE,
        fast_path.hit_taker(max_body_size=settings.max_body_size),
        answer,
    )


def with_layers(
    answer: DirectAnswer, *, kind: RouteClass | None, settings: Settings, cors: Cors | None
) -> DirectAnswer:
    """A direct route's answer with the rate limit of its class (from its route's metadata)
    if that class is limited, and CORS if it is on."""
    if kind is not None and kind in quotas(settings):
        answer = limit_directly(answer, kind)
    if cors is not None:
        answer = cors.direct(answer)
    return answer
