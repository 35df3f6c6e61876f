"""`visit-tracker stats`, run as users run it on a real SQLite file: the table it prints."""

import asyncio
import re
from pathlib import Path

from tests.test_transfer import on_a_terminal, run
from visit_tracker.stores import CounterId, CounterRecord, open_store
from visit_tracker.summary import Summary

LONG = "n" * 64
UPDATED = 1_700_000_000_000
"""2023-11-14 22:13:20 UTC."""

RECORDS = [
    CounterRecord(CounterId("example.com", "home"), 1_234_567, 0, UPDATED),
    CounterRecord(CounterId("example.com", "about"), 42, 0, UPDATED + 60_000),
    CounterRecord(CounterId("example.com", "blog"), 42, 0, UPDATED),
    CounterRecord(CounterId(LONG, "k" * 64), 7_000, 0, UPDATED),
    *(CounterRecord(CounterId("many", f"page-{i:04}"), i, 0, UPDATED) for i in range(1200)),
]
ROW = re.compile(r"^\s+(\S+)\s+(\S+)\s+([\d,]+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s*$")


def filled(path: Path, records: list[CounterRecord]) -> str:
    """A SQLite store at `path` holding exactly `records`."""
    url = f"sqlite:///{path}"

    async def restore() -> None:
        store = await open_store(url, wait_limit=10.0)
        try:
            await store.restore(records)
        finally:
            await store.close()

    asyncio.run(restore())
    return url


def printed_rows(*arguments: str) -> tuple[list[tuple[str, ...]], str]:
    """The rows of the table `stats` prints, and the line below them; nothing on stderr."""
    result = run("stats", *arguments)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    lines = result.stdout.splitlines()
    rows = [match.groups() for line in lines if (match := ROW.match(line))]
    return rows, lines[-1].strip()


def test_stats_shows_the_counters_with_the_highest_values_first(tmp_path: Path) -> None:
    """The top counters of every namespace, highest first and equal ones in name order, each
    with its whole names, value and time of its latest change, then how many there were."""
    url = filled(tmp_path / "visits.db", RECORDS)
    rows, totals = printed_rows("--store", url, "--top", "5")
    assert rows == [
        ("example.com", "home", "1,234,567", "2023-11-14 22:13:20"),
        (LONG, "k" * 64, "7,000", "2023-11-14 22:13:20"),
        ("many", "page-1199", "1,199", "2023-11-14 22:13:20"),
        ("many", "page-1198", "1,198", "2023-11-14 22:13:20"),
        ("many", "page-1197", "1,197", "2023-11-14 22:13:20"),
    ]
    assert totals == f"5 of 1,204 counters, {sum(r.value for r in RECORDS):,} visits in all"


def test_stats_of_a_namespace_reads_all_of_it_and_nothing_else(tmp_path: Path) -> None:
    """--namespace shows that namespace's counters only, every one of them with --top 0, read a
    page at a time; the default shows 20."""
    url = filled(tmp_path / "visits.db", RECORDS)
    rows, totals = printed_rows("--store", url, "--namespace", "many", "--top", "0")
    assert [row[1] for row in rows] == [f"page-{i:04}" for i in reversed(range(1200))]
    assert {row[0] for row in rows} == {"many"}
    assert totals == "1,200 of 1,200 counters, 719,400 visits in all"
    rows, _ = printed_rows("--store", url, "--namespace", "example.com")
    assert [row[1] for row in rows] == ["home", "about", "blog"]
    assert len(printed_rows("--store", url)[0]) == 20


def test_stats_of_an_empty_store_or_namespace_says_there_is_nothing(tmp_path: Path) -> None:
    """No counters is a sentence, not an empty table, and no error."""
    url = filled(tmp_path / "visits.db", RECORDS[:1])
    assert run("stats", "--store", url, "--namespace", "none").stdout == (
        "No counters in namespace none.\n"
    )
    empty = filled(tmp_path / "empty.db", [])
    assert run("stats", "--store", empty).stdout == "No counters.\n"


def test_stats_refuses_a_bad_namespace_or_store_in_one_line(tmp_path: Path) -> None:
    """A namespace that cannot exist is a usage error (2), a store that cannot be opened exit
    code 1 with its reason; neither prints a table or a traceback."""
    bad_name = run("stats", "--store", f"sqlite:///{tmp_path}/v.db", "--namespace", "a b")
    assert bad_name.returncode == 2
    assert "a namespace is 1 to 64 of A-Z a-z 0-9 _ . -" in bad_name.stderr
    bad_store = run("stats", "--store", "sqlite:////etc/passwd/visits.db")
    assert (bad_store.returncode, bad_store.stdout) == (1, "")
    assert bad_store.stderr == (
        "visit-tracker: cannot open the SQLite store /etc/passwd/visits.db: "
        "/etc/passwd is not a directory\n"
    )


def test_stats_draws_its_progress_only_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, reading shows how many counters were read; elsewhere stderr stays empty
    (the other tests)."""
    url = filled(tmp_path / "visits.db", RECORDS)
    assert "read 1,204 counters" in on_a_terminal("stats", "--store", url)


def test_a_summary_keeps_the_highest_values_and_the_first_of_equal_ones() -> None:
    """Kept counters are the highest, most first; of equal values, the ones that came first."""
    summary = Summary(limit=3)
    for i, value in enumerate([5, 9, 5, 1, 9, 5]):
        summary.add(CounterRecord(CounterId("ns", f"k{i}"), value, 0, 0))
    assert [(r.counter.key, r.value) for r in summary.top()] == [("k1", 9), ("k4", 9), ("k0", 5)]
    assert (summary.counters, summary.visits) == (6, 34)
