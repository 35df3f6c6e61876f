"""What routes receive by dependency injection: the `Tracker` the lifespan opened, this
process's event `Streams`, its `Metrics`, and who is visiting."""

from typing import Annotated

from fastapi import Depends, Request
from starlette.types import Scope

from visit_tracker.events import Streams
from visit_tracker.metrics import Metrics
from visit_tracker.rate_limits.clients import client_address
from visit_tracker.service import Tracker
from visit_tracker.visitors import Visitor


async def get_tracker(request: Request) -> Tracker:
    tracker: Tracker = request.state.tracker
    return tracker


TrackerDep = Annotated[Tracker, Depends(get_tracker)]


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def visitor_of(scope: Scope) -> Visitor:
    """The request's visitor: its client's address (a trusted proxy's forwarded one, see
    `proxies`) and its User-Agent."""
    user_agent = b""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value
            break
    return Visitor(client_address(scope.get("client")), user_agent.decode("latin-1"))


async def get_visitor(request: Request) -> Visitor:
    return visitor_of(request.scope)


VisitorDep = Annotated[Visitor, Depends(get_visitor)]


async def get_streams(request: Request) -> Streams:
    streams: Streams = request.state.streams
    return streams


StreamsDep = Annotated[Streams, Depends(get_streams)]
