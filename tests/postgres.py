"""PostgreSQL for the tests: a fresh schema per test on the shared server at 127.0.0.1:5432, and
private servers that a test may stop, freeze and start again without touching the shared one."""

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg

from tests.server import free_port
from tests.tools import require_tool

SHARED_SERVER = "postgresql://postgres@127.0.0.1:5432"
TEST_DATABASE = "visit_tracker_test"
COMMAND_TIMEOUT = 60


@functools.cache
def _test_database() -> str | None:
    """The URL of the tests' database on the shared server, created once; None if unreachable."""
    try:
        with psycopg.connect(f"{SHARED_SERVER}/postgres", autocommit=True, connect_timeout=3) as db:
            exists = db.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (TEST_DATABASE,)
            ).fetchone()
            if not exists:
                db.execute(f"CREATE DATABASE {TEST_DATABASE}")
    except psycopg.OperationalError:
        return None
    return f"{SHARED_SERVER}/{TEST_DATABASE}"


def schema_url(database: str, schema: str) -> str:
    """A store URL whose tables live in `schema` of `database`."""
    return f"{database}?options={quote(f'-csearch_path={schema}')}"


@contextlib.contextmanager
def fresh_schema() -> Iterator[str]:
    """A store URL on a new, empty schema of the shared server; the schema is dropped after."""
    database = require_tool(
        _test_database(),
        "PostgreSQL is not answering on 127.0.0.1:5432 (.ci/run starts it)",
    )
    schema = f"vt_{uuid.uuid4().hex}"
    with psycopg.connect(database, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(database, schema)
    finally:
        with psycopg.connect(database, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


def _server_program(name: str) -> str:
    """A PostgreSQL server program, from the newest installed version or the PATH."""
    installed = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    found = str(installed[-1]) if installed else shutil.which(name)
    return require_tool(found, f"{name} is not installed (Debian package postgresql)")


@dataclass
class PrivateServer:
    """A PostgreSQL server of the test's own, on a free loopback port."""

    data: Path
    port: int
    as_owner: list[str]
    """The prefix that runs a command as the owner of `data`."""

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c shared_buffers=16MB -c max_connections=30"
        )
        self._pg_ctl("start", "--wait", "--log", str(self.data.parent / "log"), "-o", options)

    def stop(self) -> None:
        """Stop at once, as a crash would: connections are cut, nothing is flushed first."""
        self._pg_ctl("stop", "--wait", "--mode", "immediate")

    def freeze(self, signum: signal.Signals) -> None:
        """Send `signum` (SIGSTOP, SIGCONT) to the server and each of its processes."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        for pid in (postmaster, *map(int, children)):
            os.kill(pid, signum)

    def _pg_ctl(self, *arguments: str) -> None:
        subprocess.run(
            [*self.as_owner, _server_program("pg_ctl"), "--pgdata", str(self.data), *arguments],
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )


@contextlib.contextmanager
def private_server() -> Iterator[PrivateServer]:
    """A new PostgreSQL server in a temporary directory; stopped and removed afterwards."""
    initdb = _server_program("initdb")
    root = Path(tempfile.mkdtemp(prefix="visit-tracker-pg-"))
    # PostgreSQL refuses to run as root: as root, the server runs as the postgres user.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(root, "postgres")
    server = PrivateServer(root / "data", free_port(), as_owner)
    try:
        subprocess.run(
            [
                *as_owner,
                initdb,
                *("--pgdata", str(server.data), "--auth", "trust", "--username", "postgres"),
                *("--no-sync", "--no-instructions"),
            ],
            check=True,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )
        server.start()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            with contextlib.suppress(OSError):
                server.freeze(signal.SIGCONT)
            server.stop()
        shutil.rmtree(root)


def execute(url: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run one statement on its own connection (autocommit) and return its rows."""
    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def store_backends(url: str, *, waiting_on_a_lock: bool = False) -> list[int]:
    """The process ids of the store's connections to this database (those waiting on a lock)."""
    rows = execute(
        url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'visit-tracker' "
        "AND datname = current_database() AND (NOT %s OR wait_event_type = 'Lock')",
        (waiting_on_a_lock,),
    )
    return [int(str(pid)) for (pid,) in rows]
