"""The batch write's own round trip: prepared once per connection, failures as psycopg's."""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg.rows import TupleRow

from tests.postgres import fresh_schema
from visit_tracker.stores._postgres_wire import _prepared_form, fetch_prepared

pytestmark = pytest.mark.anyio

Connection = psycopg.AsyncConnection[TupleRow]


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_schema() as made:
        yield made


@pytest.fixture
async def connection(url: str) -> AsyncIterator[Connection]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as made:
        yield made


async def our_prepared_statements(connection: Connection) -> list[str]:
    cursor = await connection.execute(
        "SELECT name FROM pg_prepared_statements WHERE name LIKE 'visit\\_tracker\\_%'"
    )
    return [name for (name,) in await cursor.fetchall()]


async def test_a_statement_is_prepared_once_per_connection(connection: Connection) -> None:
    """Running a statement twice prepares it once, and each run gets its own parameters' rows."""
    statement = "SELECT %s::text, %s::bigint + 1, %s::text[]"
    first = await fetch_prepared(connection, statement, ("a", 1, ["x", 'y"\\z']))
    second = await fetch_prepared(connection, statement, ("b", 2, []))
    assert first == [("a", 2, ["x", 'y"\\z'])]
    assert second == [("b", 3, [])]
    assert len(await our_prepared_statements(connection)) == 1


async def test_an_error_reply_raises_its_sqlstate_and_leaves_the_connection_usable(
    connection: Connection,
) -> None:
    """An error from the server raises psycopg's class for its SQLSTATE; the connection goes on."""
    with pytest.raises(psycopg.errors.DivisionByZero):
        await fetch_prepared(connection, "SELECT 1 / %s::int", (0,))
    assert await fetch_prepared(connection, "SELECT 1 / %s::int", (1,)) == [(1,)]


async def test_a_cancelled_round_trip_closes_its_connection_at_once(
    connection: Connection,
) -> None:
    """Cancelled while the server works, the round trip ends at once and closes its connection,
    so that its late reply can never be read as another statement's."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await fetch_prepared(connection, "SELECT pg_sleep(%s::float8)", (5,))
    assert time.monotonic() - started < 1.0
    assert connection.closed


async def test_a_broken_connection_raises_an_operational_error(
    url: str, connection: Connection
) -> None:
    """A connection the server ends mid-statement raises OperationalError and reads as broken."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as killer:
        pid = connection.info.backend_pid
        sleeping = asyncio.ensure_future(
            fetch_prepared(connection, "SELECT pg_sleep(%s::float8)", (5,))
        )
        await asyncio.sleep(0.2)
        await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            await sleeping
    assert connection.broken


async def test_a_statement_the_server_forgot_is_prepared_again(connection: Connection) -> None:
    """After the session's prepared statements are dropped (DISCARD ALL), the next run
    prepares its statement again and answers, once."""
    statement = "SELECT %s::bigint + 1"
    assert await fetch_prepared(connection, statement, (1,)) == [(2,)]
    await connection.execute("DISCARD ALL")
    assert await our_prepared_statements(connection) == []
    assert await fetch_prepared(connection, statement, (2,)) == [(3,)]
    assert len(await our_prepared_statements(connection)) == 1


def test_placeholders_are_numbered_and_any_but_s_is_refused() -> None:
    """%s placeholders become $1, $2, ...; a named one is refused rather than sent as text."""
    assert _prepared_form("SELECT %s, %s")[1] == b"SELECT $1, $2"
    with pytest.raises(ValueError, match="only %s placeholders"):
        _prepared_form("SELECT %(name)s")
