"""/metrics: Prometheus text, exact across worker processes, and the dashboard that reads it."""

import asyncio
import json
import re
import signal
import sqlite3
import time
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.server import running_server
from tests.test_server import send_visits
from visit_tracker.app import create_app
from visit_tracker.settings import Settings

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana-dashboard.json"
VISITS = 600
SCRAPES = 12

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def metrics_directory(pid: int) -> Path:
    """The metrics directory of a server: where its processes map their metrics files."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    mapped = {
        Path(line.split()[-1]).parent
        for process in [pid, *map(int, children)]
        for line in Path(f"/proc/{process}/maps").read_text().splitlines()
        if "/visit-tracker-metrics-" in line
    }
    (directory,) = mapped
    return directory


@pytest.mark.parametrize("workers", [1, 2])
def test_every_scrape_counts_every_visit_of_every_worker(tmp_path: Path, workers: int) -> None:
    """After 600 concurrent visits, every scrape of /metrics, whichever worker answers, reports
    exactly 600 visits, 600 answered POST /visit and 600 timings, in batches summing to 600."""
    with running_server("--workers", str(workers), "--store", f"sqlite:///{tmp_path}/v.db") as (
        server
    ):
        asyncio.run(send_visits(server.url, VISITS))
        # A request is noted once its answer is sent, so the last ones may trail by a moment.
        deadline = time.monotonic() + 5
        route = {"route": "/visit", "method": "POST", "status": "200"}
        while True:
            found = samples(httpx2.get(f"{server.url}/metrics").text)
            if value(found, "visit_tracker_http_requests_total", **route) == VISITS:
                break
            assert time.monotonic() < deadline, "requests never all counted"
            time.sleep(0.05)
        for _ in range(SCRAPES):
            answer = httpx2.get(f"{server.url}/metrics")  # a new connection: any worker
            assert answer.headers["content-type"].startswith("text/plain")
            found = samples(answer.text)
            assert value(found, "visit_tracker_visits_total") == VISITS
            assert value(found, "visit_tracker_http_requests_total", **route) == VISITS
            assert (
                value(found, "visit_tracker_http_request_duration_seconds_count", route="/visit")
                == VISITS
            )
            assert value(found, "visit_tracker_batch_size_sum") == VISITS
            batches = value(found, "visit_tracker_batch_size_count")
            assert 1 <= batches <= VISITS
            assert value(found, "visit_tracker_store_apply_seconds_count") == batches


@pytest.mark.parametrize("workers", [1, 2])
def test_each_start_gets_a_fresh_metrics_directory_removed_at_exit(
    tmp_path: Path, workers: int
) -> None:
    """The server's metrics directory exists and holds its files while it runs, and is gone
    once SIGTERM has stopped it, with one worker process or several."""
    with running_server(
        "--workers", str(workers), "--store", f"sqlite:///{tmp_path}/v.db"
    ) as server:
        directory = metrics_directory(server.process.pid)
        httpx2.post(f"{server.url}/visit")
        assert list(directory.glob("*.db"))
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert not directory.exists()


def test_routes_are_labelled_by_template_and_store_errors_by_kind(tmp_path: Path) -> None:
    """Requests are labelled with their route's template (never a raw path) and an unknown
    method as `other`; a store that stays locked shows as one StoreUnavailable error."""
    database = tmp_path / "visits.db"
    with TestClient(create_app(Settings(store=f"sqlite:///{database}", store_timeout=0.2))) as (
        client
    ):
        client.post("/v1/counters/example.com/home/hits")
        client.get("/no/such/page")
        client.request("PURGE", "/visit")
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        assert client.post("/visit").status_code == 503
        blocker.execute("ROLLBACK")
        blocker.close()
        found = samples(client.get("/metrics").text)
    requests = "visit_tracker_http_requests_total"
    hits = {"route": "/v1/counters/{namespace}/{key}/hits", "method": "POST", "status": "200"}
    assert value(found, requests, **hits) == 1
    assert value(found, requests, route="unmatched", method="GET", status="404") == 1
    assert value(found, requests, route="/visit", method="other", status="405") == 1
    assert value(found, requests, route="/visit", method="POST", status="503") == 1
    assert value(found, "visit_tracker_store_errors_total", kind="StoreUnavailable") == 1
    assert value(found, "visit_tracker_visits_total") == 1
    assert not [key for key in found if ("route", "/no/such/page") in key[1]]


def test_a_store_failure_on_a_counter_route_is_counted(tmp_path: Path) -> None:
    """A locked store that fails the creation of a named counter shows as a store error too."""
    database = tmp_path / "visits.db"
    with TestClient(create_app(Settings(store=f"sqlite:///{database}", store_timeout=0.2))) as (
        client
    ):
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        assert client.post("/v1/counters/example.com/home").status_code == 503
        blocker.execute("ROLLBACK")
        blocker.close()
        found = samples(client.get("/metrics").text)
    assert value(found, "visit_tracker_store_errors_total", kind="StoreUnavailable") == 1


def test_rate_limit_refusals_are_counted_by_route_class() -> None:
    """Each limited class's series starts at 0, and every 429 counts once in its own class's:
    the direct route POST /visit's (visit) as well as the framework's routes' (hits, reads,
    admin); a class left unlimited has none."""
    settings = Settings(
        store="memory://",
        rate_limit_visit=0.001,
        rate_limit_visit_burst=1,
        rate_limit_hits=0.001,
        rate_limit_hits_burst=1,
        rate_limit_reads=0.001,
        rate_limit_reads_burst=1,
        rate_limit_admin=0,
    )
    requests = {
        "visit": ("POST", "/visit"),
        "hits": ("POST", "/v1/counters/example.com/home/hits"),
        "reads": ("GET", "/v1/counters/example.com/home"),
    }
    with TestClient(create_app(settings)) as client:
        before = samples(client.get("/metrics").text)
        for refusals, (kind, (method, path)) in enumerate(requests.items(), start=1):
            statuses = [client.request(method, path).status_code for _ in range(1 + refusals)]
            assert statuses == [200] + [429] * refusals, kind
        found = samples(client.get("/metrics").text)
    refused = "visit_tracker_rate_limited_total"
    for kind in requests:
        assert (refused, frozenset({("class", kind)})) in before
        assert value(before, refused, **{"class": kind}) == 0
    assert value(found, refused, **{"class": "visit"}) == 1
    assert value(found, refused, **{"class": "hits"}) == 2
    assert value(found, refused, **{"class": "reads"}) == 3
    assert (refused, frozenset({("class", "admin")})) not in found


def test_refusals_of_every_worker_are_counted(tmp_path: Path) -> None:
    """With two worker processes, /metrics counts as many hits-class refusals as the clients
    were answered 429s, whichever worker refused them."""
    limits = ("--rate-limit-hits", "0.001", "--rate-limit-hits-burst", "1")
    with running_server("--workers", "2", "--store", f"sqlite:///{tmp_path}/v.db", *limits) as (
        server
    ):
        hit = f"{server.url}/v1/counters/example.com/home/hits"
        statuses = [httpx2.post(hit).status_code for _ in range(12)]  # new connections
        refusals = statuses.count(429)
        assert refusals >= 10  # one allowed hit per worker's own buckets
        deadline = time.monotonic() + 5
        while True:
            found = samples(httpx2.get(f"{server.url}/metrics").text)
            counted = value(found, "visit_tracker_rate_limited_total", **{"class": "hits"})
            if counted == refusals:
                break
            assert time.monotonic() < deadline, f"{counted} refusals counted, not {refusals}"
            time.sleep(0.05)


def test_the_dashboard_reads_only_metrics_the_server_exports() -> None:
    """Every metric the Grafana dashboard queries is one /metrics exports, and it queries each."""
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    queried = {
        re.sub(r"_(bucket|sum|count|total)$", "", name)
        for expression in expressions
        for name in re.findall(r"\bvisit_tracker_\w+", expression)
    }
    with TestClient(create_app(Settings(store="memory://"))) as client:
        client.post("/visit")
        families = text_string_to_metric_families(client.get("/metrics").text)
        # One process also exports each family's creation time, which is no series to chart.
        exported = {family.name for family in families if not family.name.endswith("_created")}
    assert queried == exported
