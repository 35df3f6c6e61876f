"""Probes for orchestrators and load balancers."""

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from visit_tracker.api.deps import TrackerDep
from visit_tracker.api.schemas import STORE_UNAVAILABLE

router = APIRouter(tags=["operations"])


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
