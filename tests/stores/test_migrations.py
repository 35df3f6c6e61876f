"""Stores written by an earlier release open under this one with every count kept."""

import sqlite3
from pathlib import Path

import pytest

from tests.postgres import execute, fresh_schema
from visit_tracker.stores import CounterId, CounterRecord, open_store
from visit_tracker.stores import postgres as postgres_store
from visit_tracker.stores import sqlite as sqlite_store

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")


async def test_a_version_1_sqlite_file_is_migrated_and_keeps_its_counts(tmp_path: Path) -> None:
    """A file at schema version 1 opens at the current version, its counters intact, unowned."""
    path = tmp_path / "visits.db"
    with sqlite3.connect(path) as db:
        db.execute(sqlite_store.MIGRATIONS[1])
        db.execute("INSERT INTO counters VALUES ('site', 'home', 42, 1, 2)")
        db.execute("PRAGMA user_version = 1")
    db.close()
    store = await open_store(f"sqlite:///{path}", wait_limit=2.0)
    try:
        assert await store.read(HOME) == CounterRecord(HOME, 42, 1, 2, None)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
    db.close()
    assert version == sqlite_store.SCHEMA_VERSION


async def test_a_version_1_postgresql_schema_is_migrated_and_keeps_its_counts() -> None:
    """A schema at version 1 opens at the current version, its counters intact, unowned."""
    with fresh_schema() as url:
        execute(url, postgres_store.VERSION_TABLE)
        execute(url, postgres_store.MIGRATIONS[1])
        execute(url, "INSERT INTO schema_version (version) VALUES (1)")
        execute(url, "INSERT INTO counters VALUES ('site', 'home', 42, 1, 2)")
        store = await open_store(url, wait_limit=2.0)
        try:
            assert await store.read(HOME) == CounterRecord(HOME, 42, 1, 2, None)
        finally:
            await store.close()
        version = execute(url, "SELECT version FROM schema_version")
        assert version == [(postgres_store.SCHEMA_VERSION,)]
