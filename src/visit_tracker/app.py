"""`create_app`: builds the ASGI application; the store opens and closes with its lifespan."""

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from starlette.types import ASGIApp

from visit_tracker import __version__
from visit_tracker.api import compat, counters, embed, errors, ops, visits
from visit_tracker.api.body_limit import BodyLimit
from visit_tracker.api.html_headers import HtmlSecurityHeaders
from visit_tracker.api.observer import RequestObserver
from visit_tracker.logs import access_log
from visit_tracker.metrics import Metrics
from visit_tracker.service import Tracker
from visit_tracker.settings import Settings

logger = logging.getLogger("visit_tracker")


class State(TypedDict):
    tracker: Tracker
    metrics: Metrics


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The application for these settings (read from the environment when not given).

    The hottest routes are answered in front of the framework (see `fast_path`); the framework
    serves, validates and documents everything, those routes included. `RequestObserver`,
    outermost, gives every response a request id, counts and times every request for the
    metrics, and logs requests when the access log is on.
    """
    settings = settings or Settings()
    metrics = Metrics()
    # Request lines are at level info, so a less verbose level turns them off as well.
    log_requests = settings.access_log and settings.log_level in {"info", "debug"}
    log = access_log(settings.log_format) if log_requests else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        try:
            async with Tracker.running(settings, metrics=metrics) as tracker:
                # What exists once started (modules, the app, its routes) lives as long as the
                # process: spare it the garbage collector's full passes, which otherwise scan it
                # all every few thousand requests and stall every connection meanwhile.
                gc.collect()
                gc.freeze()
                logger.info("ready: store open")
                yield {"tracker": tracker, "metrics": metrics}
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
    app.include_router(embed.router)
    app.include_router(compat.router)
    app.include_router(ops.router)
    errors.install(app)
    framework = BodyLimit(HtmlSecurityHeaders(app), max_bytes=settings.max_body_size)
    return RequestObserver(framework, metrics=metrics, access_log=log)
