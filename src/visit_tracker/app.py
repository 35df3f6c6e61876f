"""`create_app`: builds the ASGI application; the store opens and closes with its lifespan."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypedDict

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from visit_tracker import __version__
from visit_tracker.api import ops, visits
from visit_tracker.errors import ShuttingDown, StoreError
from visit_tracker.service import Tracker
from visit_tracker.settings import Settings

logger = logging.getLogger("visit_tracker")

RETRY_AFTER_SECONDS = "1"


class State(TypedDict):
    tracker: Tracker


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for these settings (read from the environment when not given)."""
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
    app.include_router(ops.router)
    app.add_exception_handler(StoreError, _store_failed)
    app.add_exception_handler(ShuttingDown, _shutting_down)
    app.add_exception_handler(Exception, _unexpected)
    return app


async def _store_failed(request: Request, error: Exception) -> JSONResponse:
    logger.error("store failed on %s %s: %s", request.method, request.url.path, error)
    return JSONResponse(
        {"detail": "The visit store is unavailable; the visit was not counted. Retry shortly."},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _shutting_down(_: Request, __: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "The server is shutting down; the visit was not counted. Retry shortly."},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse({"detail": "Internal server error."}, status_code=500)
