"""Fixtures shared by the whole suite: one store URL per backend, and apps built on them."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
import redis
from fastapi.testclient import TestClient

from tests.redis_servers import RedisServer, redis_cluster
from tests.tools import require_tool
from visit_tracker.app import create_app
from visit_tracker.settings import Settings
from visit_tracker.stores import Store, open_store

STORE_KINDS = ["memory", "sqlite", "redis", "redis-cluster"]

SHARED_REDIS = "redis://127.0.0.1:6379/0"
"""The machine's Redis, shared with other suites: tests only ever use keys of their own prefix."""


@pytest.fixture(scope="session")
def shared_redis() -> str:
    """The URL of the shared Redis, once it answers."""
    try:
        with redis.Redis.from_url(SHARED_REDIS, socket_timeout=2) as client:
            client.ping()
    except redis.RedisError as error:
        require_tool(None, f"no Redis answers at {SHARED_REDIS} ({error})")
    return SHARED_REDIS


@pytest.fixture(scope="session")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    """A private three-primary Redis Cluster for the whole session."""
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as servers:
        yield servers


@pytest.fixture
def cluster_url(cluster_nodes: list[RedisServer]) -> str:
    """A store URL on the session's cluster with a key prefix of its own: an empty store."""
    return f"redis+cluster://127.0.0.1:{cluster_nodes[0].port}?prefix=test-{uuid4().hex}"


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of each kind in turn: every test using it runs once per backend.

    Redis stores get a key prefix of their own (`?prefix=`), deleted afterwards.
    """
    kind: str = request.param
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/visits.db"
    elif kind == "redis-cluster":
        yield request.getfixturevalue("cluster_url")
    else:
        prefix = f"test-{uuid4().hex}"
        server = request.getfixturevalue("shared_redis")
        yield f"{server}?prefix={prefix}"
        with redis.Redis.from_url(server) as client:
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An opened store of each kind, closed after the test."""
    opened = await open_store(store_url, wait_limit=2.0)
    yield opened
    await opened.close()


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    """An HTTP client for the app on each kind of store, lifespan included."""
    app = create_app(Settings(store=store_url))
    with TestClient(app) as test_client:
        yield test_client
