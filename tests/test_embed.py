"""Embedding through the app: the badge and the pixel count and read counters on every store,
answer with images no cache keeps, and refuse bad input with JSON."""

import sqlite3
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from fastapi.testclient import TestClient

from visit_tracker.app import create_app
from visit_tracker.settings import Settings

BADGE = "/v1/counters/example.com/home/badge.svg"
PIXEL = "/v1/counters/example.com/home/pixel.gif"
NO_CACHE = {
    "cache-control": "no-cache, no-store, must-revalidate, max-age=0",
    "expires": "0",
    "pragma": "no-cache",
}
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def memory_client() -> Iterator[TestClient]:
    """A client for the app on the memory store: for checks that no store changes."""
    with TestClient(create_app(Settings(store="memory://"))) as test_client:
        yield test_client


def badge_title(svg: str) -> str | None:
    return ET.fromstring(svg).findtext(f"{SVG}title")  # noqa: S314 -- our own answer


def test_a_badge_that_counts_adds_a_hit_and_one_that_reads_does_not(client: TestClient) -> None:
    """`count=true` counts each view before drawing; without it the badge shows the value, a
    missing counter as 0 and without creating it."""
    assert badge_title(client.get(BADGE).text) == "visits: 0"
    assert client.get("/v1/counters/example.com/home").status_code == 404
    for expected in (1, 2):
        response = client.get(BADGE, params={"count": "true"})
        assert badge_title(response.text) == f"visits: {expected}"
    assert badge_title(client.get(BADGE, params={"label": "views"}).text) == "views: 2"
    assert client.get("/v1/counters/example.com/home").json()["value"] == 2


def test_a_badge_is_uncacheable_svg_that_runs_nothing(memory_client: TestClient) -> None:
    """The badge is image/svg+xml with the no-cache headers image proxies obey, and a policy
    that lets it run and load nothing when opened on its own."""
    response = memory_client.get(BADGE, params={"style": "for-the-badge", "color": "ff8800"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert NO_CACHE.items() <= dict(response.headers).items()
    assert response.headers["content-security-policy"] == "default-src 'none'"
    assert response.headers["x-content-type-options"] == "nosniff"
    root = ET.fromstring(response.text)  # noqa: S314 -- our own answer
    assert "#ff8800" in {rect.get("fill") for rect in root.iter(f"{SVG}rect")}


def test_a_label_with_markup_reaches_the_badge_as_text(memory_client: TestClient) -> None:
    """A label holding a script tag and quotes is shown as text: no element or attribute of its
    own reaches the SVG."""
    label = """<script>alert("x")</script>' onload='y"""
    svg = memory_client.get(BADGE, params={"label": label}).text
    root = ET.fromstring(svg)  # noqa: S314 -- our own answer
    assert [element for element in root.iter() if element.tag.endswith("script")] == []
    assert [n for element in root.iter() for n in element.attrib if n.startswith("on")] == []
    assert root.findtext(f"{SVG}title") == f"{label}: 0"


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"color": "#fff"}, "color", "without '#'"),
        ({"color": "purple-ish"}, "color", "brightgreen"),
        ({"style": "plastic"}, "style", "'flat'"),
        ({"label": "x" * 65}, "label", "at most 64 characters"),
        ({"label": "line\nbreak"}, "label", "control characters"),
        ({"count": "maybe"}, "count", "boolean"),
    ],
)
def test_bad_badge_input_is_a_422_naming_the_field(
    memory_client: TestClient, params: dict[str, str], field: str, message: str
) -> None:
    """An unknown colour or style, a long or control-character label, or a count that is not a
    boolean answers 422 JSON naming the field and what is allowed, counting nothing."""
    response = memory_client.get(BADGE, params=params)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["query", field]
    assert message in problem["msg"]
    assert memory_client.get("/v1/counters/example.com/home").status_code == 404


class Gif(NamedTuple):
    """What matters here of a GIF of one image."""

    size: tuple[int, int, int, int]
    """The screen's width and height, then the image's."""
    palette_size: int
    local_palette: bool
    transparent_index: int | None
    codes: list[int]
    """The first three LZW codes of the image: enough for one pixel."""
    clear: int
    end: int
    rest: bytes
    """What follows the first data block."""


def parse_gif(data: bytes) -> Gif:
    """Read a one-image GIF field by field, as the GIF89a specification lays it out."""
    assert data[:6] == b"GIF89a"
    width, height, flags, _, _ = struct.unpack("<HHBBB", data[6:13])
    palette_size = 2 ** ((flags & 0b111) + 1) if flags & 0x80 else 0
    at = 13 + 3 * palette_size
    extension = data[at : at + 8]
    assert extension[:3] == b"\x21\xf9\x04"  # a graphic control extension, 4 bytes long
    transparent = bool(extension[3] & 1)
    transparent_index = extension[6]
    at += 8
    assert data[at] == 0x2C  # an image descriptor
    _, _, image_width, image_height, image_flags = struct.unpack("<HHHHB", data[at + 1 : at + 10])
    at += 10
    code_size, block_size = data[at], data[at + 1]
    block = data[at + 2 : at + 2 + block_size]
    at += 2 + block_size
    # LZW codes, least significant bit first, code_size + 1 bits each (enough for one pixel).
    bits = int.from_bytes(block, "little")
    width_bits = code_size + 1
    codes = [(bits >> (width_bits * i)) & ((1 << width_bits) - 1) for i in range(3)]
    return Gif(
        size=(width, height, image_width, image_height),
        palette_size=palette_size,
        local_palette=bool(image_flags & 0x80),
        transparent_index=transparent_index if transparent else None,
        codes=codes,
        clear=1 << code_size,
        end=(1 << code_size) + 1,
        rest=data[at:],
    )


def test_the_pixel_counts_a_hit_and_is_a_transparent_gif(client: TestClient) -> None:
    """Each pixel request counts one hit and answers the 43-byte 1 x 1 GIF whose only pixel is
    the transparent colour, never cached."""
    for _ in range(2):
        response = client.get(PIXEL)
        assert response.status_code == 200
    assert client.get("/v1/counters/example.com/home").json()["value"] == 2
    assert response.headers["content-type"] == "image/gif"
    assert NO_CACHE.items() <= dict(response.headers).items()
    assert len(response.content) == 43
    gif = parse_gif(response.content)
    assert gif.size == (1, 1, 1, 1)
    assert (gif.palette_size, gif.local_palette) == (2, False)
    assert gif.transparent_index == 0
    assert gif.codes == [gif.clear, gif.transparent_index, gif.end]
    assert gif.rest == b"\x00\x3b"  # the end of the image data, then the trailer


def test_a_head_of_the_pixel_or_a_counting_badge_counts_nothing(client: TestClient) -> None:
    """HEAD of the pixel and of a badge with `count=true` answer a GET's headers and count no
    hit: a missing counter is not created, an existing one keeps its value (that no body goes
    out is checked on the wire, in test_api)."""
    for _ in range(2):
        pixel = client.head(PIXEL)
        badge = client.head(BADGE, params={"count": "true"})
        assert (pixel.status_code, badge.status_code) == (200, 200)
        assert client.get("/v1/counters/example.com/home").status_code == 404
    client.get(PIXEL)
    for _ in range(2):
        pixel = client.head(PIXEL)
        badge = client.head(BADGE, params={"count": "true"})
    assert client.get("/v1/counters/example.com/home").json()["value"] == 1
    drawn = client.get(BADGE)
    assert pixel.headers["content-type"] == "image/gif"
    assert pixel.headers["content-length"] == "43"
    assert badge.headers["content-type"] == "image/svg+xml"
    assert badge.headers["content-length"] == str(len(drawn.content))
    for head in (pixel, badge):
        assert NO_CACHE.items() <= dict(head.headers).items()


def test_a_pixel_on_a_locked_store_is_a_json_503_that_counts_nothing(tmp_path: Path) -> None:
    """When the store stays locked past the timeout the pixel answers a JSON 503 with
    Retry-After, and the count is unchanged."""
    database = tmp_path / "visits.db"
    with TestClient(create_app(Settings(store=f"sqlite:///{database}", store_timeout=0.2))) as (
        client
    ):
        assert client.get(PIXEL).status_code == 200
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        response = client.get(PIXEL)
        counting_badge = client.get(BADGE, params={"count": "true"})
        blocker.execute("ROLLBACK")
        blocker.close()
        for failed in (response, counting_badge):
            assert failed.status_code == 503
            assert failed.headers["retry-after"] == "1"
            assert "not counted" in failed.json()["detail"]
        assert client.get("/v1/counters/example.com/home").json()["value"] == 1


def test_openapi_documents_the_images(memory_client: TestClient) -> None:
    """The badge and the pixel are documented under "embedding" with their image types."""
    paths = memory_client.get("/openapi.json").json()["paths"]
    for path, media_type in ((BADGE, "image/svg+xml"), (PIXEL, "image/gif")):
        operation = paths[path.replace("example.com/home", "{namespace}/{key}")]["get"]
        assert operation["tags"] == ["embedding"]
        assert list(operation["responses"]["200"]["content"]) == [media_type]
        assert {"422", "503"} <= set(operation["responses"])
