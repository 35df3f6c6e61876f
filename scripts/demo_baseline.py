"""The original demo, rebuilt as its README describes it: the baseline in `make bench`.

FastAPI with plain `def` routes (Starlette runs them in its thread pool) and one in-memory
counter under a `threading.Lock`, served by uvicorn. Each worker process would count on its
own, so the benchmark serves it with one worker. Not part of visit-tracker.

    uvicorn demo_baseline:app --app-dir scripts --port 8080
"""

import threading
import time
from datetime import UTC, datetime

from fastapi import FastAPI


class VisitCounter:
    """A thread-safe counter, as the demo's counter.py kept it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def increment(self) -> int:
        with self._lock:
            self._value += 1
            return self._value

    @property
    def value(self) -> int:
        with self._lock:
            return self._value


app = FastAPI(title="visit-tracker-api (the original demo, rebuilt)")
counter = VisitCounter()
started = time.time()


@app.post("/visit")
def visit() -> dict[str, int]:
    return {"visits": counter.increment()}


@app.get("/stats")
def stats() -> dict[str, float | int | str]:
    now = datetime.now(UTC)
    return {
        "uptime_seconds": round(time.time() - started, 2),
        "total_visits": counter.value,
        "current_time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
