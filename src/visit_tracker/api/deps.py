"""What routes receive by dependency injection: the `Tracker` the lifespan opened, this
process's event `Streams`, and its `Metrics`."""

from typing import Annotated

from fastapi import Depends, Request

from visit_tracker.events import Streams
from visit_tracker.metrics import Metrics
from visit_tracker.service import Tracker


async def get_tracker(request: Request) -> Tracker:
    tracker: Tracker = request.state.tracker
    return tracker


TrackerDep = Annotated[Tracker, Depends(get_tracker)]


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_streams(request: Request) -> Streams:
    streams: Streams = request.state.streams
    return streams


StreamsDep = Annotated[Streams, Depends(get_streams)]
