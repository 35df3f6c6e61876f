"""The CountAPI-compatible facade: CountAPI's paths, statuses and bodies on every store, with
changes behind the counter's admin key or the operator token."""

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from visit_tracker.app import create_app
from visit_tracker.settings import Settings
from visit_tracker.stores.base import LARGEST

OPERATOR = "operator-token-0123456789-abcdefghij"


@pytest.fixture
def memory_client() -> Iterator[TestClient]:
    """A client for the app on the memory store, with an operator token: for checks of input
    and documentation, which no store changes."""
    with TestClient(create_app(Settings(store="memory://", admin_token=OPERATOR))) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_hit_and_get_answer_the_value_as_countapi_did(client: TestClient) -> None:
    """`hit` counts and creates, `get` reads, and a missing counter is 404 `{"value": null}`
    with a sentence saying why; every answer is uncacheable."""
    assert client.get("/hit/example.com/home").json() == {"value": 1}
    hit = client.get("/hit/example.com/home")
    assert hit.json() == {"value": 2}
    assert hit.headers["cache-control"] == "no-cache, no-store, must-revalidate, max-age=0"
    assert client.get("/get/example.com/home").json() == {"value": 2}
    missing = client.get("/get/example.com/nothing")
    assert missing.status_code == 404
    assert missing.json() == {
        "value": None,
        "detail": "Counter example.com/nothing does not exist.",
    }
    assert missing.headers["pragma"] == "no-cache"


def test_one_segment_paths_use_the_default_namespace(client: TestClient) -> None:
    """`/hit/{key}` and its kin name a key of the namespace `default`, where `visits` is the
    counter of POST /visit."""
    assert client.get("/hit/visits").json() == {"value": 1}
    assert client.post("/visit").json() == {"visits": 2}
    assert client.get("/get/visits").json() == {"value": 2}
    assert client.get("/get/default/visits").json() == {"value": 2}
    assert client.get("/info/visits").json()["namespace"] == "default"


def test_create_answers_countapis_fields_and_the_admin_key(client: TestClient) -> None:
    """Create starts a counter at `value` (a UUID key in `default` if none is named), answers
    CountAPI's fields and its admin key, and refuses an existing counter with 409."""
    created = client.get("/create", params={"namespace": "example.com", "key": "home", "value": 7})
    assert created.status_code == 200
    body = created.json()
    assert {name: body[name] for name in ("namespace", "key", "value")} == {
        "namespace": "example.com",
        "key": "home",
        "value": 7,
    }
    assert len(body["admin_key"]) >= 43
    assert client.get("/hit/example.com/home").json() == {"value": 8}
    again = client.get("/create", params={"namespace": "example.com", "key": "home"})
    assert again.status_code == 409
    assert "exists" in again.json()["detail"]
    anonymous = client.get("/create", params={"enable_reset": 1, "update_upperbound": 5}).json()
    assert anonymous["namespace"] == "default"
    assert str(uuid.UUID(anonymous["key"])) == anonymous["key"]
    assert anonymous["value"] == 0


def test_create_refuses_the_counter_of_post_visit_with_a_documented_403(
    memory_client: TestClient,
) -> None:
    """Create refuses the counter of POST /visit (default/visits), which only the operator
    claims, with a 403 that the OpenAPI document lists for the route."""
    refused = memory_client.get("/create", params={"namespace": "default", "key": "visits"})
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    paths = memory_client.get("/openapi.json").json()["paths"]
    assert "403" in paths["/create"]["get"]["responses"]


def test_set_takes_the_admin_key_and_answers_old_and_new(client: TestClient) -> None:
    """Set with the admin key answers `{"old_value", "value"}`; without it 401, with another
    key 403 answering the unchanged value; without any, 401 with nulls, the store not asked; a
    missing counter is 404 with nulls."""
    key = client.get("/create", params={"namespace": "site", "key": "home", "value": 5}).json()[
        "admin_key"
    ]
    changed = client.get("/set/site/home", params={"value": 42}, headers=bearer(key))
    assert changed.json() == {"old_value": 5, "value": 42}
    anonymous = client.get("/set/site/home", params={"value": 0})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["old_value"] is anonymous.json()["value"] is None
    wrong = client.get("/set/site/home", params={"value": 0}, headers=bearer("not-the-key"))
    assert wrong.status_code == 403
    assert (wrong.json()["old_value"], wrong.json()["value"]) == (42, 42)
    assert "admin key" in wrong.json()["detail"]
    missing = client.get("/set/site/nothing", params={"value": 1}, headers=bearer(key))
    assert missing.status_code == 404
    assert (missing.json()["old_value"], missing.json()["value"]) == (None, None)
    assert client.get("/get/site/home").json() == {"value": 42}


def test_update_adds_an_amount_for_the_admin_only(client: TestClient) -> None:
    """Update with the admin key adds or subtracts, stopping at 0; without it 401 with a null
    value; a missing counter is 404 `{"value": null}`."""
    key = client.get("/create", params={"namespace": "site", "key": "home", "value": 10}).json()[
        "admin_key"
    ]
    assert client.get("/update/site/home?amount=5", headers=bearer(key)).json() == {"value": 15}
    assert client.get("/update/site/home?amount=-3", headers=bearer(key)).json() == {"value": 12}
    assert client.get("/update/site/home?amount=-100", headers=bearer(key)).json() == {"value": 0}
    refused = client.get("/update/site/home?amount=5")
    assert refused.status_code == 401
    assert refused.json()["value"] is None
    missing = client.get("/update/site/nothing?amount=5", headers=bearer(key))
    assert missing.status_code == 404
    assert missing.json()["value"] is None
    assert client.get("/hit/site/home").json() == {"value": 1}


def test_info_gives_the_fields_that_apply_here(client: TestClient) -> None:
    """Info answers namespace, key, value and creation time in Unix milliseconds; a missing
    counter is 404 `{"value": null}`."""
    client.get("/hit/site/home")
    info = client.get("/info/site/home").json()
    assert {name: info[name] for name in ("namespace", "key", "value")} == {
        "namespace": "site",
        "key": "home",
        "value": 1,
    }
    assert info["created"] > 1_500_000_000_000
    assert set(info) == {"namespace", "key", "value", "created"}
    missing = client.get("/info/site/nothing")
    assert missing.status_code == 404
    assert missing.json()["value"] is None


def test_the_operator_token_sets_and_updates_any_counter(memory_client: TestClient) -> None:
    """The operator token changes a counter that hits made, which has no admin key."""
    memory_client.get("/hit/home")
    assert memory_client.get("/set/home?value=100", headers=bearer(OPERATOR)).json() == {
        "old_value": 1,
        "value": 100,
    }
    assert memory_client.get("/update/home?amount=1", headers=bearer(OPERATOR)).json() == {
        "value": 101
    }


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/hit/site/" + "k" * 65, "key"),
        ("/get/bad name/home", "namespace"),
        ("/set/site/home?value=-1", "value"),
        ("/set/site/home", "value"),
        (f"/update/site/home?amount={LARGEST + 1}", "amount"),
        ("/update/site/home?amount=lots", "amount"),
        ("/create?key=a/b", "key"),
        ("/create?namespace=", "namespace"),
        (f"/create?value={LARGEST + 1}", "value"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    memory_client: TestClient, path: str, field: str
) -> None:
    """A name outside the rule, a missing or out-of-range value or amount is a 422 that names
    the field, and nothing is counted or created."""
    response = memory_client.get(path, headers=bearer(OPERATOR))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field
    assert memory_client.get("/v1/counters/site").json()["counters"] == []
    assert memory_client.get("/v1/counters/default").json()["counters"] == []


def test_openapi_tags_the_facade_countapi(memory_client: TestClient) -> None:
    """Every facade path is documented under the tag "countapi", as a GET, with CountAPI's
    bodies for refusals."""
    paths = memory_client.get("/openapi.json").json()["paths"]
    verbs = ("hit", "get", "set", "update", "info")
    facade = [
        *(f"/{verb}/{{namespace}}/{{key}}" for verb in verbs),
        *(f"/{verb}/{{key}}" for verb in verbs),
        "/create",
    ]
    for path in facade:
        assert list(paths[path]) == ["get"]
        assert paths[path]["get"]["tags"] == ["countapi"]
    for verb, body in (("set", "UnchangedValue"), ("update", "UnchangedCount")):
        refused = paths[f"/{verb}/{{key}}"]["get"]["responses"]["403"]
        assert refused["content"]["application/json"]["schema"]["$ref"].endswith(f"/{body}")
