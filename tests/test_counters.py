"""The named-counter API: create, read, set, delete, list, and who may change a counter."""

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from tests.server import running_server
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

OPERATOR = "operator-token-0123456789-abcdefghij"
"""A token strong enough for the settings to accept."""


@pytest.fixture
def operated(store_url: str) -> Iterator[TestClient]:
    """A client for the app on each kind of store, with an operator token set."""
    app = create_app(Settings(store=store_url, admin_token=OPERATOR))
    with TestClient(app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_created_counter_starts_at_its_value_and_shows_its_key_once(client: TestClient) -> None:
    """Create answers 201 with the value and an admin key; reads never show the key again."""
    created = client.post("/v1/counters/site/home", json={"value": 1234})
    assert created.status_code == 201
    body = created.json()
    assert (body["namespace"], body["key"], body["value"], body["owned"]) == (
        "site",
        "home",
        1234,
        True,
    )
    assert len(body["admin_key"]) >= 43
    assert client.post("/v1/counters/site/home/hits").json()["value"] == 1235
    read = client.get("/v1/counters/site/home").json()
    assert read["value"] == 1235
    assert "admin_key" not in read
    assert read["created_at"] <= read["updated_at"]
    assert read["created_at"].endswith("Z")


def test_creating_an_existing_counter_is_a_409_that_changes_nothing(client: TestClient) -> None:
    """A counter that exists, created or hit, cannot be created again."""
    client.post("/v1/counters/site/home/hits")
    response = client.post("/v1/counters/site/home", json={"value": 99})
    assert response.status_code == 409
    assert response.json() == {"detail": "Counter site/home exists already."}
    assert client.get("/v1/counters/site/home").json()["value"] == 1


def test_a_counter_created_without_a_body_starts_at_zero(client: TestClient) -> None:
    """Create with no body makes a counter at 0."""
    assert client.post("/v1/counters/site/new").json()["value"] == 0


def test_a_missing_counter_reads_as_a_json_404(client: TestClient) -> None:
    """Reading a counter that does not exist answers 404 with a JSON body."""
    response = client.get("/v1/counters/site/missing")
    assert response.status_code == 404
    assert response.json() == {"detail": "Counter site/missing does not exist."}


def test_its_admin_key_sets_and_deletes_a_counter(client: TestClient) -> None:
    """The admin key from create sets the value (answering old and new) and deletes it."""
    key = client.post("/v1/counters/site/home", json={"value": 5}).json()["admin_key"]
    changed = client.put("/v1/counters/site/home", json={"value": 100}, headers=bearer(key))
    assert changed.status_code == 200
    assert changed.json() == {"old_value": 5, "value": 100}
    assert client.post("/v1/counters/site/home/hits").json()["value"] == 101
    deleted = client.delete("/v1/counters/site/home", headers=bearer(key))
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get("/v1/counters/site/home").status_code == 404
    assert client.post("/v1/counters/site/home/hits").json()["value"] == 1


def test_a_change_without_credential_is_a_401_asking_for_a_bearer(client: TestClient) -> None:
    """Set and delete without Authorization answer 401 with WWW-Authenticate: Bearer."""
    client.post("/v1/counters/site/home", json={"value": 5})
    for response in (
        client.put("/v1/counters/site/home", json={"value": 0}),
        client.delete("/v1/counters/site/home"),
        client.post("/v1/counters/site/home/admin-key"),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "admin key" in response.json()["detail"]
    assert client.get("/v1/counters/site/home").json()["value"] == 5


def test_another_counters_key_is_a_403_that_changes_nothing(client: TestClient) -> None:
    """One counter's admin key, or any other token, cannot change another counter."""
    client.post("/v1/counters/site/home", json={"value": 5})
    other = client.post("/v1/counters/site/about").json()["admin_key"]
    for token in (other, "not-a-key", OPERATOR):  # no operator token is set here
        response = client.put("/v1/counters/site/home", json={"value": 0}, headers=bearer(token))
        assert response.status_code == 403
        assert client.delete("/v1/counters/site/home", headers=bearer(token)).status_code == 403
    assert client.get("/v1/counters/site/home").json()["value"] == 5


def test_a_counter_made_by_hits_is_unowned_until_the_operator_claims_it(
    operated: TestClient,
) -> None:
    """Hits make an unowned counter; the operator token issues its admin key, which then works."""
    operated.post("/v1/counters/site/home/hits")
    assert operated.get("/v1/counters/site/home").json()["owned"] is False
    assert (
        operated.put(
            "/v1/counters/site/home", json={"value": 7}, headers=bearer("guess")
        ).status_code
        == 403
    )
    claimed = operated.post("/v1/counters/site/home/admin-key", headers=bearer(OPERATOR))
    assert claimed.status_code == 200
    key = claimed.json()["admin_key"]
    assert operated.get("/v1/counters/site/home").json()["owned"] is True
    changed = operated.put("/v1/counters/site/home", json={"value": 7}, headers=bearer(key))
    assert changed.json() == {"old_value": 1, "value": 7}


def test_a_new_admin_key_replaces_the_old_one(client: TestClient) -> None:
    """An owner who asks for a new admin key gets one; the old key stops working."""
    old = client.post("/v1/counters/site/home").json()["admin_key"]
    new = client.post("/v1/counters/site/home/admin-key", headers=bearer(old)).json()["admin_key"]
    assert new != old
    assert client.delete("/v1/counters/site/home", headers=bearer(old)).status_code == 403
    assert client.delete("/v1/counters/site/home", headers=bearer(new)).status_code == 204


def test_the_operator_token_sets_and_deletes_any_counter(operated: TestClient) -> None:
    """The operator token changes counters it did not create, and a missing one is a 404."""
    operated.post("/v1/counters/site/home", json={"value": 3})
    changed = operated.put("/v1/counters/site/home", json={"value": 0}, headers=bearer(OPERATOR))
    assert changed.json() == {"old_value": 3, "value": 0}
    assert operated.delete("/v1/counters/site/home", headers=bearer(OPERATOR)).status_code == 204
    missing = operated.delete("/v1/counters/site/home", headers=bearer(OPERATOR))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": -1}, "value"),
        ({"value": 2**53}, "value"),
        ({"value": "many"}, "value"),
        ({"value": 1, "extra": True}, "extra"),
        ({}, "body"),
    ],
)
def test_a_bad_value_is_a_422_naming_the_field(
    operated: TestClient, body: dict[str, object], field: str
) -> None:
    """A value that is negative, too large, not a number, missing or beside an unknown field is a
    422 that names the field, and nothing changes."""
    operated.post("/v1/counters/site/home", json={"value": 3})
    response = operated.put("/v1/counters/site/home", json=body, headers=bearer(OPERATOR))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field
    assert operated.get("/v1/counters/site/home").json()["value"] == 3


@pytest.mark.parametrize("number", ["true", '"5"', "5.0", "1e3"])
@pytest.mark.parametrize("field", ["value", "count_once_per"])
def test_a_count_that_is_not_a_json_integer_is_a_422(number: str, field: str) -> None:
    """A boolean, a string or a float, even a whole one, is no count: creating or setting a
    counter with one is a 422 that says so, and nothing changes."""
    with TestClient(create_app(Settings(store="memory://", admin_token=OPERATOR))) as client:
        client.post("/v1/counters/site/home", json={"value": 3})
        body = f'{{"{field}": {number}}}'
        headers = {"Content-Type": "application/json", **bearer(OPERATOR)}
        created = client.post("/v1/counters/site/new", content=body, headers=headers)
        changed = client.put("/v1/counters/site/home", content=body, headers=headers)
        for response in (created, changed):
            assert response.status_code == 422
            (problem,) = response.json()["detail"]
            assert problem["loc"] == ["body", field]
            assert problem["msg"] == "Input should be a valid integer"
        assert client.get("/v1/counters/site/new").status_code == 404
        home = client.get("/v1/counters/site/home").json()
        assert (home["value"], home["count_once_per"]) == (3, 0)


def test_a_namespace_lists_its_counters_a_page_at_a_time(client: TestClient) -> None:
    """Listing pages through one namespace's counters in key order, ending with next_after null."""
    keys = [f"page-{number:02}" for number in range(7)]
    for key in reversed(keys):
        client.post(f"/v1/counters/site/{key}/hits")
    client.post("/v1/counters/other/page-00/hits")
    seen: list[str] = []
    after = ""
    while True:
        page = client.get("/v1/counters/site", params={"after": after, "limit": 3}).json()
        seen.extend(counter["key"] for counter in page["counters"])
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == keys
    assert client.get("/v1/counters/nobody").json() == {"counters": [], "next_after": None}
    assert client.get("/v1/counters/site", params={"limit": 0}).status_code == 422


def test_every_worker_of_a_real_server_knows_the_operator_token(tmp_path: Path) -> None:
    """A server of two workers, given the token in its environment, honours it on each worker."""
    env = {"VISIT_TRACKER_ADMIN_TOKEN": OPERATOR, "VISIT_TRACKER_RATE_LIMIT_ADMIN": "0"}
    store = f"sqlite:///{tmp_path}/visits.db"
    with running_server("--workers", "2", "--store", store, env=env) as server:
        httpx2.post(f"{server.url}/v1/counters/site/home/hits")
        with httpx2.Client(base_url=server.url, headers=bearer(OPERATOR)) as http:
            # New connections, so both workers are likely to answer some of them.
            statuses = [
                http.put(
                    "/v1/counters/site/home", json={"value": n}, headers={"Connection": "close"}
                )
                for n in range(20)
            ]
    assert [response.status_code for response in statuses] == [200] * 20
    assert [response.json()["old_value"] for response in statuses[1:]] == list(range(19))


def test_a_wrong_method_on_a_counter_lists_every_method_it_serves(client: TestClient) -> None:
    """A 405 on a counter's path names in Allow all the methods of that path, not just one."""
    response = client.patch("/v1/counters/site/home")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET, HEAD, POST, PUT"
    assert response.json() == {"detail": "Method Not Allowed"}


def test_a_body_that_is_not_json_text_is_a_json_400(operated: TestClient) -> None:
    """Bytes that are not UTF-8 in place of a JSON body answer 400 in JSON; nothing changes."""
    operated.post("/v1/counters/site/home", json={"value": 3})
    response = operated.put(
        "/v1/counters/site/home",
        content=b"\x80 not UTF-8",
        headers={"Content-Type": "application/json", **bearer(OPERATOR)},
    )
    assert response.status_code == 400
    assert "detail" in response.json()
    assert operated.get("/v1/counters/site/home").json()["value"] == 3


def test_nobody_but_the_operator_owns_the_counter_of_post_visit(operated: TestClient) -> None:
    """The counter behind POST /visit cannot be created to take its admin key; the operator
    claims it."""
    refused = operated.post("/v1/counters/default/visits", json={"value": 0})
    assert refused.status_code == 403
    assert "operator" in refused.json()["detail"]
    operated.post("/visit")
    claimed = operated.post("/v1/counters/default/visits/admin-key", headers=bearer(OPERATOR))
    assert claimed.status_code == 200
