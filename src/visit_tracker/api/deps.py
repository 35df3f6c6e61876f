"""What routes receive by dependency injection: the `Tracker` the lifespan opened."""

from typing import Annotated

from fastapi import Depends, Request

from visit_tracker.service import Tracker


def get_tracker(request: Request) -> Tracker:
    tracker: Tracker = request.state.tracker
    return tracker


TrackerDep = Annotated[Tracker, Depends(get_tracker)]
