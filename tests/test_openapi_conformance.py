"""Every route of the real server, fuzzed from its own OpenAPI document with schemathesis.

The cases come from the document `create_app` publishes, so a new route is tested as soon as it
exists. They go to a real `visit-tracker serve` (granian, the direct routes in front of the
framework, the body limit): with a healthy store, with a store that is down, with one that has
fallen silent, and with bodies over the size limit. Every answer must be one the document
describes for that route — status code, content type, headers and body — and none may be a 5xx
other than the documented answers of an outage.
"""

from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.redis_servers import RedisServer, redis_server
from tests.server import Server, running_server
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

Case = schemathesis.Case[APIOperation[Any, Any, Any, Any]]

MAX_BODY_SIZE = 1024
OUTAGE_STORE_TIMEOUT = 0.2
"""Seconds the outage servers wait on their store: short, so that a silent store costs little."""
OUTAGE_ANSWERS = {503, 504}
"""What a route may answer when its store is down or silent: the visit was not counted (503), or
may have been (504). Any other 5xx is a defect."""


def published_document() -> dict[str, Any]:
    """The OpenAPI document of the application, as `GET /openapi.json` serves it."""
    client = TestClient(create_app(Settings(store="memory://")))  # no lifespan: no store needed
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


# Read at import: schemathesis makes one test per route while collecting, before any fixture
# could start a server (its fixture-based loader fails on this pytest). The first test below
# checks that the running server publishes this very document.
DOCUMENT = published_document()


def fuzzer(
    *, max_examples: int, modes: list[GenerationMode] | None = None, phases: list[str] | None = None
) -> schemathesis.BaseSchema:
    """Cases from DOCUMENT: at most `max_examples` random ones per route in the fuzzing phase.

    Derandomized and without an example database, so that every run sends the same cases and
    a failure reproduces, whatever earlier runs found.
    """
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.config.generation.update(
        max_examples=max_examples, modes=modes, deterministic=True, database="none"
    )
    if phases is not None:
        schema.config.phases.update(phases=phases)
    # Invalid input may be larger than the server's body limit (a 512-character page is 2 KiB
    # of 4-byte characters): refused unread with the 413 every route documents, it is refused.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    # An event stream never ends: its first event, checked against the document, is enough.
    schema.config.max_stream_events = 1
    return schema


valid_and_invalid = fuzzer(max_examples=30)
"""The examples in the document, the boundaries of every constraint (the coverage phase), then
random valid and invalid input; wrong methods included."""
UNLIMITED = ("--rate-limit-hits", "0", "--rate-limit-reads", "0", "--rate-limit-admin", "0")
"""One fuzzing client would soon spend its rate limits, and then every answer is a 429 (which
`test_rate_limits` proves): limits off, the routes answer what the fuzzer sends them."""

few_valid_and_invalid = fuzzer(max_examples=3)
"""Enough to reach every route's store-facing answer: one store failure is like the next."""
one_valid_each = fuzzer(max_examples=1, modes=[GenerationMode.POSITIVE], phases=["fuzzing"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server, two workers on a SQLite file of its own."""
    store = tmp_path_factory.mktemp("conformance") / "visits.db"
    with running_server(
        "--workers", "2", "--max-body-size", str(MAX_BODY_SIZE), "--store", f"sqlite:///{store}",
        *UNLIMITED,
    ) as served:  # fmt: skip
        yield served


@pytest.fixture(scope="module")
def redis_for_outages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("conformance-redis")) as redis:
        yield redis


@pytest.fixture(scope="module")
def server_on_a_dead_store(redis_for_outages: RedisServer) -> Iterator[Server]:
    """The real server on a Redis that has been killed after the server started."""
    with running_server(
        "--store", redis_for_outages.url, "--store-timeout", str(OUTAGE_STORE_TIMEOUT), *UNLIMITED
    ) as served:
        redis_for_outages.kill()
        yield served


@pytest.fixture(scope="module")
def server_on_a_silent_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server on a Redis that keeps its connections but answers nothing (SIGSTOP)."""
    with (
        redis_server(tmp_path_factory.mktemp("conformance-silent-redis")) as redis,
        running_server(
            "--store", redis.url, "--store-timeout", str(OUTAGE_STORE_TIMEOUT), *UNLIMITED
        ) as served,
    ):
        redis.stall()
        yield served  # the redis_server context resumes and kills it


def test_the_server_publishes_the_document_under_test(server: Server) -> None:
    """The running server's /openapi.json is the document the cases below are generated from."""
    assert httpx2.get(f"{server.url}/openapi.json").json() == DOCUMENT


RANGE = (["query", "start"], ["query", "end"])
UNSTATED_CONSTRAINTS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "/v1/counters/{namespace}/{key}/series": lambda problem: problem["loc"] in RANGE,
    "/v1/counters/{namespace}/{key}/pages": lambda problem: problem["loc"] in RANGE,
    "/v1/counters/{namespace}/{key}/hits": lambda problem: "not in both" in problem["msg"],
    "/v1/counters/{namespace}/{key}": lambda problem: (
        problem["loc"][0] == "body" and problem["type"] == "int_type"
    ),
}
"""Routes with a constraint which a schema cannot state, and the problems it raises: `start`
and `end` must make a range the route can answer (not empty, not too long, from 1970 on); a
hit's page and referrer come in its query string or its body, not both; a count in a body is a
JSON integer, which JSON Schema's `integer` does not tell from a whole float (5.0, 1e3)."""


@valid_and_invalid.parametrize()
def test_every_route_answers_as_documented(case: Case, server: Server) -> None:
    """Valid and invalid input on every route gets no 5xx and an answer its document describes."""
    constraint = UNSTATED_CONSTRAINTS.get(case.path)
    if constraint is None:
        case.call_and_validate(base_url=server.url)
        return
    response = case.call(base_url=server.url)
    # Valid input may be refused for that constraint, with the documented 422 naming it; any
    # other answer is held to every check.
    refused_for_it = response.status_code == 422 and all(
        constraint(problem) for problem in response.json()["detail"]
    )
    case.validate_response(
        response, excluded_checks=[positive_data_acceptance] if refused_for_it else []
    )


def assert_a_documented_outage_answer(case: Case, server: Server) -> None:
    response = case.call(base_url=server.url)
    # The two checks left out fail any 503 by design: a server error, and valid input refused.
    # Refusing valid input with a 503 or 504 is exactly what an outage must do; the assertion
    # below admits those two and no other 5xx, and the remaining checks hold them to the
    # document: the status listed for that route, a JSON body of the documented schema.
    case.validate_response(response, excluded_checks=[not_a_server_error, positive_data_acceptance])
    assert response.status_code < 500 or response.status_code in OUTAGE_ANSWERS, response.text


@few_valid_and_invalid.parametrize()
def test_every_route_answers_as_documented_while_the_store_is_down(
    case: Case, server_on_a_dead_store: Server
) -> None:
    """With the store down, every route gets a documented answer, a 503 where it needs the store."""
    assert_a_documented_outage_answer(case, server_on_a_dead_store)


@few_valid_and_invalid.parametrize()
def test_every_route_answers_as_documented_while_the_store_is_silent(
    case: Case, server_on_a_silent_store: Server
) -> None:
    """With the store silent, every route gets a documented answer: 503, or 504 for a write
    whose outcome is unknown, where it needs the store."""
    assert_a_documented_outage_answer(case, server_on_a_silent_store)


@one_valid_each.parametrize()
def test_an_oversize_body_gets_a_documented_answer_on_every_route(
    case: Case, server: Server
) -> None:
    """A body over the size limit, sent to any route, gets an answer its document describes."""
    response = case.call(base_url=server.url, data=b"x" * (MAX_BODY_SIZE + 1))
    # Left out: the input is valid but for its body, whose refusal is the point.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])


def test_a_stream_of_a_counter_that_exists_answers_as_documented(server: Server) -> None:
    """The events of a counter that exists, which the fuzzer may never reach, have the shape
    the document gives them: `event: value`, and in `data` the counter's value as JSON."""
    httpx2.post(f"{server.url}/v1/counters/streamed/home/hits").raise_for_status()
    operation = valid_and_invalid["/v1/counters/{namespace}/{key}/events"]["GET"]
    case = operation.Case(path_parameters={"namespace": "streamed", "key": "home"})
    response = case.call(base_url=server.url)
    assert response.status_code == 200
    assert b"event: value" in response.content
    case.validate_response(response)
