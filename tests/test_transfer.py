"""`visit-tracker export` and `import`, run as users run them: files, exit codes and messages."""

import asyncio
import os
import pty
import select
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NewStoreUrl
from tests.server import command
from visit_tracker.backup import format_header
from visit_tracker.stores import CounterId, CounterRecord, Hit, open_store
from visit_tracker.stores.base import LARGEST, LARGEST_SET

ROUND_TRIP = ["sqlite", "postgresql", "redis", "redis-cluster", "sqlite"]
"""The stores a set of counters passes through, in order: a new kind of store is one more line."""

DURABLE_KINDS = ["sqlite", "postgresql"]

RECORDS = [
    *(
        CounterRecord(
            CounterId(f"ns{i % 7}", f"key-{i}"),
            i * 3,
            1_600_000_000_000 + i,
            1_700_000_000_000,
            f"{i:064x}" if i % 3 == 0 else None,
            i % 5,
            i % 4 * 15,
        )
        for i in range(2500)
    ),
    CounterRecord(
        CounterId("Az09_.-" + "x" * 57, "k"), LARGEST_SET, 0, LARGEST, None, LARGEST_SET, 1440
    ),
]
"""More counters than one export round trip fetches, owned and unowned, with and without bot
hits and windows, names from the whole alphabet, extremes."""


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*arguments), capture_output=True, text=True, timeout=120, check=False
    )


def exported(url: str) -> str:
    """The store's export, read from standard output."""
    result = run("export", "--store", url)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def fill(url: str, records: list[CounterRecord]) -> None:
    """Restore `records`, then count a few hits, bots' too, so the store's own clock is in it."""
    store = await open_store(url, wait_limit=10.0)
    try:
        await store.restore(records)
        home = CounterId("site", "home")
        await store.apply([Hit(home)] * 3 + [Hit(records[0].counter), Hit(home, bot=True)])
    finally:
        await store.close()


def test_counters_survive_a_round_trip_through_every_kind_of_store(
    new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """Exported and imported from store to store through files, no counter, value, time, owner,
    bot hits or window change: every later export is byte for byte the first."""
    source = new_store_url(ROUND_TRIP[0])
    asyncio.run(fill(source, RECORDS))
    original = tmp_path / "0.jsonl"
    result = run("export", "--store", source, "--output", str(original))
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"visit-tracker: exported {len(RECORDS) + 1} counters\n"
    previous = original
    for step, kind in enumerate(ROUND_TRIP[1:], start=1):
        target = new_store_url(kind)
        result = run("import", "--store", target, str(previous))
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"visit-tracker: imported {len(RECORDS) + 1} counters\n"
        previous = tmp_path / f"{step}.jsonl"
        assert run("export", "--store", target, "--output", str(previous)).returncode == 0
        assert previous.read_bytes() == original.read_bytes(), f"{kind} changed the counters"


@pytest.mark.parametrize("kind", DURABLE_KINDS)
def test_a_malformed_line_3_is_refused_by_number_and_changes_nothing(
    kind: str, new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """An import whose line 3 is malformed exits 1 with one line naming the file and line 3, and
    leaves the store as it was, the valid line 2 included."""
    target = new_store_url(kind)
    asyncio.run(fill(target, RECORDS[:3]))
    before = exported(target)
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(
        f"{format_header()}\n"
        '{"namespace": "site", "key": "home", "value": 999, "created_at": 1, "updated_at": 2,'
        ' "admin_key_hash": null, "bot_hits": 0, "count_once_per": 0}\n'
        '{"namespace": "site", "key": "about", "value": -4, "created_at": 1, "updated_at": 2,'
        ' "admin_key_hash": null, "bot_hits": 0, "count_once_per": 0}\n'
    )
    result = run("import", "--store", target, str(malformed))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"visit-tracker: nothing imported: {malformed}: line 3: ")
    assert exported(target) == before


def test_an_unreachable_store_fails_the_export_in_one_line_leaving_no_file(
    tmp_path: Path,
) -> None:
    """An export from a store that cannot be opened exits 1 with one line, and writes no file."""
    output = tmp_path / "counters.jsonl"
    result = run(
        "export", "--store", "postgresql://postgres@127.0.0.1:1/x", "--output", str(output)
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "cannot open the PostgreSQL store postgresql://postgres@127.0.0.1:1/x" in result.stderr
    assert list(tmp_path.iterdir()) == []


def on_a_terminal(*arguments: str) -> str:
    """Run the command with standard error on a pseudo-terminal; return what it drew there."""
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        command(*arguments), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal
    ) as process:
        os.close(terminal)
        drawn = b""
        while select.select([controller], [], [], 30)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end closed: the command has exited
                break
            if not chunk:
                break
            drawn += chunk
        assert process.wait(timeout=30) == 0, drawn
    os.close(controller)
    return drawn.decode()


def test_progress_is_drawn_only_when_standard_error_is_a_terminal(
    new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """On a terminal export and import draw their progress; elsewhere they print one line."""
    source, target = new_store_url("sqlite"), new_store_url("sqlite")
    asyncio.run(fill(source, RECORDS[:10]))
    output = tmp_path / "counters.jsonl"
    drawn = on_a_terminal("export", "--store", source, "--output", str(output))
    assert "exported 11 counters \x1b" in drawn  # the progress line, with its colours
    assert drawn.endswith("visit-tracker: exported 11 counters\r\n")
    drawn = on_a_terminal("import", "--store", target, str(output))
    assert "reading" in drawn
    assert "100%" in drawn
    assert "importing 11 counters" in drawn
    assert run("import", "--store", target, str(output)).stderr == (
        "visit-tracker: imported 11 counters\n"
    )
