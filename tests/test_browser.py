"""The dashboard and tracker.js in a real browser: Debian's Chromium, headless, driven by
Playwright, against a real server.

Screenshots of the dashboard, on a phone and on a desktop, go to `test-output/` (ignored by
git); `docs/dashboard.png` is one of them, from a run.
"""

import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.server import Server, running_server
from tests.tools import require_tool

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = Path(__file__).parent.parent / "test-output"
PHONE = ViewportSize(width=375, height=812)
DESKTOP = ViewportSize(width=1280, height=900)
Scheme = Literal["light", "dark"]
LIVE_TIMEOUT = 15_000
"""Milliseconds a change may take to show: the event stream, or a poll (every 5 s) and the
page's fetch of its sections (2 s after a change), on a loaded machine."""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    require_tool(str(CHROMIUM) if CHROMIUM.exists() else None, "Debian package chromium")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=CHROMIUM)
    yield chromium
    chromium.close()


def as_a_person(browser: Browser) -> str:
    """The User-Agent of this Chromium as a person runs it: headless, it calls itself
    HeadlessChrome, which the bot list names, and its views would count as a bot's."""
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{browser.version} Safari/537.36"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    store = tmp_path_factory.mktemp("browser") / "visits.db"
    with running_server("--store", f"sqlite:///{store}") as served:
        yield served


@pytest.fixture(scope="module")
def other_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A static web site on another loopback port: another origin than the server's. Its URL,
    and the directory it serves."""
    root = tmp_path_factory.mktemp("site")

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{site.server_address[1]}", root
    site.shutdown()
    site.server_close()
    thread.join()


class Problems:
    """What a page reports that should not happen: script errors, refused loads (the CSP)."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self.console)

    def console(self, message: ConsoleMessage) -> None:
        # The event stream's 404, while the server has none, is expected: the page polls.
        if message.type == "error" and "status of 404" not in message.text:
            self.errors.append(message.text)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, user_agent=as_a_person(browser))
    opened = context.new_page()
    problems = Problems(opened)
    yield opened
    context.close()
    assert problems.errors == []


def tracked_page(*, server: Server, namespace: str, key: str, extra: str = "") -> str:
    return (
        "<!doctype html><title>A post</title><h1>A post</h1>"
        f'<script src="{server.url}/tracker.js" data-namespace="{namespace}" '
        f'data-key="{key}" {extra} defer></script>'
    )


def wait_for(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def counter_value(server: Server, namespace: str, key: str) -> int | None:
    answer = httpx2.get(f"{server.url}/v1/counters/{namespace}/{key}")
    return int(answer.json()["value"]) if answer.status_code == 200 else None


def test_the_dashboard_follows_visits_without_a_reload(page: Page, server: Server) -> None:
    """The dashboard shows the count of POST /visit; visits sent afterwards change the number
    and both charts in the same page, never reloaded."""
    for _ in range(3):
        httpx2.post(f"{server.url}/visit").raise_for_status()
    total = httpx2.get(f"{server.url}/stats").json()["total_visits"]
    page.goto(server.url)
    figure = page.locator("#figures [data-value]")
    expect(figure).to_have_text(f"{total:,}")
    expect(page.locator("#hourly figcaption")).to_contain_text(f"{total:,} visits from")
    page.evaluate("window.notReloaded = true")
    for _ in range(5):
        httpx2.post(f"{server.url}/visit").raise_for_status()
    expect(figure).to_have_text(f"{total + 5:,}", timeout=LIVE_TIMEOUT)
    for chart in ("#hourly", "#daily"):
        summary = page.locator(f"{chart} figcaption")
        expect(summary).to_contain_text(f"{total + 5:,} visits from", timeout=LIVE_TIMEOUT)
        last_bar = page.locator(f"{chart} rect.hits").last.locator("title")
        expect(last_bar).to_contain_text(f": {total + 5:,} visits")
    assert page.evaluate("window.notReloaded") is True


def test_the_dashboard_takes_the_value_from_the_event_stream_where_served(
    page: Page, server: Server
) -> None:
    """Where the server streams the counter's events (played here by the browser's network
    layer, as the event stream's contract says: `event: value`, then the value as JSON), the
    page takes the value from them and polls nothing."""
    counter = f"{server.url}/v1/counters/default/visits"

    def stream(route: Route) -> None:
        value = httpx2.get(f"{server.url}/stats").json()["total_visits"]
        event = json.dumps({"namespace": "default", "key": "visits", "value": value})
        # The stream ends after one event; `retry` makes the browser open it again soon.
        route.fulfill(
            content_type="text/event-stream", body=f"retry: 300\nevent: value\ndata: {event}\n\n"
        )

    page.route(f"{counter}/events", stream)
    polled = []
    page.on("request", lambda request: polled.append(request.url == counter))
    httpx2.post(f"{server.url}/visit").raise_for_status()
    page.goto(server.url)
    total = httpx2.get(f"{server.url}/stats").json()["total_visits"]
    for _ in range(2):
        httpx2.post(f"{server.url}/visit").raise_for_status()
    expect(page.locator("#figures [data-value]")).to_have_text(f"{total + 2:,}")
    assert not any(polled)


@pytest.mark.parametrize("sender", ["sendBeacon", "fetch"])
def test_a_page_on_another_origin_counts_its_own_view(
    page: Page, server: Server, other_site: tuple[str, Path], sender: str
) -> None:
    """A page of another origin with the tracker.js tag counts its view, with its path (no
    query string) and its referrer, by sendBeacon or, without it, fetch; the counter's
    dashboard page lists the page."""
    site, root = other_site
    key = f"post-{sender}"
    (root / "blog").mkdir(exist_ok=True)
    (root / "blog" / f"{key}.html").write_text(
        tracked_page(server=server, namespace="site.example", key=key)
    )
    if sender == "fetch":
        page.add_init_script("delete Navigator.prototype.sendBeacon")
    page.goto(
        f"{site}/blog/{key}.html?email=someone@example.org",
        referer="https://news.example.org/item?id=7",
    )
    wait_for(lambda: counter_value(server, "site.example", key) == 1)
    history = httpx2.get(f"{server.url}/v1/counters/site.example/{key}/pages").json()
    assert history == {
        "pages": [{"page": f"/blog/{key}.html", "hits": 1}],
        "referrers": [{"referrer": "https://news.example.org/item", "hits": 1}],
    }
    page.goto(f"{server.url}/dashboard/site.example/{key}")
    expect(page.locator("#top-pages")).to_contain_text(f"/blog/{key}.html")
    expect(page.locator("#figures [data-value]")).to_have_text("1")


def test_a_page_on_the_servers_own_origin_counts_its_view(page: Page, server: Server) -> None:
    """The same tag counts a view on a page served from the tracker's own origin."""
    url = f"{server.url}/about/team"
    page.route(
        url,
        lambda route: route.fulfill(
            content_type="text/html",
            body=tracked_page(server=server, namespace="site.example", key="same-origin"),
        ),
    )
    page.goto(url)
    wait_for(lambda: counter_value(server, "site.example", "same-origin") == 1)
    pages = httpx2.get(f"{server.url}/v1/counters/site.example/same-origin/pages").json()
    assert pages["pages"] == [{"page": "/about/team", "hits": 1}]


def test_do_not_track_is_respected_when_the_tag_asks(
    page: Page, server: Server, other_site: tuple[str, Path]
) -> None:
    """With Do Not Track on, a tag with data-respect-dnt counts nothing; one without it still
    counts."""
    site, root = other_site
    page.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    for key, extra in (("dnt-respected", "data-respect-dnt"), ("dnt-ignored", "")):
        (root / f"{key}.html").write_text(
            tracked_page(server=server, namespace="site.example", key=key, extra=extra)
        )
        page.goto(f"{site}/{key}.html")
        page.wait_for_load_state("networkidle")
    wait_for(lambda: counter_value(server, "site.example", "dnt-ignored") == 1)
    assert counter_value(server, "site.example", "dnt-respected") is None


def test_the_dashboard_fits_a_phone_and_a_desktop(browser: Browser, server: Server) -> None:
    """At 375 px wide nothing overflows sideways; screenshots of a phone (dark) and a desktop
    (light) go to test-output/."""
    httpx2.post(f"{server.url}/visit").raise_for_status()
    OUTPUT.mkdir(exist_ok=True)
    shots: list[tuple[str, ViewportSize, Scheme]] = [
        ("phone", PHONE, "dark"),
        ("desktop", DESKTOP, "light"),
    ]
    for name, viewport, scheme in shots:
        context = browser.new_context(
            viewport=viewport, color_scheme=scheme, user_agent=as_a_person(browser)
        )
        shown = context.new_page()
        problems = Problems(shown)
        shown.goto(server.url)
        expect(shown.locator("#hourly svg")).to_be_visible()
        assert shown.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        shown.screenshot(path=OUTPUT / f"dashboard-{name}.png", full_page=True)
        context.close()
        assert problems.errors == []


CONTRAST = """
([selector, backgroundSelector]) => {
  const rgb = (color) => color.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const luminance = (color) => {
    const [r, g, b] = rgb(color).map((c) => {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const text = getComputedStyle(document.querySelector(selector)).color;
  const background = getComputedStyle(document.querySelector(backgroundSelector)).backgroundColor;
  const [high, low] = [luminance(text), luminance(background)].sort((a, b) => b - a);
  return (high + 0.05) / (low + 0.05);
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_keeps_its_contrast_in_light_and_dark(
    browser: Browser, server: Server, scheme: Scheme
) -> None:
    """Headings, links and the muted labels have a contrast of at least 4.5:1 (WCAG AA) on
    their background, in the light scheme and in the dark one."""
    httpx2.post(f"{server.url}/visit").raise_for_status()
    context = browser.new_context(
        viewport=DESKTOP, color_scheme=scheme, user_agent=as_a_person(browser)
    )
    shown = context.new_page()
    shown.goto(server.url)
    for text, background in (
        ("h1", "html"),
        (".figure dt", ".card"),
        ("#top-counters a", ".card"),
        ("#hourly figcaption", ".card"),
    ):
        assert shown.evaluate(CONTRAST, [text, background]) >= 4.5, (scheme, text)
    context.close()


def test_the_keyboard_reaches_the_counter_links_with_a_visible_focus(
    page: Page, server: Server
) -> None:
    """Tabbing through the dashboard reaches each top counter's link, and the focused link
    shows an outline."""
    httpx2.post(f"{server.url}/visit").raise_for_status()
    page.goto(server.url)
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.getAttribute('href')"))
        if reached[-1] == "/dashboard/default/visits":
            break
    assert reached[-1] == "/dashboard/default/visits", reached
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.url}/dashboard/default/visits")
