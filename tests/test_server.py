"""The real server, in real processes: exact across workers, durable across restarts and crashes."""

import asyncio
import signal
import socket
import sqlite3
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from tests.conftest import NewStoreUrl
from tests.server import Server, command, running_server

CONNECTIONS = 100


async def send_visits(url: str, count: int, *, verify: ssl.SSLContext | bool = True) -> list[int]:
    """POST /visit `count` times over CONNECTIONS concurrent connections; return the values.

    `verify` is the TLS context that checks an https server's certificate.
    """
    limits = httpx2.Limits(max_connections=CONNECTIONS)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=30, verify=verify) as client:
        gate = asyncio.Semaphore(CONNECTIONS)

        async def one() -> int:
            async with gate:
                response = await client.post("/visit")
                response.raise_for_status()
                value: int = response.json()["visits"]
                return value

        return await asyncio.gather(*(one() for _ in range(count)))


async def visit_until_refused(url: str, *, then: Callable[[], None], after: int) -> list[int]:
    """Keep CONNECTIONS clients visiting until the server stops answering.

    `then()` runs once `after` visits were acknowledged; returns every acknowledged value.
    """
    acknowledged: list[int] = []
    limits = httpx2.Limits(max_connections=CONNECTIONS)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=10) as client:

        async def visitor() -> None:
            while True:
                try:
                    response = await client.post("/visit")
                except httpx2.TransportError:
                    return
                if response.status_code != 200:
                    return
                acknowledged.append(response.json()["visits"])
                if len(acknowledged) == after:
                    await asyncio.to_thread(then)

        await asyncio.wait_for(asyncio.gather(*(visitor() for _ in range(CONNECTIONS))), 60)
    return acknowledged


def total_visits(server: Server) -> int:
    total: int = httpx2.get(f"{server.url}/stats").json()["total_visits"]
    return total


def test_many_workers_count_every_visit_once(tmp_path: Path) -> None:
    """2,000 concurrent visits over 4 workers get exactly the numbers 1..2000; /stats says 2000."""
    with running_server("--workers", "4", "--store", f"sqlite:///{tmp_path}/v.db") as server:
        values = asyncio.run(send_visits(server.url, 2000))
        assert sorted(values) == list(range(1, 2001))
        assert total_visits(server) == 2000


def test_the_count_survives_a_restart(tmp_path: Path) -> None:
    """After a clean stop and a new start on the same file, counting goes on where it was."""
    store = f"sqlite:///{tmp_path}/v.db"
    with running_server("--store", store) as server:
        asyncio.run(send_visits(server.url, 25))
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    with running_server("--store", store) as server:
        assert total_visits(server) == 25
        assert httpx2.post(f"{server.url}/visit").json() == {"visits": 26}


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgresql"])
def test_sigkill_under_load_loses_no_acknowledged_visit(
    kind: str, new_store_url: NewStoreUrl
) -> None:
    """Killing every server process mid-load keeps every visit that got a 200, each with its own
    number, whether the store is a local file or a networked Redis or PostgreSQL."""
    # Only the server's processes die: the networked stores keep running (their own crashes
    # are in test_soak.py, test_redis_service.py and test_postgres_server.py).
    store = new_store_url(kind)
    with running_server("--workers", "2", "--store", store) as server:
        acknowledged = asyncio.run(visit_until_refused(server.url, then=server.kill_all, after=500))
    assert len(acknowledged) >= 500
    assert len(set(acknowledged)) == len(acknowledged)
    with running_server("--store", store) as server:
        assert total_visits(server) >= max(acknowledged)


def test_sigterm_drains_in_flight_visits(tmp_path: Path) -> None:
    """SIGTERM under load exits cleanly, and exactly the acknowledged visits are stored."""
    store = f"sqlite:///{tmp_path}/v.db"
    with running_server("--workers", "2", "--store", store) as server:
        acknowledged = asyncio.run(
            visit_until_refused(server.url, then=lambda: server.signal(signal.SIGTERM), after=500)
        )
        assert server.wait() == 0
    assert sorted(acknowledged) == list(range(1, len(acknowledged) + 1))
    with running_server("--store", store) as server:
        assert total_visits(server) == len(acknowledged)


def refused_start(*arguments: str, env: dict[str, str] | None = None) -> str:
    """Run `serve` expecting it to refuse; return its single line of complaint."""
    result = subprocess.run(
        command("serve", *arguments),
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_corrupt_store_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """A store file that is not a database stops the server at start, naming the file."""
    corrupt = tmp_path / "visits.db"
    corrupt.write_bytes(b"these bytes are not an SQLite database" * 200)
    line = refused_start("--store", f"sqlite:///{corrupt}")
    assert str(corrupt) in line
    assert "not a database" in line


def test_an_uncreatable_store_path_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """A store path below a regular file stops the server at start, saying why."""
    (tmp_path / "file").write_text("not a directory")
    line = refused_start("--store", f"sqlite:///{tmp_path}/file/visits.db")
    assert f"{tmp_path}/file/visits.db" in line
    assert f"{tmp_path}/file is not a directory" in line


def test_an_open_store_stays_unchanged_by_a_refused_start(tmp_path: Path) -> None:
    """A start refused after its store was opened (its port is taken) leaves the file as it was."""
    database = tmp_path / "visits.db"
    with running_server("--store", f"sqlite:///{database}") as server:
        asyncio.run(send_visits(server.url, 3))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        line = refused_start(
            "--host", "127.0.0.1", "--port", port, "--store", f"sqlite:///{database}"
        )
    assert "Address already in use" in line
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT value FROM counters").fetchone() == (3,)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (("--port", "70000"), "VISIT_TRACKER_PORT (--port): Input should be less than or equal"),
        (("--workers", "0"), "VISIT_TRACKER_WORKERS (--workers): Input should be greater"),
        (("--store", "ftp://x"), "unknown store 'ftp://x'"),
        (("--store", "memory://", "--workers", "2"), "2 workers would each count on their own"),
        (
            ("--trusted-proxies", "127.0.0.1,localhost"),
            "VISIT_TRACKER_TRUSTED_PROXIES (--trusted-proxies): 'localhost' is neither",
        ),
    ],
)
def test_invalid_settings_stop_the_start_with_one_line(
    arguments: tuple[str, ...], expected: str
) -> None:
    """An invalid or contradictory setting stops the server at start and names the setting."""
    assert expected in refused_start(*arguments)


def test_a_port_another_server_listens_on_stops_the_start_with_one_line(tmp_path: Path) -> None:
    """A second server on a port already served refuses to start instead of sharing the port."""
    with running_server("--store", f"sqlite:///{tmp_path}/v.db") as server:
        port = server.url.rpartition(":")[2]
        line = refused_start("--host", "127.0.0.1", "--port", port, "--store", "memory://")
        assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in line
        assert httpx2.post(f"{server.url}/visit").json() == {"visits": 1}
