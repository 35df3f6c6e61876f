"""The direct path for the hottest routes fails the way every other route does."""

import json

import pytest
from pydantic import BaseModel
from starlette.types import Message, Scope

from visit_tracker.api.fast_path import answer_directly
from visit_tracker.service import Tracker

pytestmark = pytest.mark.anyio


async def broken_endpoint(_: Tracker, __: Scope) -> BaseModel:
    raise RuntimeError("a bug, not a store failure")


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
