"""Limits on what one client can take, tested over real sockets against the real server."""

import socket
import time
from pathlib import Path

import httpx2

from tests.server import Server, running_server

HITS = "/v1/counters/example.com/home/hits"


def address(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def seconds_until_closed(connection: socket.socket, *, dribble: bytes, limit: float) -> float:
    """Send `dribble` a byte every 0.2 s until the server closes the connection; how long."""
    began = time.monotonic()
    connection.settimeout(0.2)
    for byte in dribble:
        assert time.monotonic() - began < limit, "still open"
        try:
            connection.sendall(bytes([byte]))
            if connection.recv(1024) == b"":
                return time.monotonic() - began
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - began
    raise AssertionError("the server never closed the connection")


def test_slow_and_idle_clients_are_disconnected_within_the_request_timeout(tmp_path: Path) -> None:
    """A client dribbling header bytes is cut off about one request timeout after it began, an
    idle keep-alive connection one timeout after its last answer, and other clients are served
    while a silent connection stays open."""
    with running_server(
        "--request-timeout", "1", "--store", f"sqlite:///{tmp_path}/v.db"
    ) as server:
        silent = socket.create_connection(address(server))
        with socket.create_connection(address(server)) as loris:
            endless = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
            assert httpx2.get(f"{server.url}/healthz").status_code == 200
            elapsed = seconds_until_closed(loris, dribble=endless, limit=5)
        assert 0.8 <= elapsed <= 2.5
        with socket.create_connection(address(server)) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(1024).startswith(b"HTTP/1.1 200")
            answered = time.monotonic()
            idle.settimeout(5)
            assert idle.recv(1024) == b""
            assert 0.8 <= time.monotonic() - answered <= 2.5
        assert httpx2.post(f"{server.url}/visit").json() == {"visits": 1}
        silent.close()


def test_a_keep_alive_connection_serves_many_requests_past_the_request_timeout(
    tmp_path: Path,
) -> None:
    """The request timeout limits each request's arrival, not a connection's life: one client
    keeps its connection through requests spread over three timeouts."""
    with (
        running_server("--request-timeout", "1", "--store", f"sqlite:///{tmp_path}/v.db") as server,
        httpx2.Client(base_url=server.url) as client,
    ):
        for expected in range(1, 8):
            assert client.post("/visit").json() == {"visits": expected}
            time.sleep(0.4)
        assert client.get("/stats").json()["total_visits"] == 7


def test_an_oversize_body_gets_a_json_413(tmp_path: Path) -> None:
    """A body over --max-body-size is refused with a JSON 413 before it is read; one at the
    limit is served."""
    with running_server("--max-body-size", "100", "--store", f"sqlite:///{tmp_path}/v.db") as (
        server
    ):
        body = b'{"page": "/' + b"a" * 87 + b'"}'  # a valid hit body of exactly 100 bytes
        json = {"Content-Type": "application/json"}
        at_limit = httpx2.post(f"{server.url}{HITS}", content=body, headers=json)
        assert at_limit.status_code == 200
        over = httpx2.post(f"{server.url}{HITS}", content=b"x" * 101)
        assert over.status_code == 413
        assert over.headers["content-type"] == "application/json"
        assert over.json() == {"detail": "The request body is larger than 100 bytes."}
        huge = httpx2.post(f"{server.url}/healthz", content=b"x" * (1024 * 1024))
        assert huge.status_code == 413


def test_an_oversize_request_head_is_refused_with_431(tmp_path: Path) -> None:
    """A header of 40 KB is served; one of 200 KB, or more header fields than the HTTP layer
    takes, is answered 431 and never reaches the application."""
    with running_server("--store", f"sqlite:///{tmp_path}/v.db") as server:

        def status_of(headers: bytes) -> bytes:
            with socket.create_connection(address(server), timeout=5) as connection:
                connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
                return connection.recv(1024).split(b"\r\n")[0]

        assert status_of(b"X-Big: " + b"a" * 40_000 + b"\r\n") == b"HTTP/1.1 200 OK"
        too_long = b"X-Big: " + b"a" * 200_000 + b"\r\n"
        assert status_of(too_long) == b"HTTP/1.1 431 Request Header Fields Too Large"
        too_many = b"".join(b"X-Field-%d: v\r\n" % number for number in range(200))
        assert status_of(too_many) == b"HTTP/1.1 431 Request Header Fields Too Large"
