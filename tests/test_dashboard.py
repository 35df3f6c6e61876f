"""The dashboard's pages: drawn on the server from what the JSON routes answer, with nothing
inline for the Content-Security-Policy to allow."""

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.test_negotiation import BROWSER_ACCEPT
from visit_tracker.api.dashboard import templates
from visit_tracker.app import create_app
from visit_tracker.charts import bar_chart
from visit_tracker.settings import Settings
from visit_tracker.stores import CounterId

HOME_HITS = "/v1/counters/example.com/home/hits"
STRICT_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(store="memory://"))) as test_client:
        yield test_client


def figure(page: str, label: str) -> str:
    """The text of the figure labelled `label` on the page."""
    found = re.search(rf"<dt>{re.escape(label)}</dt>\s*<dd[^>]*>([^<]*)</dd>", page)
    assert found, label
    return found.group(1)


def test_the_home_page_before_any_visit(client: TestClient) -> None:
    """With nothing counted yet, / shows 0 visits, says the charts wait for the first, and
    lists no counter."""
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert figure(page.text, "Total visits") == "0"
    assert "No visits yet" in page.text
    assert "No counters yet." in page.text


def test_the_home_page_shows_visits_top_counters_and_top_pages(client: TestClient) -> None:
    """/ shows the visits of POST /visit, uptime, both charts, the counters with the most
    visits (linked to their pages) and their top pages, and its one unique visitor."""
    for _ in range(1234):
        client.post("/visit")
    for page in ["/a", "/a", "/b"]:
        client.post(HOME_HITS, json={"page": page})
    text = client.get("/").text
    assert figure(text, "Total visits") == "1,234"
    assert figure(text, "Unique visitors today") == "1"
    assert figure(text, "Uptime").endswith(" s")
    assert "Visits per hour, last 48 hours" in text
    assert "Visits per day, last 30 days" in text
    assert "1,234 visits from" in text  # both charts' summaries
    links = re.findall(r'<a href="(/dashboard/[^"]+)">', text)
    assert links[:2] == ["/dashboard/default/visits", "/dashboard/example.com/home"]
    rows = re.findall(r'<th scope="row" class="path">([^<]*)</th>', text)
    assert rows == ["/a", "/b"]


def test_a_counter_page_shows_its_figures_history_and_snippet(client: TestClient) -> None:
    """/dashboard/{namespace}/{key} shows the counter's value, its top pages and referrers, and
    the tracker.js tag that counts on it, served from this server."""
    client.post(HOME_HITS, json={"page": "/post", "referrer": "https://news.example.org/x?id=1"})
    client.post(HOME_HITS)
    page = client.get("/dashboard/example.com/home")
    assert page.status_code == 200
    assert figure(page.text, "Visits") == "2"
    assert '<th scope="row" class="path">/post</th>' in page.text
    assert '<th scope="row" class="path">https://news.example.org/x</th>' in page.text
    snippet = (
        '&lt;script src="http://testserver/tracker.js" data-namespace="example.com" '
        'data-key="home" defer&gt;&lt;/script&gt;'
    )
    assert snippet in page.text


def test_what_visitors_send_is_escaped(client: TestClient) -> None:
    """A page path holding markup is shown as text, never as markup."""
    client.post(HOME_HITS, json={"page": "/<script>alert(1)</script>"})
    for path in ("/", "/dashboard/example.com/home"):
        text = client.get(path).text
        assert "<script>alert" not in text
        assert "/&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/dashboard/example.com/nothing", 404, "Counter example.com/nothing does not exist."),
        (
            "/dashboard/bad%20name/home",
            422,
            "The namespace “bad name” must be 1 to 64 characters from A-Z, a-z, 0-9, "
            "&#39;_&#39;, &#39;.&#39; and &#39;-&#39;.",
        ),
    ],
)
def test_a_missing_or_misnamed_counter_is_a_page_to_a_browser(
    client: TestClient, path: str, status: int, says: str
) -> None:
    """A browser asking for the page of a counter that does not exist, or of a name that is not
    one, gets a 404 or 422 page saying so, linked back to /, with the pages' headers and
    nothing live on it; the API's own route still answers that browser in JSON."""
    answer = client.get(path, headers={"Accept": BROWSER_ACCEPT})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["content-security-policy"] == STRICT_POLICY
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-cache"
    assert f"<p>{says}</p>" in answer.text
    assert '<a href="/">Back to all visits</a>' in answer.text
    assert "<script" not in answer.text
    assert "data-namespace" not in answer.text
    api = client.get("/v1/counters/example.com/nothing", headers={"Accept": BROWSER_ACCEPT})
    assert api.json() == {"detail": "Counter example.com/nothing does not exist."}


@pytest.mark.parametrize("accept", ["application/json", "application/json, */*;q=0.5"])
@pytest.mark.parametrize(
    ("path", "status"),
    [("/dashboard/example.com/nothing", 404), ("/dashboard/bad%20name/home", 422)],
)
def test_a_client_that_prefers_json_gets_the_json_refusal(
    client: TestClient, accept: str, path: str, status: int
) -> None:
    """A client whose Accept prefers JSON to HTML gets the API's JSON refusal instead."""
    answer = client.get(path, headers={"Accept": accept})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert "detail" in answer.json()


def test_pages_load_only_from_this_server_and_nothing_inline(client: TestClient) -> None:
    """Both pages carry the strict policy (this origin only, no framing), load their script
    and stylesheet from this server, and hold no inline script, style or event handler, which
    the policy would block."""
    client.post(HOME_HITS, json={"page": "/a"})
    for path in ("/", "/dashboard/example.com/home"):
        page = client.get(path)
        assert page.headers["content-security-policy"] == STRICT_POLICY
        assert page.headers["x-frame-options"] == "DENY"
        scripts = re.findall(r"<script([^>]*)>", page.text)
        assert scripts == [' src="/static/dashboard.js?v=' + scripts[0].split("?v=")[1]]
        assert re.findall(r'<link rel="stylesheet" href="(/static/[^"]+)">', page.text)
        assert "<style" not in page.text
        assert not re.search(r"\s(style|on[a-z]+)=", page.text)


def test_pages_are_rate_limited_as_reads() -> None:
    """The pages spend the client's reads bucket: past its burst, a JSON 429."""
    settings = Settings(store="memory://", rate_limit_reads=0.001, rate_limit_reads_burst=2)
    with TestClient(create_app(settings)) as client:
        answers = [client.get("/").status_code for _ in range(3)]
        refused = client.get("/dashboard/default/visits")
    assert answers == [200, 200, 429]
    assert refused.status_code == 429
    assert "detail" in refused.json()


def test_unique_visitors_show_when_the_api_answers_them() -> None:
    """A counter whose answers carry unique visitors, in total and per bucket, shows them in its
    figures, its charts and their tables."""
    buckets = [{"start": "2026-03-01T10:00:00.000Z", "hits": 9, "visitors": 4}]
    details = {
        "value": 9,
        "created_at": "2026-03-01T10:00:00.000Z",
        "visitors": {"today": 4, "last_7_days": 1234, "last_30_days": 5678},
        "hourly": bar_chart(buckets, interval="hour"),
        "daily": bar_chart(buckets, interval="day"),
    }
    page = templates.get_template("counter.html").render(
        counter=CounterId("example.com", "home"),
        details=details,
        views={"pages": [], "referrers": []},
        origin="https://visits.example.com",
    )
    assert figure(page, "Unique visitors today") == "4"
    assert figure(page, "Unique visitors, 7 days") == "1,234"
    assert figure(page, "Unique visitors, 30 days") == "5,678"
    assert page.count('<rect class="visitors"') == 2
    assert page.count('<td class="number">4</td>') == 2  # a row of each chart's table
