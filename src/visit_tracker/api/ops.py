"""Probes for orchestrators and load balancers.

Every route here answers HEAD as it answers GET, status and headers alike, and the server sends
no body (see `routing`): uptime checkers and load balancers often probe with HEAD.
"""

from typing import Literal

from fastapi import Response
from pydantic import BaseModel

from visit_tracker.api.deps import MetricsDep, TrackerDep
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import BODY_TOO_LARGE, STORE_UNAVAILABLE

router = Router(tags=["operations"], responses=BODY_TOO_LARGE)


class Status(BaseModel):
    status: Literal["ok"] = "ok"


@router.get("/healthz")
async def healthz() -> Status:
    """The process is up and serving HTTP."""
    return Status()


@router.get("/readyz", responses=STORE_UNAVAILABLE)
async def readyz(tracker: TrackerDep) -> Status:
    """The store answers; a load balancer may send visits here."""
    await tracker.check_ready()
    return Status()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Every worker process's metrics in the Prometheus text format, whichever one answers."""
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
