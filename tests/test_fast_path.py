"""The direct path for the hottest routes answers, and fails, the way the framework does."""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.types import Message, Scope

from tests.server import AS_BROWSER, running_server
from visit_tracker.api.fast_path import LARGEST_DIRECT_BODY, answer_directly
from visit_tracker.app import create_app
from visit_tracker.service import Tracker
from visit_tracker.settings import Settings

HITS = "/v1/counters/site/home/hits"


async def broken_endpoint(_: Tracker, __: Scope) -> BaseModel:
    raise RuntimeError("a bug, not a store failure")


@pytest.mark.anyio
async def test_an_unexpected_failure_is_a_json_500_with_the_request_id() -> None:
    """A bug behind a direct route answers 500 with a JSON body and the request id, no trace."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/visit",
        "headers": [],
        "query_string": b"",
        "state": {"tracker": None},
    }
    status = await answer_directly(
        broken_endpoint, scope, receive, send, [(b"x-request-id", b"abc")]
    )
    assert status == 500
    assert sent[0]["status"] == 500
    assert (b"x-request-id", b"abc") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"detail": "Internal server error."}


@pytest.fixture
def hits_client() -> Iterator[TestClient]:
    settings = Settings(store="memory://", rate_limit_hits=0, max_body_size=8192)
    with TestClient(create_app(settings)) as client:
        yield client


def value(client: TestClient) -> int:
    answer: int = client.get("/v1/counters/site/home").json()["value"]
    return answer


LONG_PAGE = "/" + "p" * 500


@pytest.mark.parametrize(
    ("request_args", "status", "counted"),
    [
        ({}, 200, True),
        ({"json": {}}, 200, True),
        ({"json": {"page": "/a?x=1", "referrer": "https://example.org/r"}}, 200, True),
        ({"content": b"null", "headers": {"Content-Type": "application/json"}}, 200, True),
        ({"content": b'{"page": "/t"}', "headers": {"Content-Type": "text/plain"}}, 200, True),
        ({"json": {"page": LONG_PAGE, "referrer": "https://e.org/" + "r" * 490}}, 200, True),
        ({"json": {"page": "/a", "colour": "red"}}, 422, False),
        ({"json": {"page": "no-slash"}}, 422, False),
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, False),
        ({"content": b"page=/a", "headers": {"Content-Type": "text/html"}}, 422, False),
        ({"content": (part for part in [b'{"page":', b' "/chunked"}'])}, 422, False),
        ({"params": {"page": "/q?x=1", "referrer": "https://example.org/r"}}, 200, True),
        ({"params": {"page": "/q", "utm_source": "x"}, "json": {}}, 200, True),
        ({"params": {"page": "/q"}, "json": {"page": "/b"}}, 422, False),
        ({"params": {"referrer": "https://e.org/"}, "json": {"page": "/b"}}, 422, False),
        ({"params": {"page": "no-slash"}}, 422, False),
        ({"params": {"page": ""}}, 422, False),
        ({"params": {"referrer": "ftp://example.org/"}}, 422, False),
        (
            {"params": {"page": "/q"}, "content": b"x", "headers": {"Content-Type": "text/html"}},
            422,
            False,
        ),
    ],
)
def test_the_hits_route_answers_as_documented_however_it_is_sent(
    hits_client: TestClient, request_args: dict[str, Any], status: int, counted: bool
) -> None:
    """Plain and detailed hits count; every body or query string the framework refuses is
    refused with its own 422, whether the direct path or the framework reads it, and counts
    nothing."""
    hits_client.post(HITS)
    answer = hits_client.post(HITS, **request_args)
    assert answer.status_code == status
    assert value(hits_client) == (2 if counted else 1)
    if status == 422:
        assert isinstance(answer.json()["detail"], list)
    else:
        assert answer.json() == {"namespace": "site", "key": "home", "value": 2}


def test_a_hit_with_two_media_types_is_read_by_the_first_as_by_the_framework(
    hits_client: TestClient,
) -> None:
    """A hit that declares two media types is read by the first, as the framework reads it: a
    JSON body declared as text/html and then as JSON is refused, and counts nothing."""
    body = b'{"page": "/a"}'
    for first, second, status in [
        ("text/html", "application/json", 422),
        ("application/json", "text/html", 200),
    ]:
        headers = [("Content-Type", first), ("Content-Type", second)]
        assert hits_client.post(HITS, content=body, headers=headers).status_code == status
    assert value(hits_client) == 1


def test_details_sent_again_are_answered_as_the_first_time(hits_client: TestClient) -> None:
    """A query string or body seen before (whose details a worker remembers) counts, or is
    refused, exactly as it was the first time."""
    good = {"page": "/again", "referrer": "https://example.org/"}
    for _ in range(2):
        assert hits_client.post(HITS, params=good).status_code == 200
        assert hits_client.post(HITS, json={"page": "/again"}).status_code == 200
        assert hits_client.post(HITS, params={"page": "again"}).status_code == 422
        assert hits_client.post(HITS, json={"page": "again"}).status_code == 422
        refused = hits_client.post(HITS, params={"page": "/again"}, json={"page": "/again"})
        assert refused.status_code == 422
    assert value(hits_client) == 4
    pages = hits_client.get("/v1/counters/site/home/pages").json()
    assert pages["pages"] == [{"page": "/again", "hits": 4}]
    assert pages["referrers"] == [{"referrer": "https://example.org/", "hits": 2}]


def test_a_query_string_past_the_direct_paths_size_is_the_frameworks(
    hits_client: TestClient,
) -> None:
    """A query string longer than the direct path reads (the framework reads it instead) still
    counts its page."""
    query = {"page": "/long", "campaign": "c" * LARGEST_DIRECT_BODY}
    assert hits_client.post(HITS, params=query).status_code == 200
    pages = hits_client.get("/v1/counters/site/home/pages").json()
    assert pages["pages"] == [{"page": "/long", "hits": 1}]


def test_a_hit_body_past_the_direct_paths_size_is_the_frameworks(hits_client: TestClient) -> None:
    """A valid body larger than the direct path takes (spaces make it so) still counts, with
    its page; one larger than the server's limit is a 413 and counts nothing."""
    padding = " " * LARGEST_DIRECT_BODY
    body = f'{{"page": "/padded"{padding}}}'.encode()
    answer = hits_client.post(HITS, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    pages = hits_client.get("/v1/counters/site/home/pages").json()["pages"]
    assert pages == [{"page": "/padded", "hits": 1}]
    huge = f'{{"page": "/huge"{padding * 2}}}'.encode()
    refused = hits_client.post(HITS, content=huge, headers={"Content-Type": "application/json"})
    assert refused.status_code == 413
    assert value(hits_client) == 1


def test_a_small_body_limit_holds_on_the_direct_path_too() -> None:
    """With a body limit smaller than the direct path's own, a body past it is still a 413."""
    settings = Settings(store="memory://", rate_limit_hits=0, max_body_size=64)
    with TestClient(create_app(settings)) as client:
        body = {"page": "/" + "a" * 100}
        assert client.post(HITS, json=body).status_code == 413
        assert client.post(HITS, json={"page": "/a"}).status_code == 200


def test_bad_names_on_the_hits_route_are_the_frameworks_422(hits_client: TestClient) -> None:
    """A name outside the rule, too long or with a bad character, is a 422 that quotes it."""
    for path in ("/v1/counters/site/" + "k" * 65 + "/hits", "/v1/counters/si%20te/home/hits"):
        answer = hits_client.post(path)
        assert answer.status_code == 422
        assert "1 to 64 characters" in json.dumps(answer.json())


def test_a_hit_whose_client_leaves_before_its_body_ends_counts_nothing(tmp_path: Path) -> None:
    """A client that declares a body, sends none of it and hangs up has not sent a hit: the
    counter is not created; a complete hit sent after it counts 1."""
    store = f"sqlite:///{tmp_path}/visits.db"
    with running_server("--store", store, env={"VISIT_TRACKER_RATE_LIMIT_HITS": "0"}) as server:
        host, port = server.url.removeprefix("http://").split(":")
        head = (
            f"POST {HITS} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "User-Agent: Mozilla/5.0\r\nContent-Length: 200\r\n\r\n"
        )
        with socket.create_connection((host, int(port))) as client:
            client.sendall(head.encode())  # and none of the body
        time.sleep(0.5)  # the server notices the hang-up; nothing to wait on from this side
        assert httpx2.get(f"{server.url}/v1/counters/site/home").status_code == 404
        hit = httpx2.post(f"{server.url}{HITS}", json={"page": "/a"}, headers=AS_BROWSER)
        assert hit.json()["value"] == 1
