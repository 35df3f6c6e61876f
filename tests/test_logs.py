"""The real server's logs: structured lines, request ids, and nothing that identifies a visitor."""

import io
import json
import os
import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

from tests.server import Server, running_server
from visit_tracker.logs import AccessLog, UtcTimestamp, json_line, resolve_format

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
CLIENT_ADDRESS = "127.0.0.77"
"""A loopback address of its own, so that finding it in a log can only mean it was logged."""
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) visit-tracker-log-test/7.7"
FORWARDED_FOR = "203.0.113.9"


@contextmanager
def logging_server(tmp_path: Path, *arguments: str, **env: str) -> Iterator[tuple[Server, Path]]:
    """A server whose stderr goes to a file; it is stopped cleanly before the block ends."""
    log = tmp_path / "server.log"
    with (
        log.open("wb") as stderr,
        running_server(
            "--store", f"sqlite:///{tmp_path}/v.db", *arguments, env=env, stderr=stderr
        ) as server,
    ):
        yield server, log
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of the log, each parsed as one JSON object (fails on any other line)."""
    return [json.loads(line) for line in log.read_text().splitlines()]


def request_lines(log: Path) -> list[dict[str, Any]]:
    """The access log's lines, less those of the readiness probes that waited for the start."""
    return [
        line for line in json_lines(log) if line["event"] == "request" and line["path"] != "/readyz"
    ]


def test_json_lines_log_each_request_with_its_id_status_and_duration(tmp_path: Path) -> None:
    """With stderr a file, every line is JSON, granian's own included, and each request is one
    line with its request id, method, path, status and duration."""
    with logging_server(
        tmp_path, "--access-log", "--workers", "2", VISIT_TRACKER_LOG_LEVEL="info"
    ) as (server, log):
        answers = [
            httpx2.post(f"{server.url}/visit", headers={"X-Request-ID": "client-chosen.1"}),
            httpx2.get(f"{server.url}/nowhere"),
            httpx2.get(f"{server.url}/visit"),
            httpx2.post(f"{server.url}/v1/counters/bad name/key/hits"),
        ]
    lines = json_lines(log)
    requests = request_lines(log)
    logged = {
        line["request_id"]: (line["method"], line["path"], line["status"]) for line in requests
    }
    assert logged == {
        answers[0].headers["x-request-id"]: ("POST", "/visit", 200),
        answers[1].headers["x-request-id"]: ("GET", "/nowhere", 404),
        answers[2].headers["x-request-id"]: ("GET", "/visit", 405),
        answers[3].headers["x-request-id"]: ("POST", "/v1/counters/bad name/key/hits", 422),
    }
    assert answers[0].headers["x-request-id"] == "client-chosen.1"
    assert all(line["duration_ms"] >= 0 and line["level"] == "info" for line in requests)
    assert all(line["timestamp"].endswith("Z") for line in lines)
    started = [line for line in lines if line["event"] == "ready: store open"]
    assert len(started) == 2  # one per worker, through the same formatting
    assert any(line["event"].startswith("Starting granian") for line in lines)


def test_a_usable_request_id_is_echoed_and_any_other_replaced(tmp_path: Path) -> None:
    """A usable X-Request-ID comes back as sent; a missing, overlong or unsafe one is replaced by
    a fresh random id, on the direct routes and the framework's alike, access log off."""
    usable = "Abc-1_2.3:4=5+6/7" + "x" * 111  # 128 characters, every allowed kind
    unusable = ["x" * 129, "two words", 'quo"te', "semi;colon", ""]
    with logging_server(tmp_path, VISIT_TRACKER_LOG_LEVEL="info") as (server, log):
        for path in ("/stats", "/healthz"):
            answer = httpx2.get(f"{server.url}{path}", headers={"X-Request-ID": usable})
            assert answer.headers["x-request-id"] == usable
            for value in unusable:
                answer = httpx2.get(f"{server.url}{path}", headers={"X-Request-ID": value})
                assert GENERATED_ID.match(answer.headers["x-request-id"]), value
            ids = {httpx2.get(f"{server.url}{path}").headers["x-request-id"] for _ in range(5)}
            assert len(ids) == 5
            assert all(GENERATED_ID.match(one) for one in ids)
    assert not [line for line in json_lines(log) if line["event"] == "request"]  # off


def test_logs_name_neither_the_client_address_nor_its_user_agent(tmp_path: Path) -> None:
    """Requests from a known address and User-Agent, at debug level with the access log on,
    leave neither of them, nor a forwarded address or the query string, anywhere in the log."""
    transport = httpx2.HTTPTransport(local_address=CLIENT_ADDRESS)
    headers = {"User-Agent": USER_AGENT, "X-Forwarded-For": FORWARDED_FOR}
    with (
        logging_server(tmp_path, "--access-log", VISIT_TRACKER_LOG_LEVEL="debug") as (server, log),
        httpx2.Client(base_url=server.url, transport=transport, headers=headers) as client,
    ):
        assert client.post("/visit?email=someone@example.com").status_code == 200
        assert client.get("/stats").status_code == 200
        assert client.post("/v1/counters/example.com/home/hits").status_code == 200
        assert client.post("/v1/counters/bad name/home/hits").status_code == 422
        assert client.get("/docs").status_code == 200
        assert client.get("/nowhere").status_code == 404
    text = log.read_text()
    assert len(request_lines(log)) == 6
    for secret in (CLIENT_ADDRESS, USER_AGENT, "visit-tracker-log-test", FORWARDED_FOR, "email"):
        assert secret not in text


def test_logs_hold_no_credential_nor_admin_key(tmp_path: Path) -> None:
    """The operator token, a counter's admin key and refused bearer tokens, sent and answered at
    debug level with the access log on, appear nowhere in the log."""
    operator = "operator-token-for-the-log-test-0123456789"
    with (
        logging_server(
            tmp_path,
            "--access-log",
            VISIT_TRACKER_LOG_LEVEL="debug",
            VISIT_TRACKER_ADMIN_TOKEN=operator,
        ) as (server, log),
        httpx2.Client(base_url=server.url) as client,
    ):
        created = client.post("/v1/counters/example.com/home", json={"value": 1})
        admin_key = created.json()["admin_key"]
        owner = {"Authorization": f"Bearer {admin_key}"}
        changed = client.put("/v1/counters/example.com/home", json={"value": 2}, headers=owner)
        assert changed.status_code == 200
        wrong = {"Authorization": "Bearer wrong-token-for-the-log-test"}
        assert client.delete("/v1/counters/example.com/home", headers=wrong).status_code == 403
        operating = {"Authorization": f"Bearer {operator}"}
        assert client.delete("/v1/counters/example.com/home", headers=operating).status_code == 204
    text = log.read_text()
    assert len(request_lines(log)) == 4
    for secret in (operator, admin_key, "wrong-token-for-the-log-test"):
        assert secret not in text


def test_console_format_writes_readable_lines(tmp_path: Path) -> None:
    """VISIT_TRACKER_LOG_FORMAT=console writes key=value text, not JSON and without colours
    when not on a terminal, for granian's messages and requests alike."""
    with logging_server(
        tmp_path,
        "--access-log",
        VISIT_TRACKER_LOG_LEVEL="info",
        VISIT_TRACKER_LOG_FORMAT="console",
    ) as (server, log):
        request_id = httpx2.post(f"{server.url}/visit").headers["x-request-id"]
    text = log.read_text()
    assert "ready: store open" in text
    (request,) = [line for line in text.splitlines() if f"request_id={request_id}" in line]
    assert "method=POST" in request
    assert "path=/visit" in request
    assert "status=200" in request
    assert not text.lstrip().startswith("{")
    assert "\x1b[" not in text


def test_auto_format_is_console_on_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    """`auto` means console lines on a terminal (a real pseudo-terminal) and JSON on a file;
    an explicit format holds either way."""
    primary, secondary = os.openpty()
    try:
        with open(secondary, "w") as terminal, (tmp_path / "file").open("w") as file:
            assert resolve_format("auto", terminal) == "console"
            assert resolve_format("auto", file) == "json"
            assert resolve_format("json", terminal) == "json"
            assert resolve_format("console", file) == "console"
    finally:
        os.close(primary)


def test_a_json_access_line_carries_any_path_exactly() -> None:
    """A path with quotes, backslashes, control characters or non-ASCII text still makes one
    valid JSON line that gives back the path and every other field unchanged."""
    stream = io.BytesIO()
    log = AccessLog(render=json_line(UtcTimestamp()), stream=stream)
    path = '/a"b\\c\n\td/é/\u2028'
    log.request(b"id-1", "PATCH", path, 404, 0.25)
    log.flush()
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert {name: event[name] for name in ("request_id", "method", "path", "status")} == {
        "request_id": "id-1",
        "method": "PATCH",
        "path": path,
        "status": 404,
    }
    assert (event["event"], event["level"], event["duration_ms"]) == ("request", "info", 0.25)
    assert event["timestamp"].endswith("Z")
