"""The original contract: `POST /visit` and `GET /stats`, field for field."""

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from visit_tracker.api.deps import TrackerDep, VisitorDep
from visit_tracker.api.rate_limits import VISIT
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import RATE_LIMITED, STORE_UNAVAILABLE, STORE_UNCONFIRMED

# Unlike the other routers, no 413 (BODY_TOO_LARGE): both routes are answered in front of the
# framework and its body limit, and read no body.
router = Router(tags=["visits"], dependencies=[VISIT])


class VisitCount(BaseModel):
    visits: int = Field(description="Total visits, this one included.", examples=[5])


class Stats(BaseModel):
    uptime_seconds: float = Field(
        description="Seconds since this server process started.", examples=[120.5]
    )
    total_visits: int = Field(description="Total visits counted.", examples=[5])
    current_time: str = Field(
        description="The server's clock: UTC, ISO-8601 with milliseconds.",
        examples=["2025-07-22T01:00:00.123Z"],
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
    )


def utc_timestamp(moment: datetime) -> str:
    """`2025-07-22T01:00:00.123Z`: UTC with milliseconds and a Z, as the original API wrote it."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.post("/visit", responses={**STORE_UNAVAILABLE, **STORE_UNCONFIRMED, **RATE_LIMITED})
async def visit(tracker: TrackerDep, visitor: VisitorDep) -> VisitCount:
    """Count one visit and return the total, this visit included.

    The answer comes only after the visit is stored: a 200 means it is counted and survives a
    restart. Concurrent visits each get their own number.
    """
    return VisitCount(visits=await tracker.visit(visitor=visitor, original=True))


@router.get("/stats", responses={**STORE_UNAVAILABLE, **RATE_LIMITED})
async def stats(tracker: TrackerDep) -> Stats:
    """Uptime of this server process, total visits, and the current time."""
    return Stats(
        uptime_seconds=tracker.uptime(),
        total_visits=await tracker.total(),
        current_time=utc_timestamp(datetime.now(UTC)),
    )
