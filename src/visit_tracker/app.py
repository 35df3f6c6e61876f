"""`create_app`: builds the ASGI application; the store opens and closes with its lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI
from starlette.types import ASGIApp

from visit_tracker import __version__
from visit_tracker.api import counters, errors, ops, visits
from visit_tracker.api.fast_path import FastPath
from visit_tracker.api.request_log import RequestLog
from visit_tracker.logs import access_log
from visit_tracker.service import Tracker
from visit_tracker.settings import Settings


class State(TypedDict):
    tracker: Tracker


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The application for these settings (read from the environment when not given).

    The hottest routes are answered in front of the framework (see `FastPath`); the framework
    serves, validates and documents everything, those routes included. `RequestLog`, outermost,
    gives every response a request id and logs requests when the access log is on.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with Tracker.running(settings) as tracker:
            yield {"tracker": tracker}

    app = FastAPI(
        title="visit-tracker",
        version=__version__,
        summary="A self-hosted visit counter: durable, exact across workers, fast.",
        lifespan=lifespan,
    )
    app.include_router(visits.router)
    app.include_router(counters.router)
    app.include_router(ops.router)
    errors.install(app)
    # Request lines are at level info, so a less verbose level turns them off as well.
    log_requests = settings.access_log and settings.log_level in {"info", "debug"}
    log = access_log(settings.log_format) if log_requests else None
    return RequestLog(FastPath(app), access_log=log)
