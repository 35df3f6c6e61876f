"""Security headers on the HTML pages, with a policy that still lets those pages load."""

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from visit_tracker.app import create_app
from visit_tracker.settings import Settings

SCRIPT_SOURCE = re.compile(r'<script src="([^"]+)"')
LINK = re.compile(r"<link[^>]*>")
HREF = re.compile(r'href="([^"]+)"')
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def directives(policy: str) -> dict[str, list[str]]:
    return {
        name: sources
        for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    }


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app(Settings(store="memory://")))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_doc_pages_carry_a_policy_that_allows_what_they_load(client: TestClient, path: str) -> None:
    """/docs and /redoc come with nosniff, no-referrer, no framing and a CSP that allows each
    script, stylesheet and icon the page names, and each inline script by its hash."""
    page = client.get(path)
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    policy = directives(page.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    scripts = SCRIPT_SOURCE.findall(page.text)
    links = [(tag, HREF.search(tag)) for tag in LINK.findall(page.text)]
    stylesheets = [href.group(1) for tag, href in links if href and "stylesheet" in tag]
    icons = [href.group(1) for tag, href in links if href and "icon" in tag]
    # What the pages load today; an empty list would make the checks below vacuous.
    assert scripts
    assert stylesheets
    assert icons
    for url in scripts:
        assert origin(url) in policy["script-src"], url
    for url in stylesheets:
        assert origin(url) in policy["style-src"], url
    for url in icons:
        assert origin(url) in policy["img-src"], url
    for script in INLINE_SCRIPT.findall(page.text):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    assert policy["connect-src"] == ["'self'"]  # the page fetches /openapi.json


def test_json_answers_are_left_as_they_are(client: TestClient) -> None:
    """JSON answers, the direct routes' and the framework's, get no HTML policy."""
    with client:
        for answer in (client.post("/visit"), client.get("/healthz"), client.get("/nowhere")):
            assert "content-security-policy" not in answer.headers
            assert answer.headers["content-type"] == "application/json"
