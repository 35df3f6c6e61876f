"""CORS: pages on other origins may GET, HEAD and POST, never PUT, DELETE or send Authorization; the
direct routes answer CORS as the framework's routes do."""

from collections.abc import Iterator

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.server import running_server
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

PAGE = "https://blog.example"
HIT = "/v1/counters/blog.example/home/hits"


def client_for(*, origins: str = "*") -> TestClient:
    return TestClient(create_app(Settings(store="memory://", cors_origins=origins)))


@pytest.fixture
def client() -> Iterator[TestClient]:
    """The whole app with the default CORS setting (any origin)."""
    with client_for() as test_client:
        yield test_client


def preflight(
    client: TestClient, path: str, method: str, headers: str | None = None
) -> httpx2.Response:
    asked = {"Origin": PAGE, "Access-Control-Request-Method": method}
    if headers is not None:
        asked["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=asked)


def approvals(response: httpx2.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("access-control-allow-")
    }


def cors_fields(response: httpx2.Response) -> dict[str, str]:
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("access-control-") or name == "vary"
    }


def test_a_preflight_for_a_json_hit_is_approved(client: TestClient) -> None:
    """POST with a JSON body from any page is approved, for a day, with Content-Type."""
    answer = preflight(client, HIT, "POST", "content-type")
    assert answer.status_code == 200
    assert approvals(answer) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET, HEAD, POST",
        "access-control-allow-headers": "Accept, Accept-Language, Content-Language, Content-Type",
    }
    assert answer.headers["access-control-max-age"] == "86400"


@pytest.mark.parametrize("origins", ["*", PAGE])
def test_empty_elements_of_the_requested_headers_are_ignored(origins: str) -> None:
    """A preflight asking for `content-type,`, a list with an empty element that HTTP says to
    ignore, is approved as one asking for `content-type`."""
    with client_for(origins=origins) as client:
        answer = preflight(client, HIT, "POST", "content-type, ,")
        plain = preflight(client, HIT, "POST", "content-type")
    assert answer.status_code == 200
    assert approvals(answer) == approvals(plain)
    assert approvals(answer)["access-control-allow-origin"] == origins


@pytest.mark.parametrize(
    ("method", "headers", "refusal"),
    [
        ("PUT", None, "method PUT is not allowed, only GET, HEAD, POST"),
        ("DELETE", None, "method DELETE is not allowed, only GET, HEAD, POST"),
        ("POST", "authorization", "header authorization is not allowed"),
        ("GET", "Content-Type, Authorization", "header authorization is not allowed"),
    ],
)
def test_admin_preflights_get_a_json_400_and_no_approval(
    client: TestClient, method: str, headers: str | None, refusal: str
) -> None:
    """A preflight for PUT, DELETE or an Authorization header is refused in JSON, approving
    nothing."""
    answer = preflight(client, "/v1/counters/blog.example/home", method, headers)
    assert answer.status_code == 400
    assert refusal in answer.json()["detail"]
    assert approvals(answer) == {}


def test_answers_to_admin_methods_carry_no_cors_field(client: TestClient) -> None:
    """Even sent without a preflight, a PUT or DELETE gets no Access-Control field back."""
    for method in ("PUT", "DELETE"):
        answer = client.request(method, "/visit", headers={"Origin": PAGE})
        assert answer.status_code == 405
        assert not [name for name in answer.headers if name.startswith("access-control-")]


def test_the_real_server_answers_cors_on_the_direct_routes_and_the_framework_alike() -> None:
    """POST /visit and GET /stats, answered before the framework, carry the same CORS fields as
    a hit; a page may read the RateLimit fields, Retry-After and the request id; a preflight
    for /visit is approved and has its request id."""
    with running_server("--store", "memory://") as server:
        origin = {"Origin": PAGE}
        visit = httpx2.post(f"{server.url}/visit", headers=origin)
        stats = httpx2.get(f"{server.url}/stats", headers=origin)
        hit = httpx2.post(f"{server.url}{HIT}", headers=origin, json={"page": "/"})
        asked = {**origin, "Access-Control-Request-Method": "POST"}
        approved = httpx2.options(f"{server.url}/visit", headers=asked)
    for answer in (visit, stats, hit):
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "*"
        exposed = answer.headers["access-control-expose-headers"].split(", ")
        assert {"RateLimit-Remaining", "Retry-After", "X-Request-ID"} <= set(exposed)
    assert (
        visit.headers["access-control-expose-headers"]
        == hit.headers["access-control-expose-headers"]
    )
    assert approved.status_code == 200
    assert approved.headers["access-control-allow-methods"] == "GET, HEAD, POST"
    assert "x-request-id" in approved.headers


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(PAGE, PAGE), ("https://elsewhere.example", None), (None, None)],
)
def test_listed_origins_are_named_back_and_others_get_nothing(
    origin: str | None, allowed: str | None
) -> None:
    """With a list of origins, a listed page is named in the answer, any other page gets no
    approval; the direct route answers with exactly the fields of a framework route."""
    with client_for(origins=f"{PAGE}, https://www.blog.example") as client:
        headers = {"Origin": origin} if origin else {}
        visit = client.post("/visit", headers=headers)
        hit = client.post(HIT, headers=headers)
    assert cors_fields(visit) == cors_fields(hit)
    assert visit.headers.get("access-control-allow-origin") == allowed
    assert "Origin" in visit.headers["vary"]


@pytest.mark.parametrize("origins", ["*", PAGE])
def test_a_head_from_another_page_carries_the_cors_fields_of_a_get(origins: str) -> None:
    """HEAD, which a page sends without a preflight, gets the CORS fields GET gets."""
    with client_for(origins=origins) as client:
        got = client.get("/healthz", headers={"Origin": PAGE})
        head = client.head("/healthz", headers={"Origin": PAGE})
    assert cors_fields(head) == cors_fields(got)
    assert head.headers["access-control-allow-origin"] == origins


def test_a_preflight_for_a_head_with_content_type_is_approved(client: TestClient) -> None:
    """A HEAD that a page sends with a Content-Type a preflight must approve is approved, as
    README's CORS section promises."""
    answer = preflight(client, "/healthz", "HEAD", "content-type")
    assert answer.status_code == 200
    assert "HEAD" in answer.headers["access-control-allow-methods"]


def test_a_preflight_from_an_unlisted_origin_is_refused() -> None:
    """With a list of origins, another page's preflight gets a JSON 400 naming its origin."""
    with client_for(origins=PAGE) as client:
        refused = client.options(
            HIT,
            headers={
                "Origin": "https://elsewhere.example",
                "Access-Control-Request-Method": "POST",
            },
        )
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "Cross-origin request refused: origin https://elsewhere.example is not allowed."
    }
    assert approvals(refused) == {}


def test_an_empty_origin_list_turns_cors_off() -> None:
    """With no origin listed, answers carry no CORS field and a preflight is an ordinary OPTIONS
    request: a JSON 405."""
    with client_for(origins="") as client:
        visit = client.post("/visit", headers={"Origin": PAGE})
        asked = preflight(client, HIT, "POST")
    assert "access-control-allow-origin" not in visit.headers
    assert asked.status_code == 405
    assert "detail" in asked.json()


@pytest.mark.parametrize("origins", ["*", ""])
def test_a_hit_sent_as_text_from_another_origin_counts_without_a_preflight(origins: str) -> None:
    """A page view that tracker.js sends from another origin (JSON as text/plain: no preflight)
    counts, whatever origins CORS allows: only reading the answer needs them."""
    with client_for(origins=origins) as client:
        answer = client.post(
            HIT,
            content='{"page": "/post"}',
            headers={"Origin": PAGE, "Content-Type": "text/plain;charset=UTF-8"},
        )
        assert answer.status_code == 200
        assert client.get(HIT.removesuffix("/hits")).json()["value"] == 1
    assert ("access-control-allow-origin" in answer.headers) == (origins == "*")
