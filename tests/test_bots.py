"""Known bots: told by their User-Agent, counted apart on the named counters' routes, and, as
the operator chooses, on POST /visit too."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from visit_tracker.app import create_app
from visit_tracker.settings import BotFilter, Settings
from visit_tracker.visitors import BOT_CHECK_LENGTH, is_bot

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.6 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
    "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"
)
COUNTER = "/v1/counters/site/home"


def test_crawlers_and_scripts_are_bots_and_browsers_are_not() -> None:
    """Search engines' crawlers, link previewers and HTTP libraries are known bots; the
    browsers people use, and a request that names no User-Agent, are not."""
    bots = [
        GOOGLEBOT,
        BINGBOT,
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "python-requests/2.32.3",
        "curl/8.5.0",
    ]
    people = [
        CHROME,
        IPHONE,
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "",
    ]
    assert [is_bot(user_agent) for user_agent in bots] == [True] * len(bots)
    assert [is_bot(user_agent) for user_agent in people] == [False] * len(people)


def test_image_proxies_that_fetch_for_a_person_are_not_bots() -> None:
    """GitHub's and Gmail's image proxies, which the list names, fetch a badge or pixel for
    the person viewing it: their fetches count as people's."""
    assert not is_bot("github-camo (876de43e)")
    assert not is_bot(
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    )


def test_a_long_user_agent_is_checked_by_its_start_only() -> None:
    """Only the first BOT_CHECK_LENGTH characters are checked: a bot named at the start of a
    huge User-Agent is one, one named past them is not, and neither takes long."""
    filler = "x" * 60_000
    is_bot("")  # compiles the list's expressions
    started = time.perf_counter()
    assert is_bot(GOOGLEBOT + filler)
    assert not is_bot("a" * BOT_CHECK_LENGTH + GOOGLEBOT + filler)
    assert time.perf_counter() - started < 0.05


@pytest.fixture
def clients() -> Iterator[dict[BotFilter, TestClient]]:
    """A client for an app on the memory store per bot filter setting, hits unlimited."""
    with (
        TestClient(create_app(Settings(store="memory://", rate_limit_hits=0))) as named,
        TestClient(
            create_app(Settings(store="memory://", rate_limit_hits=0, bot_filter="all"))
        ) as every,
        TestClient(
            create_app(Settings(store="memory://", rate_limit_hits=0, bot_filter="off"))
        ) as off,
    ):
        yield {"named": named, "all": every, "off": off}


def as_(user_agent: str) -> dict[str, Any]:
    return {"headers": {"User-Agent": user_agent}}


def test_a_googlebot_hit_moves_bot_hits_not_the_value(clients: dict[BotFilter, TestClient]) -> None:
    """By default a Googlebot hit is answered the value as it stands and counts only in the
    counter's bot hits; a browser's hit counts; neither the bot nor its page is a visitor."""
    client = clients["named"]
    assert client.post(f"{COUNTER}/hits", **as_(CHROME)).json()["value"] == 1
    bot_hit = client.post(f"{COUNTER}/hits", json={"page": "/secret"}, **as_(GOOGLEBOT))
    assert bot_hit.status_code == 200
    assert bot_hit.json() == {"namespace": "site", "key": "home", "value": 1}
    assert client.post(f"{COUNTER}/hits", **as_(IPHONE)).json()["value"] == 2
    counter = client.get(COUNTER).json()
    assert (counter["value"], counter["bot_hits"], counter["visitors"]["today"]) == (2, 1, 2)
    assert client.get(f"{COUNTER}/pages").json()["pages"] == []
    listed = client.get("/v1/counters/site").json()["counters"]
    assert [(c["key"], c["value"], c["bot_hits"]) for c in listed] == [("home", 2, 1)]


def test_every_route_that_counts_a_named_counter_counts_bots_apart(
    clients: dict[BotFilter, TestClient],
) -> None:
    """The pixel, a counting badge and CountAPI's hit count a bot's view in the bot hits; a
    badge that does not count counts nothing."""
    client = clients["named"]
    for path in (f"{COUNTER}/pixel.gif", f"{COUNTER}/badge.svg?count=true", "/hit/site/home"):
        assert client.get(path, **as_(CHROME)).status_code == 200
        assert client.get(path, **as_(BINGBOT)).status_code == 200
    client.get(f"{COUNTER}/badge.svg", **as_(BINGBOT))
    assert client.get("/hit/site/home", **as_(GOOGLEBOT)).json() == {"value": 3}
    counter = client.get(COUNTER).json()
    assert (counter["value"], counter["bot_hits"]) == (3, 4)


def test_post_visit_counts_bots_unless_the_filter_is_all(
    clients: dict[BotFilter, TestClient],
) -> None:
    """POST /visit counts a bot's visit as it always did, unless the operator filters every
    route; then it answers the total as it stands."""
    settings: list[tuple[BotFilter, list[int]]] = [
        ("named", [1, 2, 3]),
        ("off", [1, 2, 3]),
        ("all", [1, 1, 2]),
    ]
    for setting, expected in settings:
        client = clients[setting]
        visits = [
            client.post("/visit", **as_(user_agent)).json()["visits"]
            for user_agent in (CHROME, GOOGLEBOT, IPHONE)
        ]
        assert visits == expected, setting
        assert client.get("/stats").json()["total_visits"] == expected[-1]
        bots = client.get("/v1/counters/default/visits").json()["bot_hits"]
        assert bots == (1 if setting == "all" else 0)


def test_with_the_filter_off_bots_count_as_people(clients: dict[BotFilter, TestClient]) -> None:
    """With the bot filter off, a bot's hit on a named counter counts in its value."""
    client = clients["off"]
    assert client.post(f"{COUNTER}/hits", **as_(GOOGLEBOT)).json()["value"] == 1
    assert client.get(f"{COUNTER}/pixel.gif", **as_(GOOGLEBOT)).status_code == 200
    counter = client.get(COUNTER).json()
    assert (counter["value"], counter["bot_hits"]) == (2, 0)


def test_metrics_count_bots_apart_from_visits(clients: dict[BotFilter, TestClient]) -> None:
    """A bot's hit is in visit_tracker_bot_hits_total, not in visit_tracker_visits_total."""
    client = clients["named"]
    client.post(f"{COUNTER}/hits", **as_(CHROME))
    client.post(f"{COUNTER}/hits", **as_(GOOGLEBOT))
    client.post(f"{COUNTER}/hits", **as_(GOOGLEBOT))
    lines = client.get("/metrics").text.splitlines()
    assert "visit_tracker_visits_total 1.0" in lines
    assert "visit_tracker_bot_hits_total 2.0" in lines
