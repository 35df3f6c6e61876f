"""`GET /v1/counters/{namespace}/{key}/events`: a counter's value, live, as Server-Sent Events.

    retry: 4000                                      the first event: the value now
    event: value
    data: {"namespace":"example.com","key":"home","value":42}

    event: value                                     then one each time it changes
    data: {"namespace":"example.com","key":"home","value":45}

    : ping                                           and a comment every 15 s of silence

A change made through any process or instance sharing the store shows within
`VISIT_TRACKER_EVENTS_POLL_SECONDS` (see `visit_tracker.events`). Several changes within that
time show as one event with the latest value: a stream carries the value, not each hit.

A stream ends when its client goes away; when its client takes nothing written to it for
`WRITE_TIMEOUT` seconds (it stopped reading: granian's writes wait once the socket's buffers are
full); and when the server stops, cleanly, so that browsers reconnect after `retry`
milliseconds — somewhat different for each stream, so that a restart's clients do not all come
back at once. A counter that does not exist is a 404, as it is for `GET` of the counter; one
deleted while streamed shows the value 0. Opening a stream counts against the client's `reads`
rate limit, and each worker serves at most `VISIT_TRACKER_MAX_STREAMS` at once: past that, a
503 with `Retry-After`. A HEAD answers what a GET would, status and headers, and opens nothing.
"""

import asyncio
import random

import orjson
from fastapi import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from visit_tracker.api.counters import CounterValue, Key, Namespace
from visit_tracker.api.deps import MetricsDep, StreamsDep, TrackerDep
from visit_tracker.api.rate_limits import READS
from visit_tracker.api.routing import Router
from visit_tracker.api.schemas import BODY_TOO_LARGE, NOT_FOUND, RATE_LIMITED, ErrorBody, Responses
from visit_tracker.events import Subscription
from visit_tracker.metrics import Metrics
from visit_tracker.stores import CounterId

router = Router(prefix="/v1/counters", tags=["events"], responses=BODY_TOO_LARGE)

PING_SECONDS = 15.0
"""Silence after which a comment is sent: proxies close connections idle for longer (nginx
after 60 s by default, `deploy/nginx.conf` after 30 s)."""
PING = b": ping\n\n"
WRITE_TIMEOUT = 10.0
"""Seconds a write may wait for the client to take what was written before."""
RETRY_MS = 2000
"""Milliseconds a browser waits before reconnecting a stream that ended; each stream adds up to
4 s more at random."""

EVENT_SCHEMA = {
    "type": "object",
    "description": "One event: the counter's value, a JSON object in `data`.",
    "required": ["event", "data"],
    "properties": {
        "event": {"const": "value"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": CounterValue.model_json_schema(),
        },
        "retry": {
            "type": "integer",
            "minimum": 0,
            "description": "On the first event: milliseconds to wait before reconnecting.",
        },
    },
}
EVENT_STREAM: Responses = {
    200: {
        "description": "An endless stream of Server-Sent Events: the counter's value now, then "
        "each time it changes (through any instance), and a `: ping` comment every 15 s of "
        "silence.",
        "content": {"text/event-stream": {"schema": EVENT_SCHEMA}},
    }
}
NO_STREAM: Responses = {
    503: {
        "model": ErrorBody,
        "description": "The store did not answer in time, the server is shutting down, or this "
        "worker serves as many streams as it may (`VISIT_TRACKER_MAX_STREAMS`). Retry after "
        "`Retry-After` seconds.",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        },
    }
}


def value_event(counter: CounterId, value: int) -> bytes:
    data = orjson.dumps({"namespace": counter.namespace, "key": counter.key, "value": value})
    return b"event: value\ndata: " + data + b"\n\n"


STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on as it comes
}
"""A stream's headers; it has no length."""


class StreamHeaders(Response):
    """The answer to a HEAD of a stream: a stream's status and headers, and no body. It opens
    no stream: a HEAD must not hold one of the worker's streams, nor wait for events."""

    def __init__(self) -> None:
        self.status_code = 200
        self.background = None
        self.init_headers(STREAM_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b""})


class EventStream(Response):
    """Writes a subscription's values as events until it closes, or its client goes away or
    stops reading."""

    media_type = STREAM_HEADERS["Content-Type"]

    def __init__(self, subscription: Subscription, *, value: int, metrics: Metrics) -> None:
        self.status_code = 200
        self.background = None
        self.subscription = subscription
        self.metrics = metrics
        # getrandbits: a spread, not a secret, like the request ids of `observer`.
        retry = RETRY_MS + random.getrandbits(12)
        self.first = b"retry: %d\n" % retry + value_event(subscription.counter, value)
        self.init_headers(STREAM_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        subscription = self.subscription
        watcher = asyncio.create_task(self._close_when_gone(receive))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if not await self._write(send, self.first):
                return
            while True:
                try:
                    async with asyncio.timeout(PING_SECONDS):
                        value = await subscription.next_value()
                except TimeoutError:
                    chunk = PING
                else:
                    if value is None:  # closed
                        break
                    chunk = value_event(subscription.counter, value)
                if not await self._write(send, chunk):
                    return
            if not watcher.done():  # the server stops: end the stream, the client reconnects
                await self._write(send, b"", more=False)
        finally:
            watcher.cancel()
            subscription.release()

    async def _close_when_gone(self, receive: Receive) -> None:
        message: Message = {}
        while message.get("type") != "http.disconnect":
            message = await receive()
        self.subscription.close()

    async def _write(self, send: Send, chunk: bytes, *, more: bool = True) -> bool:
        """Send `chunk`; False if the client is gone or did not take it in time."""
        try:
            async with asyncio.timeout(WRITE_TIMEOUT):
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
        except TimeoutError:
            self.metrics.stream_dropped()
            return False
        except OSError:  # servers of ASGI 2.4 and later say so: the client is gone
            return False
        return True


@router.get(
    "/{namespace}/{key}/events",
    # Not EventStream: its media type would be documented for the errors' JSON too.
    response_class=Response,
    dependencies=[READS],
    responses={**EVENT_STREAM, **NOT_FOUND, **NO_STREAM, **RATE_LIMITED},
)
async def events(
    request: Request,
    namespace: Namespace,
    key: Key,
    *,
    tracker: TrackerDep,
    streams: StreamsDep,
    metrics: MetricsDep,
) -> Response:
    """A counter's value now, then each time it changes, through whichever instance, as
    Server-Sent Events (`new EventSource(url)` in a browser, `event: value`)."""
    counter = CounterId(namespace, key)
    record = await tracker.counter(counter)
    if request.method == "HEAD":  # what a GET would answer, without opening a stream
        streams.check_room()
        return StreamHeaders()
    return EventStream(streams.open(counter, record.value), value=record.value, metrics=metrics)
