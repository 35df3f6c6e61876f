"""Unique visitors: ids made of a daily salt, counted through every route that counts, and no
address or User-Agent left behind in the store or the log."""

import asyncio
import signal
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from time_machine import TimeMachineFixture

from tests.server import running_server
from visit_tracker.app import create_app
from visit_tracker.errors import StoreOutcomeUnknown, StoreUnavailable
from visit_tracker.metrics import Metrics
from visit_tracker.service import Tracker
from visit_tracker.settings import Settings
from visit_tracker.stores import CounterId, Hit, Store
from visit_tracker.stores.base import DAY_MS
from visit_tracker.stores.memory import MemoryStore
from visit_tracker.stores.sketch import ID_BITS
from visit_tracker.visitors import Visitor, VisitorIds, visitor_id

COUNTER = "/v1/counters/site/home"
ALICE = Visitor("192.0.2.1", "Mozilla/5.0 Alice")
NOON = datetime(2026, 3, 1, 12, tzinfo=UTC)


def test_an_id_depends_on_namespace_address_user_agent_and_salt() -> None:
    """One visitor has one id per namespace and salt, 63 bits wide; a change of any part of
    it, or of the salt, gives another."""
    salt = b"s" * 16
    alice = visitor_id(ALICE, namespace="site", salt=salt)
    assert alice == visitor_id(
        Visitor("192.0.2.1", "Mozilla/5.0 Alice"), namespace="site", salt=salt
    )
    assert 0 <= alice < 2**ID_BITS
    others = {
        visitor_id(ALICE, namespace="blog", salt=salt),
        visitor_id(Visitor("192.0.2.2", ALICE.user_agent), namespace="site", salt=salt),
        visitor_id(Visitor(ALICE.address, "curl/8.0"), namespace="site", salt=salt),
        visitor_id(ALICE, namespace="site", salt=b"t" * 16),
    }
    assert alice not in others
    assert len(others) == 4


def test_an_id_is_the_same_from_one_release_to_the_next() -> None:
    """A visitor's id is the keyed BLAKE2b it has always been: a release that changed it would
    count each of the day's visitors twice when deployed mid-day."""
    ids = VisitorIds(lambda day: asyncio.sleep(0, bytes(range(16))))
    expected = 6524068138092557972  # BLAKE2b-64 of "site\0" + address + "\0" + User-Agent, >> 1
    assert visitor_id(ALICE, namespace="site", salt=bytes(range(16))) == expected
    assert asyncio.run(ids.id_of(ALICE, namespace="site")) == expected


@pytest.mark.anyio
async def test_ids_take_the_salt_of_the_day_from_the_store_once_a_day(
    time_machine: TimeMachineFixture,
) -> None:
    """The same visitor keeps its id through a day, with one salt asked of the store, and gets
    another the next day, when the new day's salt is asked for."""
    store, asked = MemoryStore(), []

    async def salt_of(day: int) -> bytes:
        asked.append(day)
        return await store.salt(day)

    ids = VisitorIds(salt_of)
    time_machine.move_to(NOON, tick=False)
    morning = await ids.id_of(ALICE, namespace="site")
    time_machine.move_to(NOON + timedelta(hours=11), tick=False)
    assert await ids.id_of(ALICE, namespace="site") == morning
    time_machine.move_to(NOON + timedelta(hours=12), tick=False)
    assert await ids.id_of(ALICE, namespace="site") != morning
    day = int(NOON.replace(hour=0).timestamp() * 1000)
    assert asked == [day, day + DAY_MS]


@pytest.mark.anyio
async def test_the_salt_is_asked_once_by_many_at_a_time_and_again_after_a_failure(
    time_machine: TimeMachineFixture,
) -> None:
    """Requests that need the day's salt together share one store call; a lost answer is
    reported as nothing done (StoreUnavailable, safe to retry), and the next request asks
    again."""
    time_machine.move_to(NOON, tick=False)
    store, asked = MemoryStore(), []
    failures = [StoreOutcomeUnknown("the answer was lost")]

    async def salt_of(day: int) -> bytes:
        asked.append(day)
        await asyncio.sleep(0)
        if failures:
            raise failures.pop()
        return await store.salt(day)

    ids = VisitorIds(salt_of)
    first = await asyncio.gather(
        *(ids.id_of(ALICE, namespace="site") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(error, StoreUnavailable) for error in first)
    again = await asyncio.gather(*(ids.id_of(ALICE, namespace="site") for _ in range(5)))
    assert len(set(again)) == 1
    assert len(asked) == 2


def test_each_counting_route_counts_visitors_by_user_agent(
    time_machine: TimeMachineFixture,
) -> None:
    """Hits, badge views, pixels and CountAPI hits of three browsers, each several times, make
    three visitors of the hour, the day, the week and the month; POST /visit counts its own."""
    time_machine.move_to(NOON, tick=False)
    app = create_app(Settings(store="memory://", rate_limit_hits=0))
    with TestClient(app) as client:
        for agent in ("Firefox", "Chrome", "Safari"):
            headers = {"User-Agent": agent}
            client.post(f"{COUNTER}/hits", headers=headers)
            client.post(f"{COUNTER}/hits", json={"page": "/a"}, headers=headers)
            client.get(f"{COUNTER}/badge.svg", params={"count": "true"}, headers=headers)
            client.get(f"{COUNTER}/pixel.gif", headers=headers)
            client.get("/hit/site/home", headers=headers)
        for agent in ("Firefox", "Firefox", "Chrome"):
            client.post("/visit", headers={"User-Agent": agent})
        counter = client.get(COUNTER).json()
        hours = client.get(f"{COUNTER}/series").json()["buckets"]
        visits = client.get("/v1/counters/default/visits").json()
    assert counter["value"] == 15
    assert counter["visitors"] == {"today": 3, "last_7_days": 3, "last_30_days": 3}
    assert (hours[-1]["hits"], hours[-1]["visitors"]) == (15, 3)
    assert visits["visitors"]["today"] == 2


def test_a_visitor_counts_once_a_day_over_a_week(time_machine: TimeMachineFixture) -> None:
    """One browser seen on three days is one visitor each day, and three over the week: the
    salt changes every day, so the week unites three different ids."""
    app = create_app(Settings(store="memory://", rate_limit_hits=0))
    with TestClient(app) as client:
        for days_ago in (8, 2, 0):
            time_machine.move_to(NOON - timedelta(days=days_ago), tick=False)
            client.post(f"{COUNTER}/hits")
            client.post(f"{COUNTER}/hits")
        visitors = client.get(COUNTER).json()["visitors"]
        days = client.get(f"{COUNTER}/series", params={"interval": "day"}).json()["buckets"]
    assert visitors == {"today": 1, "last_7_days": 2, "last_30_days": 3}
    assert [day["visitors"] for day in days if day["hits"]] == [1, 1, 1]


def test_turned_off_no_visitor_is_counted() -> None:
    """With VISIT_TRACKER_UNIQUE_VISITORS off, hits count as before and no visitor is kept."""
    settings = Settings(store="memory://", unique_visitors=False, rate_limit_hits=0)
    with TestClient(create_app(settings)) as client:
        assert client.post(f"{COUNTER}/hits").json()["value"] == 1
        counter = client.get(COUNTER).json()
    assert counter["visitors"] == {"today": 0, "last_7_days": 0, "last_30_days": 0}


def test_no_address_or_user_agent_reaches_the_store_or_the_log(tmp_path: Path) -> None:
    """Five visitors behind a trusted proxy are counted as five, and neither their addresses
    (as text or as bytes) nor their User-Agents are in the SQLite files or the JSON log."""
    addresses = [f"198.51.100.{n}" for n in range(11, 16)]
    agents = [f"Mozilla/5.0 visitor-marker-{n}" for n in range(5)]
    log = tmp_path / "server.log"
    arguments = ("--store", f"sqlite:///{tmp_path}/visits.db", "--trusted-proxies", "127.0.0.1")
    env = {"VISIT_TRACKER_LOG_LEVEL": "info", "VISIT_TRACKER_RATE_LIMIT_HITS": "0"}
    with (
        log.open("wb") as stderr,
        running_server(
            *arguments, "--access-log", "--log-format", "json", env=env, stderr=stderr
        ) as server,
    ):
        for address, agent in zip(addresses, agents, strict=True):
            headers = {"X-Forwarded-For": address, "User-Agent": agent}
            for _ in range(2):
                hit = httpx2.post(
                    f"{server.url}{COUNTER}/hits", json={"page": "/"}, headers=headers
                )
                assert hit.status_code == 200
            assert httpx2.post(f"{server.url}/visit", headers=headers).status_code == 200
        counter = httpx2.get(f"{server.url}{COUNTER}").json()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    assert counter["value"] == 10
    assert counter["visitors"]["today"] == 5
    written = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert b"/v1/counters/site/home/hits" in written  # the log is in the search
    secrets = [*addresses, *agents, "visitor-marker"]
    for secret in secrets:
        assert secret.encode() not in written
    for address in addresses:
        assert socket.inet_aton(address) not in written


def test_a_visitor_seen_again_in_a_new_hour_counts_in_that_hour(
    time_machine: TimeMachineFixture,
) -> None:
    """A browser seen at 10:59 and again at 11:01 is a visitor of both hours and one of the
    day, though the process skips recording it again within an hour."""
    app = create_app(Settings(store="memory://", rate_limit_hits=0))
    with TestClient(app) as client:
        for moment in (NOON.replace(hour=10, minute=59), NOON.replace(hour=11, minute=1)):
            time_machine.move_to(moment, tick=False)
            client.post(f"{COUNTER}/hits")
            client.post(f"{COUNTER}/hits")
        hours = client.get(f"{COUNTER}/series").json()["buckets"]
        counter = client.get(COUNTER).json()
    assert [(hour["hits"], hour["visitors"]) for hour in hours[-2:]] == [(2, 1), (2, 1)]
    assert counter["visitors"]["today"] == 1


def test_a_deleted_counter_counts_its_visitors_again(time_machine: TimeMachineFixture) -> None:
    """After a counter is deleted, a visitor it had in this hour counts in its new life."""
    time_machine.move_to(NOON, tick=False)
    token = "operator-token-for-the-visitor-test-0123456789"
    app = create_app(Settings(store="memory://", rate_limit_hits=0, admin_token=token))
    with TestClient(app) as client:
        client.post(f"{COUNTER}/hits")
        deleted = client.delete(COUNTER, headers={"Authorization": f"Bearer {token}"})
        assert deleted.status_code == 204
        client.post(f"{COUNTER}/hits")
        counter = client.get(COUNTER).json()
    assert (counter["value"], counter["visitors"]["today"]) == (1, 1)


@pytest.mark.anyio
@pytest.mark.parametrize("unique_visitors", [True, False])
async def test_the_hourly_purge_deletes_old_salts_without_any_visitor(
    time_machine: TimeMachineFixture, unique_visitors: bool
) -> None:
    """Two days on, the hourly purge deletes a day's salt though no visitor came since, so its
    ids can no longer be recomputed — also once unique visitors have been turned off."""
    store = MemoryStore()
    tracker = Tracker(store, metrics=Metrics(), unique_visitors=unique_visitors)
    time_machine.move_to(NOON, tick=False)
    day = int(NOON.replace(hour=0).timestamp() * 1000)
    first = await store.salt(day)
    time_machine.move_to(NOON + timedelta(days=2), tick=False)
    await tracker.purge_history()
    assert await store.salt(day) != first


@pytest.mark.anyio
async def test_a_hit_stored_after_midnight_counts_its_visitor_in_the_new_hour_and_day(
    store: Store, time_machine: TimeMachineFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A visitor recorded at 23:30 whose next hit is made just before midnight and stored just
    after is one of the new hour's and the new day's visitors, as it is one of their hits."""
    counter = CounterId("site", "home")
    tracker = Tracker(store, metrics=Metrics())
    midnight = NOON.replace(hour=0) + timedelta(days=1)
    time_machine.move_to(midnight - timedelta(minutes=30), tick=False)
    await tracker.visit(counter, visitor=ALICE)
    apply = store.apply

    async def apply_after_midnight(hits: Sequence[Hit]) -> list[int]:
        time_machine.move_to(midnight, tick=False)
        return await apply(hits)

    monkeypatch.setattr(store, "apply", apply_after_midnight)
    time_machine.move_to(midnight - timedelta(milliseconds=1), tick=False)
    await tracker.visit(counter, visitor=ALICE)
    start = int(midnight.timestamp() * 1000)
    hour = await tracker.series(counter, interval="hour", start_ms=start, end_ms=start + 1)
    assert hour == [(start, 1, 1)]
    assert (await tracker.unique_visitors(counter))[0] == 1
