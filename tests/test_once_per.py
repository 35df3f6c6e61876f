"""A counter that counts each visitor once per window of minutes, set at creation and changed
by its admin, through the HTTP routes."""

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from time_machine import TimeMachineFixture

from visit_tracker.app import create_app
from visit_tracker.settings import Settings

COUNTER = "/v1/counters/site/home"
OPERATOR = "operator-token-0123456789-abcdefghij"
NOON = datetime(2026, 3, 1, 12, tzinfo=UTC)
ALICE = {"User-Agent": "Mozilla/5.0 Alice"}
BOB = {"User-Agent": "Mozilla/5.0 Bob"}


def test_a_refresh_within_the_window_is_not_counted(time_machine: TimeMachineFixture) -> None:
    """A counter created with a 30-minute window counts a visitor's reloads once, answering
    the value as it stands, and counts them again once the window has ended."""
    time_machine.move_to(NOON, tick=False)
    with TestClient(create_app(Settings(store="memory://", rate_limit_hits=0))) as client:
        created = client.post(COUNTER, json={"value": 5, "count_once_per": 30})
        assert created.json()["count_once_per"] == 30
        values = [
            client.post(f"{COUNTER}/hits", headers=headers).json()["value"]
            for headers in (ALICE, ALICE, BOB, ALICE)
        ]
        assert values == [6, 6, 7, 7]
        assert client.get(f"{COUNTER}/pixel.gif", headers=BOB).status_code == 200
        time_machine.move_to(NOON + timedelta(minutes=30), tick=False)
        assert client.post(f"{COUNTER}/hits", headers=ALICE).json()["value"] == 8
        counter = client.get(COUNTER).json()
        assert (counter["value"], counter["count_once_per"]) == (8, 30)


def test_the_admin_sets_the_window_and_post_visit_has_none_until_then() -> None:
    """PUT sets the window alone, leaving the value; POST /visit counts every visit until the
    operator gives its counter a window; a window past a day is a 422 naming the field."""
    settings = Settings(store="memory://", admin_token=OPERATOR, rate_limit_admin=0)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    with TestClient(create_app(settings)) as client:
        assert [client.post("/visit", headers=ALICE).json()["visits"] for _ in range(2)] == [1, 2]
        changed = client.put(
            "/v1/counters/default/visits", json={"count_once_per": 10}, headers=operator
        )
        assert changed.json() == {"old_value": 2, "value": 2}
        assert [client.post("/visit", headers=ALICE).json()["visits"] for _ in range(2)] == [3, 3]
        refused = client.put(
            "/v1/counters/default/visits", json={"count_once_per": 1441}, headers=operator
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"][-1] == "count_once_per"
        assert client.get("/v1/counters/default/visits").json()["count_once_per"] == 10
