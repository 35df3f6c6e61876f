"""`GET /v1/counters/{namespace}/{key}/events`: live across instances, bounded, stopped in time.

The streams are read from real servers as a browser's EventSource reads them: a line at a time,
an event at each blank line, comments skipped.
"""

import json
import signal
import ssl
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.conftest import NewStoreUrl
from tests.server import AS_BROWSER, Server, running_server
from tests.test_api import head_on_the_wire
from tests.test_metrics import samples, value
from visit_tracker.api import events
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

POLL = ("--events-poll-seconds", "0.1")
WAIT = 10.0
"""Seconds a test waits for what should come within a poll or two."""


class EventReader:
    """The events of a stream, one at a time: each a dict of its fields."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for line in self._lines:
            if not line:
                if fields:
                    return fields
            elif not line.startswith(":"):  # a comment: a ping
                name, _, text = line.partition(":")
                fields[name] = text.removeprefix(" ")
        raise EOFError("the stream ended")

    def value(self) -> int:
        """The value the next event carries."""
        event = self.next()
        assert event["event"] == "value"
        counted: int = json.loads(event["data"])["value"]
        return counted


@contextmanager
def stream(
    url: str, *, verify: ssl.SSLContext | bool = True, **headers: str
) -> Iterator[EventReader]:
    """An open event stream whose status is 200; closed, as a browser tab closes, on exit."""
    with httpx2.stream("GET", url, headers=headers, timeout=WAIT, verify=verify) as response:
        assert response.status_code == 200, response.read()
        yield EventReader(response)


def hit(server: Server | str, path: str, *, verify: ssl.SSLContext | bool = True) -> int:
    """Count a hit through the server or the proxy at that URL; the counter's new value."""
    url = server if isinstance(server, str) else server.url
    answer = httpx2.post(f"{url}/v1/counters/{path}/hits", headers=AS_BROWSER, verify=verify)
    answer.raise_for_status()
    counted: int = answer.json()["value"]
    return counted


def gauges(server: Server) -> tuple[float, float]:
    """The server's open streams and the counters it polls for them, from /metrics."""
    found = samples(httpx2.get(f"{server.url}/metrics").text)
    return value(found, "visit_tracker_event_streams"), value(found, "visit_tracker_event_counters")


def wait_for_gauges(server: Server, expected: tuple[float, float]) -> None:
    deadline = time.monotonic() + WAIT
    while (found := gauges(server)) != expected:
        assert time.monotonic() < deadline, f"gauges stayed at {found}, not {expected}"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgresql"])
def test_a_stream_from_one_instance_shows_hits_made_through_another(
    kind: str, new_store_url: NewStoreUrl
) -> None:
    """Two instances share a store: a stream from the first starts at the value and shows the
    hits counted by the second, in order, up to the last."""
    store = new_store_url(kind)
    with ExitStack() as stack:
        first, second = (
            stack.enter_context(running_server("--store", store, *POLL)) for _ in range(2)
        )
        assert hit(second, "site/home") == 1
        with stream(f"{first.url}/v1/counters/site/home/events") as events_:
            assert events_.value() == 1
            for _ in range(3):
                hit(second, "site/home")
            seen = [events_.value()]
            while seen[-1] < 4:
                seen.append(events_.value())
    assert seen == sorted(set(seen))


def test_a_stream_starts_with_its_value_a_retry_time_and_the_headers_proxies_need() -> None:
    """The first event carries the value and a reconnection time; the answer is not cached,
    not buffered by nginx, and readable from other origins' pages."""
    with running_server("--store", "memory://") as server:
        hit(server, "site/home")
        url = f"{server.url}/v1/counters/site/home/events"
        with stream(url, Origin="https://example.org") as events_:
            headers = events_.response.headers
            first = events_.next()
    assert first["event"] == "value"
    assert json.loads(first["data"]) == {"namespace": "site", "key": "home", "value": 1}
    assert events.RETRY_MS <= int(first["retry"]) < events.RETRY_MS + 4096
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["access-control-allow-origin"] == "*"


def test_a_stream_of_a_missing_counter_is_a_json_404() -> None:
    """A counter that does not exist streams nothing: a JSON 404, as reading it gets."""
    with TestClient(create_app(Settings(store="memory://"))) as client:
        response = client.get("/v1/counters/site/missing/events")
    assert response.status_code == 404
    assert response.json() == {"detail": "Counter site/missing does not exist."}


def test_opening_a_stream_counts_against_the_reads_limit() -> None:
    """A stream is a read: once a client has spent its reads, its stream gets a 429."""
    settings = Settings(store="memory://", rate_limit_reads=0.001, rate_limit_reads_burst=1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/counters/site/home").status_code == 404
        refused = client.get("/v1/counters/site/home/events")
    assert refused.status_code == 429
    assert "retry-after" in refused.headers


def test_past_the_cap_a_stream_is_a_503_and_a_client_that_leaves_frees_its_slot() -> None:
    """With as many streams open as the cap, another is a JSON 503 with Retry-After; a client
    that disconnects frees its slot at once, and its counter's poller stops with it."""
    with running_server("--store", "memory://", "--max-streams", "2", *POLL) as server:
        for key in ("home", "about"):
            hit(server, f"site/{key}")
        url = f"{server.url}/v1/counters/site"
        with stream(f"{url}/home/events") as home:
            home.value()
            with stream(f"{url}/about/events") as about:
                about.value()
                assert gauges(server) == (2, 2)
                refused = httpx2.get(f"{url}/home/events")
                assert refused.status_code == 503
                assert refused.headers["retry-after"] == "5"
                assert "event streams" in refused.json()["detail"]
            wait_for_gauges(server, (1, 1))
            with stream(f"{url}/home/events") as again:
                assert again.value() == 1
                assert gauges(server) == (2, 1)
        wait_for_gauges(server, (0, 0))


def test_head_of_a_stream_answers_its_headers_at_once_and_opens_none() -> None:
    """Through the real server, HEAD of a stream sends a stream's status and header fields,
    no byte of body, and ends at once, holding no stream; a missing counter is GET's 404, and
    with every stream taken it is GET's 503 with Retry-After."""
    with running_server("--store", "memory://", "--max-streams", "1", *POLL) as server:
        hit(server, "site/home")
        status, fields, after = head_on_the_wire(server, "/v1/counters/site/home/events")
        missing, _, _ = head_on_the_wire(server, "/v1/counters/site/missing/events")
        assert gauges(server) == (0, 0)
        with stream(f"{server.url}/v1/counters/site/home/events") as home:
            home.value()
            full, full_fields, _ = head_on_the_wire(server, "/v1/counters/site/home/events")
            refused = httpx2.get(f"{server.url}/v1/counters/site/home/events")
    assert (status, after) == (b"HTTP/1.1 200 OK", b"")
    assert fields[b"content-type"] == b"text/event-stream"
    assert fields[b"cache-control"] == b"no-cache"
    assert fields[b"x-accel-buffering"] == b"no"
    assert missing == b"HTTP/1.1 404 Not Found"
    assert refused.status_code == 503
    assert full == b"HTTP/1.1 503 Service Unavailable"
    assert full_fields[b"retry-after"].decode() == refused.headers["retry-after"]


@pytest.mark.timeout(10)
def test_head_of_a_stream_ends_at_once_where_the_server_lets_an_answer_run_on() -> None:
    """In-process, where nothing cuts a HEAD's answer short after its header fields (as granian
    does, uvicorn does not), HEAD of a stream still ends at once: it opens no stream, whose
    events and pings would run on unsent until the client left."""
    with TestClient(create_app(Settings(store="memory://"))) as client:
        client.post("/v1/counters/site/home/hits")
        head = client.head("/v1/counters/site/home/events")
        streams = value(samples(client.get("/metrics").text), "visit_tracker_event_streams")
    assert head.status_code == 200
    assert head.headers["content-type"] == "text/event-stream"
    assert streams == 0


def test_a_client_that_stops_reading_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that takes none of what is written to it loses its stream after the write
    timeout: its slot and its counter's poller are freed, and the drop is counted.

    The test client's transport hands each write to the reader directly, as granian does once
    a socket's buffers are full (a few MB of events later): a write waits until it is read."""
    monkeypatch.setattr(events, "WRITE_TIMEOUT", 0.2)
    with TestClient(create_app(Settings(store="memory://"))) as client:
        client.post("/v1/counters/site/home/hits")
        with client.stream("GET", "/v1/counters/site/home/events") as response:
            assert response.status_code == 200
            time.sleep(1)  # never reading
            found = samples(client.get("/metrics").text)
    assert value(found, "visit_tracker_event_streams_dropped_total") == 1
    assert value(found, "visit_tracker_event_streams") == 0
    assert value(found, "visit_tracker_event_counters") == 0


def test_stopping_the_server_ends_its_streams_at_once() -> None:
    """On SIGTERM, open streams end cleanly at once, and the server commits and stops well
    before its shutdown timeout, instead of waiting for them until it is killed."""
    with (
        tempfile.TemporaryFile() as log,
        running_server(
            "--store", "memory://", "--shutdown-timeout", "30", "--workers", "1",
            env={"VISIT_TRACKER_LOG_LEVEL": "info", "VISIT_TRACKER_LOG_FORMAT": "json"},
            stderr=log,
        ) as server,
    ):  # fmt: skip
        hit(server, "site/home")
        with stream(f"{server.url}/v1/counters/site/home/events") as events_:
            events_.value()
            asked = time.monotonic()
            server.signal(signal.SIGTERM)
            with pytest.raises(EOFError):
                events_.next()  # the stream ends, complete: no transport error
            assert time.monotonic() - asked < 5
        assert server.wait(timeout=10) == 0
        log.seek(0)
        written = log.read().decode()
    assert "stopped: pending visits committed, store closed" in written
    assert "refused to gracefully stop" not in written
