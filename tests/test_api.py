"""The original HTTP contract, checked on every store: fields, types, formats, errors, docs."""

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

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
    """GET /visit answers 405 with a JSON body and the allowed method."""
    response = client.get("/visit")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
    assert response.headers["allow"] == "POST"
    assert client.delete("/stats").headers["allow"] == "GET"


def test_probes_answer_ok(client: TestClient) -> None:
    """/healthz and /readyz both answer {"status": "ok"} on a healthy store."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok"}


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
