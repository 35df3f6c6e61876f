"""The batch write's round trip, on the libpq connection of a pooled psycopg connection.

psycopg's `execute` makes a cursor, converts the query, keeps its cache of prepared statements
and its results up to date on every call: about half of the CPU time the store spent on a batch,
and on a busy machine the workers' CPU time is what limits them. The batch write, the statement
a busy process runs hundreds of times a second, goes out here instead: prepared once per
connection, its parameters dumped as text by psycopg's own adapters, its reply read with libpq's
non-blocking calls on the event loop.

Failures are psycopg's exceptions, so the store tells them apart as it does every other
operation's: an error reply raises the class of its SQLSTATE (its transaction rolled back), a
broken connection `psycopg.OperationalError` with `connection.broken` set. A round trip that is
cancelled — the store's wait limit — closes its connection at once, statement in flight, rather
than cancel the statement and wait for the server to confirm: a silent server never confirms,
and the pool replaces a closed connection.
"""

import asyncio
import hashlib
import re
import weakref
from collections.abc import Callable, Sequence
from functools import cache

import psycopg
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from psycopg.errors import error_from_result
from psycopg.pq.abc import PGconn, PGresult
from psycopg.rows import TupleRow

Connection = psycopg.AsyncConnection[TupleRow]

PLACEHOLDER = re.compile(r"%(.)")

_prepared: weakref.WeakKeyDictionary[Connection, set[bytes]] = weakref.WeakKeyDictionary()
"""Per connection, the names of the statements prepared on it; a new connection has none."""


async def fetch_prepared(
    connection: Connection, statement: str, params: Sequence[object]
) -> list[TupleRow]:
    """Run `statement` (with `%s` placeholders) on `connection` and return its rows.

    The statement is prepared on the connection the first time it runs there, and again if
    the server no longer has it (after `DISCARD ALL`, or behind a pooler that moved the
    session): an unknown statement runs nothing, so it is prepared and sent once more.
    """
    pgconn = connection.pgconn
    loop = asyncio.get_running_loop()  # once: each call asks the kernel for the process id
    name, numbered = _prepared_form(statement)
    prepared = _prepared.setdefault(connection, set())
    try:
        if name not in prepared:
            pgconn.send_prepare(name, numbered)
            await _result(connection, loop)
            prepared.add(name)
        transformer = Transformer.from_context(connection)
        values = transformer.dump_sequence(params, [PyFormat.TEXT] * len(params))
        pgconn.send_query_prepared(name, values)
        try:
            result = await _result(connection, loop)
        except psycopg.errors.InvalidSqlStatementName:  # the server forgot it: nothing ran
            pgconn.send_prepare(name, numbered)
            await _result(connection, loop)
            pgconn.send_query_prepared(name, values)
            result = await _result(connection, loop)
    except BaseException:
        if pgconn.transaction_status == pq.TransactionStatus.ACTIVE:
            await connection.close()  # its late reply must not be read as another's
        raise
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


@cache
def _prepared_form(statement: str) -> tuple[bytes, bytes]:
    """The statement's prepared name, the same on every connection, and its text with the
    placeholders numbered as PostgreSQL wants them ($1, $2, ...). Kept for every statement
    seen: the batch write has a few shapes only."""
    numbers = iter(range(1, statement.count("%") + 1))

    def number(placeholder: re.Match[str]) -> str:
        if placeholder.group(1) != "s":
            raise ValueError(f"only %s placeholders are supported: {placeholder.group(0)!r}")
        return f"${next(numbers)}"

    text = PLACEHOLDER.sub(number, statement).encode()
    return b"visit_tracker_" + hashlib.blake2b(text, digest_size=8).hexdigest().encode(), text


async def _result(connection: Connection, loop: asyncio.AbstractEventLoop) -> PGresult:
    """Send what libpq holds, then the one result of the command sent; raise its error."""
    pgconn = connection.pgconn
    while pgconn.flush():
        await _ready(loop, pgconn, loop.add_writer, loop.remove_writer)
    results = []
    while True:
        while pgconn.is_busy():
            await _ready(loop, pgconn, loop.add_reader, loop.remove_reader)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        results.append(result)
    (result,) = results
    if result.status == pq.ExecStatus.FATAL_ERROR:
        raise error_from_result(result, encoding=connection.info.encoding)
    return result


async def _ready(
    loop: asyncio.AbstractEventLoop,
    pgconn: PGconn,
    watch: Callable[[int, Callable[[], object]], object],
    unwatch: Callable[[int], object],
) -> None:
    """Wait until the connection's socket is ready, as `watch` (add_reader or add_writer)
    watches it."""
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():  # the loop may call it again before this task has run
            ready.set_result(None)

    socket = pgconn.socket
    watch(socket, wake)
    try:
        await ready
    finally:
        unwatch(socket)
