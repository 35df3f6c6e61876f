"""A counter's history over HTTP: the hit body, series, top pages and referrers, and purge."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from time_machine import TimeMachineFixture

from visit_tracker.app import create_app
from visit_tracker.history import clean_page, clean_referrer
from visit_tracker.metrics import Metrics
from visit_tracker.service import Tracker
from visit_tracker.settings import Settings
from visit_tracker.stores import CounterId, Hit, Store, open_store

NOW = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
LAST_TEN_DAYS = {
    "start_ms": int((NOW - timedelta(days=10)).timestamp() * 1000),
    "end_ms": int(NOW.timestamp() * 1000),
}
HITS = "/v1/counters/site/home/hits"
SERIES = "/v1/counters/site/home/series"
PAGES = "/v1/counters/site/home/pages"


def test_hits_with_pages_and_referrers_make_the_top_lists(client: TestClient) -> None:
    """Pages and referrers sent with hits come back ranked, cleaned of their query strings."""
    for body in [
        {"page": "/a?email=someone", "referrer": "https://News.Example.org/item?id=1#top"},
        {"page": "/a#section"},
        {"page": "/b", "referrer": "http://news.example.org:8080"},
        {"referrer": "https://news.example.org/item"},
        {},
    ]:
        assert client.post(HITS, json=body).status_code == 200
    assert client.post(HITS).json() == {"namespace": "site", "key": "home", "value": 6}
    top = client.get(PAGES)
    assert top.status_code == 200
    assert top.json() == {
        "pages": [{"page": "/a", "hits": 2}, {"page": "/b", "hits": 1}],
        "referrers": [
            {"referrer": "https://news.example.org/item", "hits": 2},
            {"referrer": "http://news.example.org:8080/", "hits": 1},
        ],
    }
    assert client.get(PAGES, params={"limit": 1}).json()["pages"] == [{"page": "/a", "hits": 2}]


@pytest.mark.parametrize(
    "body",
    [
        None,  # no body: the server's direct path reads the query string
        (part for part in [b"{", b"}"]),  # a chunked body: the framework reads it all
    ],
)
def test_a_page_and_referrer_in_the_query_string_count_as_in_the_body(
    client: TestClient, body: Any
) -> None:
    """The page and referrer given in the query string land in the top lists, cleaned, just as
    they would from a body, on the direct path and the framework's alike."""
    query = {"page": "/a?email=someone", "referrer": "https://News.Example.org/item?id=1"}
    json_type = {"Content-Type": "application/json"}
    assert client.post(HITS, params=query, content=body, headers=json_type).status_code == 200
    assert client.post(HITS, params={"page": "/a"}).status_code == 200
    assert client.get(PAGES).json() == {
        "pages": [{"page": "/a", "hits": 2}],
        "referrers": [{"referrer": "https://news.example.org/item", "hits": 1}],
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"page": "/" + "a" * 512}, "page"),
        ({"page": "a/b"}, "page"),
        ({"page": "//evil.example/"}, "page"),
        ({"page": "/a\nb"}, "page"),
        ({"page": 5}, "page"),
        ({"referrer": "ftp://example.org/"}, "referrer"),
        ({"referrer": "javascript:alert(1)"}, "referrer"),
        ({"referrer": "https://"}, "referrer"),
        ({"referrer": "https://someone:secret@example.org/"}, "referrer"),
        ({"referrer": "https://example.org/" + "a" * 500}, "referrer"),
        ({"page": "/a", "visitor": "x"}, "visitor"),
    ],
)
def test_a_bad_hit_body_is_a_422_naming_the_field_and_counts_nothing(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    """A page that is not a path, a referrer that is not an http(s) URL, either too long, or
    an unknown field, is refused with a 422 that names it, and the hit is not counted."""
    response = client.post(HITS, json=body)
    assert response.status_code == 422
    assert [problem["loc"][-1] for problem in response.json()["detail"]] == [field]
    assert client.get("/v1/counters/site/home").status_code == 404


@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "Text/Plain", "text/plain"])
def test_a_hit_body_sent_as_text_counts_as_json_does(client: TestClient, content_type: str) -> None:
    """JSON sent as text/plain, as navigator.sendBeacon sends a string, counts the hit with its
    page and referrer."""
    body = json.dumps({"page": "/a?x=1", "referrer": "https://news.example.org/item"})
    answer = client.post(HITS, content=body, headers={"Content-Type": content_type})
    assert answer.json() == {"namespace": "site", "key": "home", "value": 1}
    assert client.get(PAGES).json() == {
        "pages": [{"page": "/a", "hits": 1}],
        "referrers": [{"referrer": "https://news.example.org/item", "hits": 1}],
    }


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", "page=/a"),
        ("text/html", '{"page": "/a"}'),
        (None, '{"page": "/a"}'),
        ("text/plain", '{"page": "/a", "visitor": "x"}'),
    ],
)
def test_a_hit_body_that_is_not_json_is_a_422_and_counts_nothing(
    client: TestClient, content_type: str | None, body: str
) -> None:
    """Text that is not a valid hit body, and a body of any type but JSON and text, is refused
    with a 422; text is read as JSON on the hits route only."""
    headers = {"Content-Type": content_type} if content_type else {}
    assert client.post(HITS, content=body, headers=headers).status_code == 422
    assert client.get("/v1/counters/site/home").status_code == 404
    create = client.post("/v1/counters/site/other", content='{"value": 3}', headers=headers)
    assert create.status_code == 422


def test_a_referrers_query_string_never_reaches_the_sqlite_file(tmp_path: Path) -> None:
    """Neither a referrer's nor a page's query string or fragment is written to the store."""
    marker = "personal-7f3a9c"
    app = create_app(Settings(store=f"sqlite:///{tmp_path}/visits.db"))
    with TestClient(app) as client:
        body = {
            "page": f"/signup?email={marker}#{marker}",
            "referrer": f"https://mail.example.org/inbox/read?user={marker}#{marker}",
        }
        assert client.post(HITS, json=body).status_code == 200
    written = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert b"https://mail.example.org/inbox/read" in written  # the search does find text
    assert b"/signup" in written
    assert marker.encode() not in written


def test_a_series_lists_every_bucket_of_its_range_in_utc(
    client: TestClient, time_machine: TimeMachineFixture
) -> None:
    """The default series is the last 48 hours, zeros included, the current hour last."""
    time_machine.move_to(NOW, tick=False)
    for _ in range(3):
        client.post(HITS)
    series = client.get(SERIES)
    assert series.status_code == 200
    body = series.json()
    assert (body["namespace"], body["key"], body["interval"]) == ("site", "home", "hour")
    expected = [NOW.replace(minute=0) - timedelta(hours=hours) for hours in range(47, -1, -1)]
    assert [bucket["start"] for bucket in body["buckets"]] == [
        moment.strftime("%Y-%m-%dT%H:00:00.000Z") for moment in expected
    ]
    assert [bucket["hits"] for bucket in body["buckets"]] == [0] * 47 + [3]


def test_a_day_series_sums_hours_by_utc_day(
    client: TestClient, time_machine: TimeMachineFixture
) -> None:
    """Day buckets sum all their hours, past the end of the range too; a range given with a
    zone offset is read in UTC."""
    time_machine.move_to(NOW - timedelta(days=1), tick=False)
    client.post(HITS)
    time_machine.move_to(NOW, tick=False)
    client.post(HITS)
    time_machine.move_to(NOW + timedelta(hours=5), tick=False)
    client.post(HITS)
    days = client.get(SERIES, params={"interval": "day"}).json()["buckets"]
    assert len(days) == 30
    assert days[-2:] == [
        {"start": "2026-02-28T00:00:00.000Z", "hits": 1, "visitors": 1},
        {"start": "2026-03-01T00:00:00.000Z", "hits": 2, "visitors": 1},
    ]
    hours = client.get(
        SERIES, params={"start": "2026-03-01T12:00:00+02:00", "end": "2026-03-01T12:00:00"}
    ).json()["buckets"]
    morning = {"interval": "day", "start": "2026-03-01T00:00Z", "end": "2026-03-01T11:00Z"}
    whole_day = [{"start": "2026-03-01T00:00:00.000Z", "hits": 2, "visitors": 1}]
    assert client.get(SERIES, params=morning).json()["buckets"] == whole_day
    assert [(bucket["start"][11:13], bucket["hits"]) for bucket in hours] == [
        (f"{hour:02}", 1 if hour == 10 else 0) for hour in range(10, 12)
    ]


@pytest.mark.parametrize("path", [SERIES, PAGES])
def test_the_history_of_a_missing_counter_is_a_404(client: TestClient, path: str) -> None:
    """Series and top lists of a counter that does not exist answer a JSON 404."""
    response = client.get(path.replace("home", "missing"))
    assert response.status_code == 404
    assert response.json() == {"detail": "Counter site/missing does not exist."}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (SERIES, {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T01:00:00Z"}, "start"),
        (
            SERIES,
            {"interval": "day", "start": "2025-01-01T00:00Z", "end": "2026-02-06T00:00Z"},
            "start",
        ),
        (SERIES, {"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end"),
        (SERIES, {"start": "1960-01-01T00:00:00Z"}, "start"),
        (SERIES, {"interval": "week"}, "interval"),
        (SERIES, {"end": "yesterday"}, "end"),
        (SERIES, {"end": "1772359200"}, "end"),
        (PAGES, {"start": "2026-03-01"}, "start"),
        (PAGES, {"start": "2025-01-01T00:00Z", "end": "2026-02-06T00:00Z"}, "start"),
        (PAGES, {"limit": 0}, "limit"),
    ],
)
def test_a_bad_range_is_a_422_naming_its_parameter(
    client: TestClient, path: str, params: dict[str, Any], field: str
) -> None:
    """Ranges longer than 31 days of hours or 400 days, empty or before 1970, are refused."""
    client.post(HITS)
    response = client.get(path, params=params)
    assert response.status_code == 422
    assert [problem["loc"] for problem in response.json()["detail"]] == [["query", field]]


def test_the_longest_ranges_are_answered(client: TestClient) -> None:
    """31 days of hours and 400 days of days are each one answer."""
    client.post(HITS)
    hours = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
    assert len(client.get(SERIES, params=hours).json()["buckets"]) == 31 * 24
    days = {"interval": "day", "start": "2025-01-01T00:00Z", "end": "2026-02-05T00:00Z"}
    assert len(client.get(SERIES, params=days).json()["buckets"]) == 400


@pytest.mark.anyio
async def test_the_tracker_purges_history_older_than_the_days_kept(
    store: Store, time_machine: TimeMachineFixture
) -> None:
    """A purge keeps today and `history_days` full days before it, and drops what is older."""
    tracker = Tracker(store, metrics=Metrics(), history_days=2)
    counter = CounterId("site", "home")
    for days_ago in (3, 2, 0):
        time_machine.move_to(NOW - timedelta(days=days_ago), tick=False)
        await tracker.view(counter, page=f"/{days_ago}", referrer=None)
    await tracker.purge_history()
    everything = {"start_ms": 0, "end_ms": 2**62}
    series = await tracker.series(counter, interval="day", **LAST_TEN_DAYS)
    assert [hits for _, hits, _ in series if hits] == [1, 1]
    pages = await store.top(counter, kind="page", limit=5, **everything)
    assert sorted(pages) == [("/0", 1), ("/2", 1)]


@pytest.mark.anyio
async def test_a_running_tracker_purges_at_start(
    tmp_path: Path, time_machine: TimeMachineFixture
) -> None:
    """The background purge runs as soon as the tracker starts, without waiting an hour."""
    settings = Settings(store=f"sqlite:///{tmp_path}/visits.db", history_days=1)
    counter = CounterId("site", "home")
    time_machine.move_to(NOW - timedelta(days=3), tick=False)
    store = await open_store(settings.store, wait_limit=2.0)
    await store.apply([Hit(counter)])
    await store.close()
    time_machine.move_to(NOW, tick=False)
    async with Tracker.running(settings, metrics=Metrics()) as tracker:
        # SQLite answers without waiting on I/O: the purge task is done within a few ticks.
        for _ in range(20):
            await asyncio.sleep(0)
        series = await tracker.series(counter, interval="day", **LAST_TEN_DAYS)
    assert not any(hits for _, hits, _ in series)


def test_page_and_referrer_cleaning_keeps_what_identifies_no_one() -> None:
    """Cleaning keeps a page's path and a referrer's origin and path, nothing after them."""
    assert clean_page("/a/b?x=1#y") == "/a/b"
    assert clean_referrer("HTTPS://Example.ORG:443/p/q?x=1#y") == "https://example.org:443/p/q"
    assert clean_referrer("https://example.org?q=1") == "https://example.org/"
    assert clean_referrer("http://[::1]:8080") == "http://[::1]:8080/"
