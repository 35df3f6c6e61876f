"""A counter's history through `export` and `import`: hours, pages, referrers and visitors
between every kind of store, sketches exact within a family, refused lines, older files."""

import asyncio
import itertools
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

from tests.conftest import NewStoreUrl
from tests.test_transfer import exported, run
from visit_tracker.stores import CounterId, Hit, open_store
from visit_tracker.stores.base import DAY_MS, HOUR_MS

HOME = CounterId("site", "home")
TEN = datetime(2026, 3, 1, 10, 15, tzinfo=UTC)
TEN_MS = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)
DAY = TEN_MS - 10 * HOUR_MS
IDS = random.Random(1)  # noqa: S311 - test ids, not secrets
FEW = [IDS.getrandbits(63) for _ in range(40)]
"""Visitors of one hour: fewer than a bucket keeps exactly."""
MANY = [IDS.getrandbits(63) for _ in range(3000)]
"""Visitors of the next hour: counted by a sketch."""
HOURS: list[tuple[int, int]] = [(DAY - DAY_MS, 0), (TEN_MS, 1), (TEN_MS + HOUR_MS, 2)]
"""(hour start, visitor set): a day before with pages, then the few, then the many."""
WHOLE = {"start_ms": 0, "end_ms": 2**62}


async def fill(url: str) -> None:
    """Three hours of hits with pages, referrers and visitors, a bot's hit among them."""
    store = await open_store(url, wait_limit=10.0)
    try:
        for hour, which in HOURS:
            with time_machine.travel(hour / 1000 + 60, tick=False):
                visitors: list[int | None] = [None] if which == 0 else [*(FEW, MANY)[which - 1]]
                await store.apply(
                    [
                        Hit(
                            HOME,
                            page=f"/p{i % 7}",
                            referrer=f"https://r{i % 3}.example/",
                            visitor=v,
                        )
                        for i, v in enumerate(visitors)
                    ]
                    + [Hit(HOME, bot=True)]
                )
    finally:
        await store.close()


async def history_of(url: str) -> dict[str, Any]:
    """What a store's reads say of HOME's history."""
    store = await open_store(url, wait_limit=10.0)
    try:
        pages = await store.top(HOME, kind="page", **WHOLE, limit=100)
        referrers = await store.top(HOME, kind="referrer", **WHOLE, limit=100)
        hourly = [(hour, hour + HOUR_MS) for hour, _ in HOURS]
        return {
            "record": await store.read(HOME),
            "series": await store.series(HOME, **WHOLE),
            "days": await store.top(HOME, kind="page", start_ms=DAY, end_ms=DAY + DAY_MS, limit=9),
            "pages": pages,
            "referrers": referrers,
            "visitors": await store.visitors(HOME, ranges=hourly),
            "daily": await store.visitors(HOME, ranges=[(DAY - DAY_MS, DAY + DAY_MS)]),
        }
    finally:
        await store.close()


def test_history_survives_sqlite_redis_postgresql_sqlite(
    new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """Hours, pages, referrers and exact visitors come back unchanged after SQLite -> Redis ->
    PostgreSQL -> SQLite; the sketched hour and day, converted twice, stay within 2 %, and each
    import across families warns how many sketches it converted."""
    stores = [new_store_url(kind) for kind in ("sqlite", "redis", "postgresql", "sqlite")]
    asyncio.run(fill(stores[0]))
    before = asyncio.run(history_of(stores[0]))
    warnings = []
    for step, (source, target) in enumerate(itertools.pairwise(stores)):
        file = tmp_path / f"{step}.jsonl"
        assert run("export", "--store", source, "--output", str(file)).returncode == 0
        result = run("import", "--store", target, str(file))
        assert result.returncode == 0, result.stderr
        warnings.append(result.stderr.count("warning: 2 visitor sketches came from another"))
    after = asyncio.run(history_of(stores[-1]))
    assert warnings == [1, 1, 0]
    for read in ("record", "series", "days", "pages", "referrers"):
        assert after[read] == before[read], read
    assert before["visitors"] == [0, len(FEW), pytest.approx(len(MANY), rel=0.02)]
    assert after["visitors"][:2] == before["visitors"][:2]
    assert after["visitors"][2] == pytest.approx(before["visitors"][2], rel=0.02)
    assert after["daily"] == pytest.approx(before["daily"], rel=0.02)


@pytest.mark.parametrize(
    ("source", "target"), [("sqlite", "postgresql"), ("redis", "redis-cluster")]
)
def test_a_sketch_moves_exactly_within_its_family(
    source: str, target: str, new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """Between stores of one sketch family the sketched buckets count exactly as before, with no
    warning, and the export reads back byte for byte."""
    urls = new_store_url(source), new_store_url(target)
    asyncio.run(fill(urls[0]))
    file = tmp_path / "export.jsonl"
    file.write_text(exported(urls[0]))
    result = run("import", "--store", urls[1], str(file))
    assert result.returncode == 0
    assert "warning" not in result.stderr
    assert asyncio.run(history_of(urls[1])) == asyncio.run(history_of(urls[0]))
    assert exported(urls[1]) == file.read_text()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "redis"])
def test_a_malformed_history_line_is_refused_by_number_and_changes_nothing(
    kind: str, new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """An export whose history line 4 is malformed (an hour not on the hour) is refused naming
    line 4, and the store, history included, is left as it was."""
    source, target = new_store_url("sqlite"), new_store_url(kind)
    asyncio.run(fill(source))
    asyncio.run(fill(target))
    before = asyncio.run(history_of(target))
    header, counter, hours, *_ = exported(source).splitlines()
    malformed = tmp_path / "malformed.jsonl"
    malformed.write_text(f'{header}\n{counter}\n{hours}\n{{"hours": [[{TEN_MS + 1}, 1]]}}\n')
    result = run("import", "--store", target, str(malformed))
    assert result.returncode == 1
    assert result.stderr.startswith(f"visit-tracker: nothing imported: {malformed}: line 4: ")
    assert asyncio.run(history_of(target)) == before


def test_a_version_3_file_imports_counters_and_keeps_history(
    new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """A version 3 export (no history) still imports its counters, and the history the store
    has for them stays as it was."""
    target = new_store_url("sqlite")
    asyncio.run(fill(target))
    before = asyncio.run(history_of(target))
    old = tmp_path / "v3.jsonl"
    old.write_text(
        '{"format": "visit-tracker-counters", "version": 3}\n'
        '{"namespace": "site", "key": "home", "value": 77, "created_at": 1, "updated_at": 2,'
        ' "admin_key_hash": null, "bot_hits": 5, "count_once_per": 0}\n'
    )
    result = run("import", "--store", target, str(old))
    assert result.returncode == 0, result.stderr
    after = asyncio.run(history_of(target))
    assert after.pop("record").value == 77
    before.pop("record")
    assert after == before


def test_an_imported_history_replaces_the_counters_history(
    new_store_url: NewStoreUrl, tmp_path: Path
) -> None:
    """Importing a counter into a store that already has it and its history leaves exactly the
    imported history, never the two added up."""
    source, target = new_store_url("sqlite"), new_store_url("postgresql")
    asyncio.run(fill(source))
    asyncio.run(fill(target))
    file = tmp_path / "export.jsonl"
    file.write_text(exported(source))
    assert run("import", "--store", target, str(file)).returncode == 0
    assert asyncio.run(history_of(target)) == asyncio.run(history_of(source))
