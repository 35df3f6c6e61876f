"""HEAD wherever GET only reads: GET's status and headers through the same layers, on every store,
no body on the wire; and a GET that counts or changes a counter refuses HEAD and changes nothing.

The probes, the files, the badge and the pixel have their HEAD tests beside their own (test_api,
test_assets, test_embed); the event stream's is in test_event_streams.
"""

from collections.abc import Iterator

import httpx2
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.server import AS_BROWSER, running_server
from tests.test_api import head_on_the_wire
from visit_tracker.api import rate_limits
from visit_tracker.api.routing import Router
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

OPERATOR = "operator-token-0123456789-abcdefghij"
ORIGIN = {"Origin": "https://example.org"}
"""Sent with every request below, so that the CORS fields are compared too."""
COUNTER = "/v1/counters/example.com/home"

READS: dict[str, tuple[list[str], bool]] = {
    "stats": (["/stats"], False),
    "metrics": (["/metrics"], False),
    "dashboard home": (["/"], False),
    "dashboard counter": (
        ["/dashboard/example.com/home", "/dashboard/example.com/nothing", "/dashboard/x/a%20b"],
        True,
    ),
    "counters": ([COUNTER, "/v1/counters/example.com?limit=1", "/v1/counters/x/nothing"], True),
    "history": (
        [
            f"{COUNTER}/series",
            f"{COUNTER}/series?interval=day",
            f"{COUNTER}/pages?limit=5",
            f"{COUNTER}/series?interval=week",
            "/v1/counters/x/nothing/pages",
        ],
        True,
    ),
    "countapi": (
        [
            "/get/example.com/home",
            "/get/visits",
            "/info/example.com/home",
            "/info/visits",
            "/get/x/nothing",
            "/info/a%20b",
        ],
        True,
    ),
}
"""Per family of read routes, paths that answer each of its statuses, and whether a GET and a
HEAD just after it have bodies of the same length (uptimes and request counts move between the
two: those answers' lengths may differ by a digit or so)."""

PER_REQUEST = {"x-request-id", "ratelimit-remaining", "ratelimit-reset"}
"""Header fields whose values differ from one request to the next."""

COUNTING = [
    "/hit/example.com/home",
    "/hit/visits",
    "/set/example.com/home?value=100",
    "/set/visits?value=100",
    "/update/example.com/home?amount=5",
    "/update/visits?amount=5",
    "/create?namespace=example.com&key=new",
]
"""CountAPI's GET routes that count or change a counter, given what they need to do so."""
REFUSAL = b'{"detail":"Method Not Allowed"}'


@pytest.fixture
def operated(store_url: str) -> Iterator[TestClient]:
    """A client for the app on each kind of store, with an operator token set, after a visit
    and a hit with a page and a referrer, so that every read has something to show."""
    app = create_app(Settings(store=store_url, admin_token=OPERATOR))
    with TestClient(app) as client:
        client.post("/visit")
        client.post(
            f"{COUNTER}/hits",
            json={"page": "/blog/post", "referrer": "https://news.example.org/item"},
        )
        yield client


def fields(response: httpx2.Response, *, length: bool = True) -> dict[str, str]:
    """A response's header fields, less those that differ per request (the length too if not
    `length`)."""
    skipped = PER_REQUEST if length else {*PER_REQUEST, "content-length"}
    return {name: value for name, value in response.headers.items() if name not in skipped}


@pytest.mark.parametrize(("paths", "same_length"), READS.values(), ids=READS)
def test_head_of_a_read_answers_as_its_get(
    operated: TestClient, paths: list[str], same_length: bool
) -> None:
    """HEAD of each read route answers its GET's status and header fields — type, length,
    caching, CORS and rate-limit fields alike — for an answer and for a refusal."""
    for path in paths:
        got = operated.get(path, headers=ORIGIN)
        head = operated.head(path, headers=ORIGIN)
        assert head.status_code == got.status_code, path
        assert fields(head, length=same_length) == fields(got, length=same_length), path
        assert head.headers.keys() == got.headers.keys(), path
        assert int(head.headers["content-length"]) > 0, path
    assert got.headers["access-control-allow-origin"] == "*"


def test_head_of_a_counting_get_is_a_json_405_and_changes_nothing(operated: TestClient) -> None:
    """HEAD of each CountAPI route that counts or changes a counter is the JSON 405 of a wrong
    method, with `Allow: GET`, even with the operator's token; no counter moves and none is
    created. HEAD of the pixel and of a counting badge answers, and counts nothing either."""
    before = operated.get("/get/example.com/home").json(), operated.get("/get/visits").json()
    for path in COUNTING:
        head = operated.head(path, headers={"Authorization": f"Bearer {OPERATOR}"})
        assert head.status_code == 405, path
        assert head.headers["allow"] == "GET", path
        assert head.headers["content-type"] == "application/json", path
        assert head.headers["content-length"] == str(len(REFUSAL)), path
    for path in (f"{COUNTER}/pixel.gif", f"{COUNTER}/badge.svg?count=true"):
        assert operated.head(path).status_code == 200, path
    after = operated.get("/get/example.com/home").json(), operated.get("/get/visits").json()
    assert after == before == ({"value": 1}, {"value": 1})
    assert operated.get("/stats").json()["total_visits"] == 1
    assert operated.get("/get/example.com/new").status_code == 404
    assert operated.get("/hit/example.com/home").json() == {"value": 2}  # as GET, it counts


def test_a_get_with_any_counting_rate_limit_gets_no_head() -> None:
    """A GET whose own rate limit counts hits gets no HEAD even on a router whose limit is a
    read's: any limit of a changing class refuses HEAD, not only the first."""
    router = Router(dependencies=[rate_limits.READS])

    @router.get("/counting", dependencies=[rate_limits.HITS])
    async def counting() -> None: ...

    @router.get("/reading")
    async def reading() -> None: ...

    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    served = {(route.path, method) for route in routes for method in route.methods or ()}
    assert ("/counting", "HEAD") not in served
    assert ("/reading", "HEAD") in served


def test_head_takes_from_its_gets_rate_limit() -> None:
    """A HEAD spends its GET's bucket — the reads' for a counter, the visit class's for
    /stats, answered in front of the framework — and is refused with a 429 once it is empty."""
    settings = Settings(
        store="memory://",
        rate_limit_reads=0.001,
        rate_limit_reads_burst=2,
        rate_limit_visit=0.001,
        rate_limit_visit_burst=1,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/get/visits").status_code == 404
        assert client.head(f"{COUNTER}/series").status_code == 404
        refused = client.head("/dashboard/example.com/home")
        assert client.head("/stats").status_code == 200
        refused_stats = client.get("/stats")
        assert client.post(f"{COUNTER}/hits").status_code == 200  # another class's bucket
    for response in (refused, refused_stats):
        assert response.status_code == 429
        assert "retry-after" in response.headers


def test_head_of_the_pixel_or_a_counting_badge_spends_reads_not_hits() -> None:
    """HEAD of the pixel and of `badge.svg?count=true`, which count nothing, spend the client's
    reads, not its hits: with the hits spent they answer, until the reads are spent too."""
    settings = Settings(
        store="memory://",
        rate_limit_hits=0.001,
        rate_limit_hits_burst=1,
        rate_limit_reads=0.001,
        rate_limit_reads_burst=2,
    )
    with TestClient(create_app(settings)) as client:
        assert client.post(f"{COUNTER}/hits").status_code == 200
        assert client.post(f"{COUNTER}/hits").status_code == 429
        assert client.head(f"{COUNTER}/pixel.gif").status_code == 200
        assert client.head(f"{COUNTER}/badge.svg?count=true").status_code == 200
        assert client.head(f"{COUNTER}/badge.svg?count=true").status_code == 429


def test_head_of_stats_is_answered_where_its_get_is() -> None:
    """HEAD /stats, like GET /stats, is answered in front of the framework and reads no body:
    a body past the size limit is no 413 to either, as it is to the framework's routes."""
    with TestClient(create_app(Settings(store="memory://", max_body_size=16))) as client:
        oversize = b"x" * 100
        got = client.request("GET", "/stats", content=oversize)
        head = client.request("HEAD", "/stats", content=oversize)
        framework = client.request("HEAD", "/healthz", content=oversize)
    assert head.status_code == got.status_code == 200
    assert fields(head, length=False) == fields(got, length=False)
    assert framework.status_code == 413


def test_head_of_stats_and_the_reads_sends_no_body_on_the_wire() -> None:
    """Through the real server, HEAD of /stats (answered in front of the framework) and of the
    other reads sends GET's status, type and length and not one byte of body, and counts
    nothing."""
    paths = {
        "/stats": False,
        "/": False,
        "/dashboard/example.com/home": True,
        COUNTER: True,
        f"{COUNTER}/series?interval=day": True,
        "/get/example.com/home": True,
        "/info/visits": True,
        "/v1/counters/example.com/nothing": True,
    }
    with running_server("--store", "memory://") as server:
        httpx2.post(f"{server.url}/visit")
        httpx2.post(f"{server.url}{COUNTER}/hits", headers=AS_BROWSER)
        heads, gets = {}, {}
        for path in paths:
            heads[path] = head_on_the_wire(server, path)
            gets[path] = httpx2.get(f"{server.url}{path}", headers={"Host": "test"})  # as the HEAD
    assert gets["/stats"].json()["total_visits"] == 1
    assert gets["/get/example.com/home"].json() == {"value": 1}
    for path, same_length in paths.items():
        status, head_fields, after = heads[path]
        got = gets[path]
        assert status == b"HTTP/1.1 %d %s" % (got.status_code, got.reason_phrase.encode()), path
        assert after == b"", path
        assert head_fields[b"content-type"].decode() == got.headers["content-type"], path
        length = int(head_fields[b"content-length"])
        if same_length:
            assert length == len(got.content), path
        else:  # an uptime a digit or so longer or shorter
            assert abs(length - len(got.content)) < 5, path
