"""Fixtures shared by the whole suite: one store URL per backend, and apps built on them."""

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from tests.postgres import fresh_schema
from tests.redis_servers import RedisServer, fresh_prefix, redis_cluster, shared_redis
from visit_tracker.app import create_app
from visit_tracker.settings import Settings
from visit_tracker.stores import Store, open_store

STORE_KINDS = ["memory", "sqlite", "redis", "redis-cluster", "postgresql"]

NewStoreUrl = Callable[[str], str]


@pytest.fixture(scope="session")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    """A private three-primary Redis Cluster for the whole session."""
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as servers:
        yield servers


@pytest.fixture
def new_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewStoreUrl]:
    """Makes a fresh, empty store of the kind asked for; each is removed after the test.

    A Redis store is a key prefix of its own (`?prefix=`) on the shared Redis or on the
    session's cluster. A PostgreSQL store is a schema of its own on the shared server.
    """
    with contextlib.ExitStack() as cleanup:
        made = 0

        def new(kind: str) -> str:
            nonlocal made
            made += 1
            if kind == "memory":
                return "memory://"
            if kind == "sqlite":
                return f"sqlite:///{tmp_path}/visits-{made}.db"
            if kind == "redis":
                return cleanup.enter_context(fresh_prefix(shared_redis()))
            if kind == "redis-cluster":
                nodes: list[RedisServer] = request.getfixturevalue("cluster_nodes")
                return f"redis+cluster://127.0.0.1:{nodes[0].port}?prefix=test-{uuid4().hex}"
            if kind == "postgresql":
                return cleanup.enter_context(fresh_schema())
            raise ValueError(f"unknown store kind {kind!r}")

        yield new


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each kind of store in turn: every test using it runs once per backend."""
    kind: str = request.param
    return kind


@pytest.fixture
def store_url(store_kind: str, new_store_url: NewStoreUrl) -> str:
    """A fresh, empty store of each kind in turn: every test using it runs once per backend."""
    return new_store_url(store_kind)


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
