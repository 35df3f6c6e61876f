"""`visit-tracker bench`: its arithmetic, its HTTP client, and a real run against a real server."""

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from tests.server import running_server
from tests.test_transfer import on_a_terminal
from visit_tracker.bench import (
    STATS,
    VISIT,
    Connection,
    CountCheck,
    Endpoint,
    Latencies,
    Plan,
    ProtocolError,
    Summary,
    Target,
    exit_code,
    parse_head,
    percentile,
    request_bytes,
    run_load,
    summary_rows,
)

# -- Pure parts -------------------------------------------------------------------------------


def test_percentile_is_the_nearest_rank() -> None:
    """The p-th percentile of 1..100 is p, and of a few values the smallest covering p %."""
    hundred = [float(n) for n in range(1, 101)]
    assert [percentile(hundred, p) for p in (1, 50, 90, 99, 100)] == [1, 50, 90, 99, 100]
    assert [percentile([1.0, 2.0, 3.0, 4.0], p) for p in (25, 50, 51, 90)] == [1, 2, 3, 4]
    assert percentile([7.0], 0.001) == 7.0


@pytest.mark.parametrize("percent", [0, -1, 100.5])
def test_percentile_refuses_a_percent_outside_0_to_100(percent: float) -> None:
    """A percent outside (0, 100] is an error, not a silently clamped answer."""
    with pytest.raises(ValueError, match="percent"):
        percentile([1.0], percent)


def test_latencies_sort_their_values_and_are_absent_without_any() -> None:
    """Latencies come from the sorted values; no answered request means no latency figures."""
    latencies = Latencies.of([0.005, 0.001, 0.004, 0.002, 0.003])
    assert latencies == Latencies(p50=0.003, p90=0.005, p99=0.005, max=0.005)
    assert Latencies.of([]) is None


def test_a_count_that_moved_by_the_successes_is_exact() -> None:
    """total_visits moving by exactly the successful visits is reported as exact."""
    check = CountCheck(before=1_000, after=1_500, successes=500)
    assert check.exact
    assert check.describe() == "exact: total_visits 1,000 -> 1,500 (+500)"


def test_a_count_that_moved_otherwise_is_a_mismatch_with_both_numbers() -> None:
    """A count that moved by anything but the successes is a MISMATCH naming both numbers."""
    check = CountCheck(before=0, after=498, successes=500)
    assert not check.exact
    assert check.describe() == "MISMATCH: total_visits 0 -> 498 (+498), but 500 visits succeeded"


def summary(**changes: object) -> Summary:
    fields: dict[str, object] = {
        "title": "t",
        "total": 10,
        "ok": 10,
        "failed": 0,
        "elapsed": 2.0,
        "errors": {},
        "latency": None,
        "count": CountCheck(0, 10, 10),
    }
    return Summary(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({}, 0),
        ({"count": None}, 0),
        ({"ok": 9, "failed": 1, "errors": {"HTTP 503": 1}, "count": CountCheck(0, 9, 9)}, 1),
        ({"count": CountCheck(0, 11, 10)}, 1),
        ({"count": None, "count_problem": "GET /stats after the run failed"}, 1),
    ],
)
def test_exit_code_is_zero_only_without_failures_and_with_an_exact_count(
    changes: dict[str, object], code: int
) -> None:
    """Exit 0 needs no failed request and an exact (or inapplicable) count; all else exits 1."""
    assert exit_code(summary(**changes)) == code


def test_the_report_opens_with_the_demos_rows_then_latency_and_count() -> None:
    """The report shows the demo's five rows, then latency percentiles, then the count check."""
    rows = summary_rows(summary(latency=Latencies(0.001, 0.002, 0.003, 0.004)), VISIT)
    assert rows == [
        ("Total requests", "10"),
        ("Successful responses", "10"),
        ("Failed responses", "0"),
        ("Total time", "2.00 s"),
        ("Average req/s", "5.0"),
        ("Latency p50", "1.00 ms"),
        ("Latency p90", "2.00 ms"),
        ("Latency p99", "3.00 ms"),
        ("Latency max", "4.00 ms"),
        ("Server count", "exact: total_visits 0 -> 10 (+10)"),
    ]


def test_the_report_says_why_a_count_was_not_checked() -> None:
    """Another endpoint's report says its count is not checked, and failures are tallied."""
    rows = dict(summary_rows(summary(count=None, errors={"HTTP 404": 3, "timeout": 1}), STATS))
    assert rows["Errors"] == "3 x HTTP 404, 1 x timeout"
    assert rows["Server count"] == "not checked: GET /stats does not count visits"


def test_a_target_is_read_from_a_base_url() -> None:
    """A base URL gives host, port (defaulting by scheme) and a path prefix for every request."""
    assert Target.parse("http://127.0.0.1:8080") == Target(
        "http", "127.0.0.1", 8080, "127.0.0.1:8080", ""
    )
    behind_proxy = Target.parse("https://example.org/counter/")
    assert (behind_proxy.port, behind_proxy.prefix) == (443, "/counter")
    assert behind_proxy.url("/visit") == "https://example.org/counter/visit"


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:8080", "http://host/?x=1"])
def test_a_target_must_be_a_plain_http_base_url(url: str) -> None:
    """Anything but an http(s) base URL with a host is refused with the URL in the message."""
    with pytest.raises(ValueError, match=re.escape(repr(url))):
        Target.parse(url)


def test_an_endpoint_is_a_method_and_a_path() -> None:
    """'POST /visit' parses as is, a lone path means GET, and a method is upper-cased."""
    assert Endpoint.parse("POST /visit") == VISIT
    assert Endpoint.parse("/stats") == STATS
    assert Endpoint.parse("get /healthz") == Endpoint("GET", "/healthz")
    with pytest.raises(ValueError, match="not a method and a path"):
        Endpoint.parse("POST visit")


def test_requests_carry_host_and_a_body_length_only_when_they_may_have_a_body() -> None:
    """A POST says Content-Length: 0, a GET does not, and both name the host and full path."""
    target = Target.parse("http://127.0.0.1:9/app")
    post = request_bytes(target, VISIT)
    assert post.startswith(b"POST /app/visit HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    assert b"\r\nContent-Length: 0\r\n\r\n" in post
    assert b"Content-Length" not in request_bytes(target, STATS)


@pytest.mark.parametrize(
    ("head", "status", "length", "chunked", "close"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", 200, 12, False, False),
        (b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n", 503, None, True, False),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200, 0, False, True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", 200, 2, False, True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", 200, None, False, False),
    ],
)
def test_a_response_head_says_where_its_body_ends(
    head: bytes, status: int, length: int | None, chunked: bool, close: bool
) -> None:
    """Status, Content-Length, chunked encoding and connection reuse are read from the head."""
    parsed = parse_head(head)
    assert (parsed.status, parsed.content_length, parsed.chunked, parsed.close) == (
        status,
        length,
        chunked,
        close,
    )


@pytest.mark.parametrize("head", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 OK\r\n\r\n"])
def test_a_response_that_is_not_http_is_a_protocol_error(head: bytes) -> None:
    """Bytes that are not an HTTP/1.x status line raise ProtocolError, not a crash."""
    with pytest.raises(ProtocolError):
        parse_head(head)


# -- The client against a scripted server -----------------------------------------------------

ANSWERS = {
    b"/visit": b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n" + b'{"visits":1}',
    b"/stats": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    b'5\r\n{"tot\r\n0E\r\nal_visits": 7}\r\n0\r\n\r\n',
    b"/bye": b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nbye",
}


class ScriptedServer:
    """Answers each request by its path from ANSWERS: a server that counts nothing."""

    def __init__(self) -> None:
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                answer = ANSWERS[head.split(b" ")[1]]
                writer.write(answer)
                if b"connection: close" in answer:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedServer, Target]]:
    server = ScriptedServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server, Target.parse(f"http://127.0.0.1:{port}")


@pytest.mark.anyio
async def test_the_client_reads_sized_chunked_and_closing_answers(
    scripted: tuple[ScriptedServer, Target],
) -> None:
    """One connection is reused across answers, decodes chunks, and reconnects after a close."""
    server, target = scripted
    connection = Connection(target, None)
    visit, stats = request_bytes(target, VISIT), request_bytes(target, STATS)
    bye = request_bytes(target, Endpoint("GET", "/bye"))
    try:
        assert await connection.send(visit) == (200, b'{"visits":1}')
        assert await connection.send(stats) == (200, b'{"total_visits": 7}')
        assert await connection.send(bye) == (200, b"bye")
        assert server.connections == 1
        assert await connection.send(visit) == (200, b'{"visits":1}')
        assert server.connections == 2
    finally:
        connection.close()


@pytest.mark.anyio
async def test_a_server_that_does_not_count_its_visits_is_a_mismatch(
    scripted: tuple[ScriptedServer, Target],
) -> None:
    """200s for visits that total_visits never shows make a MISMATCH and exit code 1."""
    _, target = scripted
    ticks: list[int] = []
    result = await run_load(
        target, VISIT, Plan(concurrency=4, requests=40), lambda done, _: ticks.append(done)
    )
    assert (result.total, result.ok, result.failed) == (40, 40, 0)
    assert result.count == CountCheck(before=7, after=7, successes=40)
    assert exit_code(result) == 1
    assert ticks[-1] == 40


# -- The real thing ---------------------------------------------------------------------------

BENCH = Path(sys.executable).with_name("visit-tracker")
"""The installed console script, run as users run it."""


def bench_report(*arguments: str) -> dict[str, str]:
    """Run `visit-tracker bench`, require exit code 0 and no progress left on stderr, which is
    not a terminal, and return its report's rows."""
    result = subprocess.run(
        [str(BENCH), "bench", *arguments],
        capture_output=True,
        encoding="utf-8",
        timeout=90,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stdout + result.stderr
    row = re.compile(r"^\W*([A-Z][\w /]+?)\s+[│|]\s+(.+?)\s+[│|]$", re.MULTILINE)
    return dict(row.findall(result.stdout))


def test_bench_and_classic_against_the_real_server(tmp_path: Path) -> None:
    """Both modes exit 0 against `serve`, report every request ok and the count exact."""
    with running_server("--store", f"sqlite:///{tmp_path}/visits.db") as server:
        fast = bench_report("--url", server.url, "--requests", "500", "--concurrency", "20")
        assert fast["Total requests"] == "500"
        assert fast["Successful responses"] == "500"
        assert fast["Failed responses"] == "0"
        assert fast["Server count"] == "exact: total_visits 0 -> 500 (+500)"
        assert float(fast["Average req/s"].replace(",", "")) > 0
        assert fast["Latency p99"].endswith(" ms")

        classic = bench_report("--url", server.url, "--classic")
        assert classic["Total requests"] == "1,000"
        assert classic["Successful responses"] == "1,000"
        assert classic["Failed responses"] == "0"
        assert classic["Server count"] == "exact: total_visits 500 -> 1,500 (+1,000)"

        assert httpx2.get(f"{server.url}/stats").json()["total_visits"] == 1500


def test_bench_draws_its_progress_on_a_terminal(tmp_path: Path) -> None:
    """With standard error on a terminal, bench draws a progress bar of the requests sent."""
    with running_server("--store", f"sqlite:///{tmp_path}/visits.db") as server:
        drawn = on_a_terminal("bench", "--url", server.url, "--requests", "300")
    assert "POST /visit" in drawn
    assert "300 requests" in drawn
