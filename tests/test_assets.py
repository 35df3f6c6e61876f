"""The files browsers load from the server: the dashboard's, and tracker.js for other sites."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from visit_tracker.api.assets import DASHBOARD, asset_url
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

STATIC = Path(__file__).parent.parent / "src" / "visit_tracker" / "static"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(store="memory://"))) as test_client:
        yield test_client


@pytest.mark.parametrize("name", sorted(DASHBOARD))
def test_a_dashboard_file_is_kept_for_good_under_its_version(client: TestClient, name: str) -> None:
    """Asked for by its current version, a dashboard file may be cached for good; without it,
    it is asked for again each time, and a browser that has it gets a 304."""
    versioned = client.get(asset_url(name))
    assert versioned.status_code == 200
    assert versioned.content == (STATIC / name).read_bytes()
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["x-content-type-options"] == "nosniff"
    plain = client.get(f"/static/{name}")
    assert plain.headers["cache-control"] == "no-cache"
    again = client.get(f"/static/{name}", headers={"If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("path", ["/tracker.js", *(f"/static/{name}" for name in DASHBOARD)])
def test_a_file_answers_head_as_it_answers_get(client: TestClient, path: str) -> None:
    """HEAD of a file answers GET's status and headers (its length, type, cache and ETag);
    that no body goes out is checked on the wire, in test_api."""
    got, head = client.get(path), client.head(path)
    assert head.status_code == got.status_code == 200
    assert {**head.headers, "x-request-id": ""} == {**got.headers, "x-request-id": ""}


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ("{etag}", 304),
        ('"0000000000000000", {etag}', 304),
        ('"0000000000000000",{etag} , "1111111111111111"', 304),
        ("W/{etag}", 304),
        ('W/"0000000000000000", W/{etag}', 304),
        ("*", 304),
        ('"0000000000000000"', 200),
        ('"0000000000000000", W/"1111111111111111"', 200),
        ("{bare}", 200),
    ],
)
def test_if_none_match_is_compared_as_http_says(
    client: TestClient, if_none_match: str, status: int
) -> None:
    """`If-None-Match` gets a 304 when any tag of its list matches the file's ETag weakly (`W/`
    or not), or when it is `*`; a list without it, or a tag without its quotes, gets the file."""
    etag = client.get("/tracker.js").headers["etag"]
    asked = if_none_match.format(etag=etag, bare=etag.strip('"'))
    for method in ("GET", "HEAD"):
        answer = client.request(method, "/tracker.js", headers={"If-None-Match": asked})
        assert answer.status_code == status
        assert answer.headers["etag"] == etag
        assert (answer.content != b"") == (status == 200 and method == "GET")


def test_only_the_dashboard_files_are_served(client: TestClient) -> None:
    """Any other name under /static is a JSON 404: nothing else of the package is reachable."""
    for name in ("tracker.js", "..%2F__init__.py", "nothing.css"):
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 404
        assert "detail" in answer.json()


def test_tracker_js_is_the_minified_source_and_under_a_kilobyte(client: TestClient) -> None:
    """/tracker.js serves tracker.min.js, which is exactly what `make tracker` makes of
    tracker.js, under 1024 bytes, as JavaScript that browsers keep a day."""
    served = client.get("/tracker.js")
    assert served.status_code == 200
    assert served.headers["content-type"] == "text/javascript; charset=utf-8"
    assert served.headers["cache-control"] == "public, max-age=86400"
    assert len(served.content) < 1024
    minified = subprocess.run(
        [sys.executable, "-m", "rjsmin"],  # as `make tracker` runs it
        input=(STATIC / "tracker.js").read_bytes(),
        capture_output=True,
        check=True,
    )
    assert served.content == minified.stdout
    assert served.content == (STATIC / "tracker.min.js").read_bytes()
