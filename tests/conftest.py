"""Fixtures shared by the whole suite: one store URL per backend, and apps built on them."""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from visit_tracker.app import create_app
from visit_tracker.settings import Settings
from visit_tracker.stores import Store, open_store

STORE_KINDS = ["memory", "sqlite"]


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store of each kind in turn: every test using it runs once per backend."""
    kind: str = request.param
    if kind == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path}/visits.db"


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
