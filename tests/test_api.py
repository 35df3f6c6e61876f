"""The original HTTP contract, checked on every store: fields, types, formats, errors, docs."""

import re
import socket
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
from fastapi.testclient import TestClient

from tests.redis_servers import redis_server
from tests.server import Server, running_server
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def test_visit_returns_the_running_total(client: TestClient) -> None:
    """Each POST /visit answers 200 with {"visits": N}, N counting up from 1."""
    for expected in (1, 2, 3):
        response = client.post("/visit")
        assert response.status_code == 200
        assert response.json() == {"visits": expected}


def test_stats_has_the_original_fields_and_types(client: TestClient) -> None:
    """GET /stats has exactly uptime_seconds (float), total_visits (int), current_time (str)."""
    client.post("/visit")
    client.post("/visit")
    body = client.get("/stats").json()
    assert set(body) == {"uptime_seconds", "total_visits", "current_time"}
    assert isinstance(body["uptime_seconds"], float)
    assert body["uptime_seconds"] >= 0
    assert body["total_visits"] == 2
    assert type(body["total_visits"]) is int


def test_current_time_is_utc_with_milliseconds_and_z(client: TestClient) -> None:
    """current_time is ISO-8601 UTC with milliseconds and a trailing Z, and close to now."""
    current_time = client.get("/stats").json()["current_time"]
    assert TIMESTAMP.match(current_time)
    moment = datetime.fromisoformat(current_time.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - moment) < timedelta(seconds=5)


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    """An unknown path answers 404 with a JSON body, not HTML."""
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Not Found"}


def test_wrong_method_is_a_json_405(client: TestClient) -> None:
    """GET /visit answers 405 with a JSON body and the allowed method; a read's allowed
    methods include HEAD."""
    response = client.get("/visit")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["allow"] == "POST"
    assert client.delete("/stats").headers["allow"] == "GET, HEAD"


def test_probes_answer_ok(client: TestClient) -> None:
    """/healthz and /readyz both answer {"status": "ok"} on a healthy store."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


def but_the_request_id(response: httpx2.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "x-request-id"}


def test_probes_answer_head_as_they_answer_get(client: TestClient) -> None:
    """HEAD /healthz and /readyz answer GET's status and headers (that no body goes out is
    checked on the wire, in `test_head_answers_carry_no_body_on_the_wire`)."""
    for path in ("/healthz", "/readyz"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code == 200
        assert but_the_request_id(head) == but_the_request_id(got)


def test_head_readyz_answers_503_when_the_store_is_down(tmp_path: Path) -> None:
    """With the store down, HEAD /readyz answers GET's 503 and Retry-After, so that a load
    balancer probing with HEAD stops sending visits."""
    with (
        redis_server(tmp_path) as redis,
        TestClient(create_app(Settings(store=redis.url))) as client,
    ):
        redis.kill()
        got, head = client.get("/readyz"), client.head("/readyz")
    assert head.status_code == got.status_code == 503
    assert but_the_request_id(head) == but_the_request_id(got)
    assert head.headers["retry-after"] == "1"


def head_on_the_wire(server: Server, path: str) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """The status line, header fields and whatever follows them that the server sends for a
    HEAD of `path` on a connection it closes after answering."""
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            b"HEAD %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n" % path.encode()
        )
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, after = received.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = dict(line.lower().split(b": ", 1) for line in lines)
    return status, fields, after


def test_head_answers_carry_no_body_on_the_wire() -> None:
    """Through the real server, HEAD of the probes, the files, the badge and the pixel sends
    GET's status and Content-Length and not one byte of body, and counts nothing."""
    counter = "/v1/counters/example.com/home"
    paths = [
        "/healthz",
        "/readyz",
        "/tracker.js",
        "/static/dashboard.css",
        f"{counter}/badge.svg?count=true",
        f"{counter}/pixel.gif",
    ]
    with running_server("--store", "memory://") as server:
        heads = {path: head_on_the_wire(server, path) for path in paths}
        assert httpx2.get(f"{server.url}{counter}").status_code == 404
        # The GETs count: the badge shows 1 where its HEAD saw 0, a badge of the same length.
        gets = {path: httpx2.get(f"{server.url}{path}") for path in paths}
    for path, (status, fields, after) in heads.items():
        assert status == b"HTTP/1.1 200 OK", path
        assert after == b"", path
        assert int(fields[b"content-length"]) == len(gets[path].content) > 0, path
        assert fields[b"content-type"].decode() == gets[path].headers["content-type"], path


def test_docs_and_redoc_are_served(client: TestClient) -> None:
    """Swagger UI at /docs and ReDoc at /redoc answer with HTML pages."""
    for path, marker in (("/docs", "swagger-ui"), ("/redoc", "redoc")):
        response = client.get(path)
        assert response.status_code == 200
        assert marker in response.text


def test_openapi_describes_the_contract(client: TestClient) -> None:
    """/openapi.json documents both routes with their response schemas and examples."""
    document = client.get("/openapi.json").json()
    visit = document["paths"]["/visit"]["post"]["responses"]
    stats = document["paths"]["/stats"]["get"]["responses"]
    schemas = document["components"]["schemas"]
    assert visit["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/VisitCount")
    assert stats["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Stats")
    assert "503" in visit
    assert schemas["VisitCount"]["properties"]["visits"]["type"] == "integer"
    assert schemas["VisitCount"]["properties"]["visits"]["examples"] == [5]
    assert schemas["Stats"]["properties"]["uptime_seconds"]["type"] == "number"
    assert schemas["Stats"]["properties"]["total_visits"]["type"] == "integer"
    assert schemas["Stats"]["properties"]["current_time"]["examples"] == [
        "2025-07-22T01:00:00.123Z"
    ]
    assert {"/healthz", "/readyz"} <= set(document["paths"])


def test_a_locked_store_answers_503_with_retry_after(tmp_path: Path) -> None:
    """When the store stays locked past the timeout, visits get a JSON 503 and are not counted."""
    database = tmp_path / "visits.db"
    app = create_app(Settings(store=f"sqlite:///{database}", store_timeout=0.2))
    with TestClient(app) as client:
        assert client.post("/visit").json() == {"visits": 1}
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        response = client.post("/visit")
        blocker.execute("ROLLBACK")
        blocker.close()
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert "not counted" in response.json()["detail"]
        assert client.get("/stats").json()["total_visits"] == 1
        assert client.post("/visit").json() == {"visits": 2}


def test_a_named_counter_counts_its_own_hits(client: TestClient) -> None:
    """Hits on a named counter count it alone, leaving the site total of /stats untouched."""
    for expected in (1, 2):
        response = client.post("/v1/counters/example.com/home/hits")
        assert response.json() == {"namespace": "example.com", "key": "home", "value": expected}
    assert client.post("/v1/counters/example.com/about/hits").json()["value"] == 1
    assert client.get("/stats").json()["total_visits"] == 0


def test_a_bad_counter_name_is_a_422_naming_the_field_and_the_rule(client: TestClient) -> None:
    """A name outside the rule answers 422 with the offending field and the rule in words."""
    response = client.post("/v1/counters/ok/" + "k" * 65 + "/hits")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["path", "key"],
                "msg": "must be 1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and '-'",
                "type": "value_error",
            }
        ]
    }
    assert client.post("/v1/counters/bad%20space/home/hits").json()["detail"][0]["loc"] == [
        "path",
        "namespace",
    ]
