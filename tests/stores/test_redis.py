"""What the Redis stores add to the contract: URLs, failures told apart, and cluster exactness."""

import asyncio
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from time_machine import TimeMachineFixture

from tests.conftest import NewStoreUrl
from tests.redis_servers import (
    RedisServer,
    ServerTls,
    move_slot,
    redis_cluster,
    redis_server,
    wait_until_cluster_ok,
)
from tests.server import free_port
from tests.tls import certificate_authority
from visit_tracker.errors import (
    ImportIncomplete,
    StoreError,
    StoreOpenError,
    StoreOutcomeUnknown,
    StoreUnavailable,
)
from visit_tracker.stores import (
    CounterId,
    CounterRecord,
    Hit,
    Store,
    check_store_url,
    open_store,
)
from visit_tracker.stores.base import DAY_MS, HOUR_MS, MINUTE_MS, DailyViews, HourlyHits
from visit_tracker.stores.redis import (
    EXPORT_CHUNK,
    IN_FLIGHT,
    RedisStore,
    parse_redis_url,
)

pytestmark = pytest.mark.anyio

HOME = CounterId("site", "home")
WAIT_LIMIT = 0.5
SLACK = 0.5
"""How far past the wait limit a loaded two-core machine may take to report the failure."""

DURABLE = ("--appendonly", "yes", "--appendfsync", "always")
"""A private server that keeps every acknowledged write across a SIGKILL."""


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis that keeps every acknowledged write, for tests that kill or stall it."""
    with redis_server(tmp_path / "redis", *DURABLE) as server:
        yield server


@pytest.mark.parametrize(
    ("url", "cluster", "prefix", "where"),
    [
        ("redis://127.0.0.1:6379/0", False, "visit-tracker", "127.0.0.1:6379"),
        ("redis://:secret@db.internal/3?prefix=app:prod", False, "app:prod", "db.internal:6379"),
        ("rediss://127.0.0.1:6380", False, "visit-tracker", "127.0.0.1:6380"),
        ("redis+cluster://127.0.0.1:7000", True, "visit-tracker", "127.0.0.1:7000"),
        ("rediss+cluster://10.1.2.3:7000/0?prefix=x", True, "x", "10.1.2.3:7000"),
    ],
)
def test_urls_name_server_database_and_prefix(
    url: str, cluster: bool, prefix: str, where: str
) -> None:
    """A Redis URL gives the server, whether it is a cluster, the key prefix, and no password."""
    location = parse_redis_url(url)
    assert (location.cluster, location.prefix, location.where) == (cluster, prefix, where)
    assert location.server_url.startswith(("redis://", "rediss://"))
    assert "prefix" not in location.server_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://", "name the host"),
        ("redis://127.0.0.1:port/0", "the port must be a number"),
        ("redis://127.0.0.1:6379/zero", "put a database number after the port"),
        ("redis+cluster://127.0.0.1:7000/2", "Redis Cluster has only database 0"),
        ("redis://127.0.0.1:6379/0?prefix=a*b", "the prefix must match"),
        ("redis://127.0.0.1:6379/0?timeout=3", "unknown option timeout"),
        ("redis://:hunter2@127.0.0.1:6379/x", "'redis://:\\*\\*\\*@127.0.0.1:6379/x'"),
        ("redis://127.0.0.1/0?ssl_ca_certs=/etc/hostname", "ssl_ca_certs needs TLS"),
        ("rediss://127.0.0.1/0?ssl_ca_certs=/no/ca.pem", "ssl_ca_certs: no file /no/ca.pem"),
        ("rediss://127.0.0.1/0?ssl_keyfile=/etc/hostname", "ssl_keyfile needs the certificate"),
    ],
)
def test_bad_urls_are_refused_saying_why(url: str, message: str) -> None:
    """A malformed Redis URL is refused when settings are read, with the reason, never with
    the password."""
    with pytest.raises(ValueError, match=message) as raised:
        check_store_url(url)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_an_unreachable_server_stops_the_open_without_its_password(scheme: str) -> None:
    """Opening a Redis that does not answer fails with StoreOpenError naming host, not password."""
    port = free_port()  # nothing listens there
    with pytest.raises(StoreOpenError, match=f"127.0.0.1:{port}") as raised:
        await open_store(f"{scheme}://:hunter2@127.0.0.1:{port}", wait_limit=WAIT_LIMIT)
    assert "hunter2" not in str(raised.value)


async def test_a_dead_server_fails_fast_and_counting_resumes_when_it_returns(
    private_redis: RedisServer,
) -> None:
    """With Redis killed, a batch fails as not counted within the limit; after a restart the
    same store counts on from where Redis was, with no reopen."""
    store = await RedisStore.open(private_redis.url, wait_limit=WAIT_LIMIT)
    try:
        assert await store.apply([Hit(HOME)] * 3) == [1, 2, 3]
        private_redis.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.apply([Hit(HOME)])
        assert time.monotonic() - started < WAIT_LIMIT + SLACK
        with pytest.raises(StoreUnavailable):
            await store.ping()
        private_redis.start()
        assert await store.apply([Hit(HOME)]) == [4]
    finally:
        await store.close()


async def test_a_stalled_server_leaves_the_outcome_unknown_and_may_count_it(
    private_redis: RedisServer,
) -> None:
    """A batch written to a Redis that then stalls fails within the wait limit as "outcome
    unknown" — rightly so: once Redis resumes, that batch turns out to have been counted."""
    store = await RedisStore.open(private_redis.url, wait_limit=WAIT_LIMIT)
    try:
        assert await store.apply([Hit(HOME)]) == [1]
        private_redis.stall()
        started = time.monotonic()
        try:
            with pytest.raises(StoreOutcomeUnknown, match="reply was lost"):
                await store.apply([Hit(HOME)] * 2)
            assert WAIT_LIMIT <= time.monotonic() - started < WAIT_LIMIT + SLACK
        finally:
            private_redis.resume()
        assert await store.value(HOME) == 3
        assert await store.apply([Hit(HOME)]) == [4]
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_a_connection_numbered_past_1023_works(kind: str, new_store_url: NewStoreUrl) -> None:
    """A store whose connections get file descriptors above 1023 — a worker holding a thousand
    event streams — counts and reads: nothing watches them with select(), which cannot."""
    url = new_store_url(kind)
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        store = await open_store(url, wait_limit=WAIT_LIMIT)
        try:
            assert await store.apply([Hit(HOME)]) == [1]
            assert await store.value(HOME) == 1  # the connection is checked before reuse
        finally:
            await store.close()
    finally:
        for descriptor in held:
            os.close(descriptor)


async def counts_a_burst_exactly(store: Store) -> None:
    """4 x IN_FLIGHT concurrent batches of one hit get 1..N once each, and the value is N."""
    results = await asyncio.gather(*(store.apply([Hit(HOME)]) for _ in range(4 * IN_FLIGHT)))
    assert sorted(value for (value,) in results) == list(range(1, 4 * IN_FLIGHT + 1))
    assert await store.value(HOME) == 4 * IN_FLIGHT


async def test_a_fresh_cluster_store_counts_a_burst_exactly(new_store_url: NewStoreUrl) -> None:
    """Right after opening, 4 x IN_FLIGHT concurrent batches on a cluster hand out 1..N once
    each: nothing runs twice and no pool runs out."""
    store = await open_store(new_store_url("redis-cluster"), wait_limit=5.0)
    try:
        await counts_a_burst_exactly(store)
    finally:
        await store.close()


async def test_cluster_counters_spread_over_every_shard_and_all_export(
    new_store_url: NewStoreUrl, cluster_nodes: list[RedisServer]
) -> None:
    """Counters land on every primary of the cluster, and export lists each of them once."""
    cluster_url = new_store_url("redis-cluster")
    counters = [CounterId("spread", f"page{number}") for number in range(60)]
    store = await open_store(cluster_url, wait_limit=5.0)
    try:
        await store.apply([Hit(counter) for counter in counters])
        await store.apply([Hit(counters[0])])
        exported = [record async for record in store.export()]
        with_history = [entry async for entry in store.export_with_history()]
    finally:
        await store.close()
    prefix = cluster_url.partition("prefix=")[2]
    for node in cluster_nodes:
        with node.client() as client:
            assert any(client.scan_iter(match=f"{prefix}:*")), f"nothing on port {node.port}"
    assert [record.counter for record in exported] == sorted(
        counters, key=lambda c: (c.namespace, c.key)
    )
    assert sum(record.value for record in exported) == 61
    assert [entry for entry in with_history if isinstance(entry, CounterRecord)] == exported


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_an_hour_begun_while_the_export_reads_is_exported_with_its_counter(
    new_store_url: NewStoreUrl, kind: str, time_machine: TimeMachineFixture
) -> None:
    """A counter's first hit of a new day, counted by an instance whose clock is a few seconds
    ahead after the export listed the counter's hours, is exported with its hour and its pages:
    the read sees the hours hash name an hour it did not ask about, and reads again."""
    first, second = CounterId("site", "a"), CounterId("site", "b")
    midnight = datetime(2026, 3, 2, tzinfo=UTC)
    time_machine.move_to(midnight - timedelta(seconds=5), tick=False)
    url = new_store_url(kind)
    store = await open_store(url, wait_limit=5.0)
    ahead = await open_store(url, wait_limit=5.0)
    try:
        await store.apply([Hit(first, page="/"), Hit(second, page="/")])
        exported = aiter(store.export_with_history())
        assert isinstance(await anext(exported), CounterRecord)  # the hours are listed
        time_machine.move_to(midnight + timedelta(seconds=1), tick=False)
        await ahead.apply([Hit(second, page="/new")])
        time_machine.move_to(midnight - timedelta(seconds=1), tick=False)
        entries = [entry async for entry in exported if entry.counter == second]
    finally:
        await store.close()
        await ahead.close()
    new_day = int(midnight.timestamp() * 1000)
    record, hours, *days = entries
    assert isinstance(record, CounterRecord)
    assert record.value == 2
    assert hours == HourlyHits(second, ((new_day - HOUR_MS, 1), (new_day, 1)))
    assert days == [
        DailyViews(second, new_day - DAY_MS, (("page", "/", 1),)),
        DailyViews(second, new_day, (("page", "/new", 1),)),
    ]


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_top_counters_reads_counters_chunk_by_chunk(
    new_store_url: NewStoreUrl, kind: str
) -> None:
    """With more counters than one round trip reads, the top counters are still the highest of
    them all, on every shard."""
    counters = [CounterId("many", f"page{number:04}") for number in range(2 * EXPORT_CHUNK + 1)]
    store = await open_store(new_store_url(kind), wait_limit=5.0)
    try:
        await store.apply([Hit(counter) for counter in counters])
        await store.apply([Hit(counters[-1]), Hit(counters[-1]), Hit(counters[7])])
        top = await store.top_counters(3)
    finally:
        await store.close()
    assert top == [(counters[-1], 3), (counters[7], 2), (counters[0], 1)]


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_a_windows_visitors_are_one_set_that_keeps_open_windows_only(
    new_store_url: NewStoreUrl, kind: str, time_machine: TimeMachineFixture
) -> None:
    """The visitors a window holds back are one sorted set per counter: it lives as long as its
    longest window goes on (a shorter window set since does not cut it), a hit drops the
    visitors whose window has ended, and a delete removes it."""
    url = new_store_url(kind)
    location = parse_redis_url(url)
    key = f"{location.prefix}:{{site:home}}:counted"
    client = (redis.RedisCluster if location.cluster else redis.Redis).from_url(location.server_url)
    time_machine.move_to(datetime(2026, 3, 1, 10, tzinfo=UTC), tick=False)
    store = await open_store(url, wait_limit=5.0)
    try:
        await store.create(HOME, value=0, admin_key_hash=None, count_once_per=30)
        await store.apply([Hit(HOME, visitor=visitor) for visitor in range(100)])
        time_machine.shift(timedelta(minutes=20))
        await store.update(HOME, count_once_per=5)
        assert await store.apply([Hit(HOME, visitor=0), Hit(HOME, visitor=100)]) == [100, 101]
        assert client.zcard(key) == 101
        assert 9 * MINUTE_MS < client.pttl(key) <= 10 * MINUTE_MS
        time_machine.shift(timedelta(minutes=11))
        assert await store.apply([Hit(HOME, visitor=0), Hit(HOME, visitor=101)]) == [102, 103]
        assert client.zrange(key, 0, -1) == [b"0", b"101"]
        assert 4 * MINUTE_MS < client.pttl(key) <= 5 * MINUTE_MS
        assert await store.delete(HOME)
        assert not client.exists(key)
    finally:
        await store.close()
        client.close()


async def test_every_script_touches_only_the_keys_it_declares(tmp_path: Path) -> None:
    """On one server, which does not check it, every key that a script of the store reads or
    writes, with or without a window, is among the keys the scripts declared (MONITOR shows
    both), as a cluster needs to move a slot under a script."""
    with redis_server(tmp_path / "redis") as server:
        lines: list[str] = []
        watching = threading.Event()

        def watch() -> None:
            with server.client() as client, client.monitor() as monitor:
                watching.set()
                while "END-OF-TEST" not in (line := monitor.connection.read_response().decode()):
                    lines.append(line)

        watched = asyncio.create_task(asyncio.to_thread(watch))
        assert await asyncio.to_thread(watching.wait, 5)
        store = await open_store(f"{server.url}?prefix=declared", wait_limit=5.0)
        try:
            about = CounterId("site", "about")
            await store.create(HOME, value=0, admin_key_hash="hash", count_once_per=30)
            batch = [
                Hit(HOME, page="/", referrer="https://a.example/", visitor=1),
                Hit(HOME, visitor=2),
                Hit(HOME, bot=True),
                Hit(about, visitor=1),
            ]
            assert await store.apply(batch) == [1, 2, 2, 1]
            assert await store.apply(batch) == [2, 2, 2, 2]
            await store.update(HOME, value=5, count_once_per=10)
            assert await store.add(HOME, amount=1) == 6
            exported = [entry async for entry in store.export_with_history()]
            assert [e.counter for e in exported if isinstance(e, CounterRecord)] == [about, HOME]
            await store.salt(0)
            await store.restore([CounterRecord(about, 1, 1, 2, None, 0, 15)])
            assert await store.delete(HOME)
            with server.client() as client:  # a counter an earlier version deleted
                client.zadd("declared:counter-names", {"site:gone": 0})
            assert [r.counter for r in await store.counters_in("site", after="", limit=5)] == [
                about
            ]
        finally:
            await store.close()
            with server.client() as client:
                client.echo("END-OF-TEST")
            await watched
    declared: set[str] = set()
    touched: set[str] = set()
    for line in lines:
        parts = re.fullmatch(r"[\d.]+ \[\d+ (\S+)\] (.*)", line)
        assert parts is not None, line
        caller, arguments = parts.groups()
        words = re.findall(r'"((?:[^"\\]|\\.)*)"', arguments)
        if caller == "lua":
            touched.update(word for word in words if word.startswith("declared:"))
        elif words[0] == "EVAL":
            declared.update(words[3 : 3 + int(words[2])])
    assert touched <= declared
    assert "declared:{site:home}:counted" in touched
    assert "declared:{site:gone}" in touched


async def test_a_dead_shard_fails_only_its_counters_and_the_cluster_store_recovers(
    tmp_path: Path,
) -> None:
    """With one primary killed, hits on its counters fail fast as not counted while the other
    shards go on counting; once it is back, the same store counts on where it was."""
    with redis_cluster(tmp_path, *DURABLE) as nodes:
        store = await open_store(
            f"redis+cluster://127.0.0.1:{nodes[0].port}", wait_limit=WAIT_LIMIT
        )
        try:
            counters = [CounterId("shard", f"page{number}") for number in range(30)]
            await store.apply([Hit(counter) for counter in counters])
            victim = nodes[2]
            with victim.client() as client:  # keys are named as the store's docstring says
                on_victim = {key.decode() for key in client.scan_iter()}
            doomed, spared = (
                next(c for c in counters if (f"visit-tracker:{{shard:{c.key}}}" in on_victim) == on)
                for on in (True, False)
            )
            victim.kill()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.apply([Hit(doomed)])
            assert time.monotonic() - started < WAIT_LIMIT + SLACK
            assert await store.apply([Hit(spared)]) == [2]
            victim.start()
            wait_until_cluster_ok(nodes)
            assert await store.apply([Hit(doomed)]) == [2]
        finally:
            await store.close()


@pytest.mark.parametrize("window", [0, 60])
async def test_a_cluster_store_counts_exactly_while_the_counters_slot_moves(
    tmp_path: Path, window: int
) -> None:
    """While 20 clients hit a counter (with a window of `window` minutes), each batch two new
    visitors and the one before, its slot moves to each primary in turn, its keys split between
    two of them for a while each time: every hit is counted, once (within a window, each
    visitor once), none fails, since a script the cluster redirected or told to try again has
    not run, and the window still holds every visitor back afterwards."""
    with redis_cluster(tmp_path) as nodes:
        store = await open_store(f"redis+cluster://127.0.0.1:{nodes[0].port}", wait_limit=2.0)
        try:
            await store.create(HOME, value=0, admin_key_hash=None, count_once_per=window)
            await store.apply([Hit(HOME, page="/", referrer="https://a.example/", visitor=0)])
            with nodes[0].client() as client:
                slot = client.cluster("KEYSLOT", "visit-tracker:{site:home}")
            values: list[int] = []
            visitors: list[int] = []
            failures: Counter[str] = Counter()
            moved = asyncio.Event()

            counted_by_move: list[int] = []

            async def reshard() -> None:
                try:
                    for _ in nodes:
                        await asyncio.to_thread(move_slot, nodes, slot, pause=0.02)
                        await asyncio.sleep(0.1)  # hits go on to the new owner
                        counted_by_move.append(len(values))
                finally:
                    moved.set()

            async def visit(number: int) -> None:
                first = 1_000_000 * (number + 1)
                mine: list[int] = []  # the visitors this client counted
                while not moved.is_set():
                    new = [first + len(mine), first + len(mine) + 1]
                    again = mine[-1:] if window else []  # counted, its window goes on
                    batch = [
                        Hit(HOME, page="/", referrer="https://a.example/", visitor=visitor)
                        for visitor in [*new, *again]
                    ]
                    try:
                        counted = await store.apply(batch)
                    except (StoreError, StoreOutcomeUnknown) as error:
                        failures[f"{type(error).__name__}: {error}"] += 1
                        continue
                    values.extend(counted[: len(new)] if window else counted)
                    mine.extend(new)
                    visitors.extend(new)

            await asyncio.gather(reshard(), *(visit(number) for number in range(20)))
            assert failures == {}
            assert 0 < counted_by_move[0] < counted_by_move[1] < counted_by_move[2]
            assert sorted(values) == list(range(2, len(values) + 2))
            assert await store.value(HOME) == len(values) + 1
            if window:
                held_back = await store.apply([Hit(HOME, visitor=v) for v in visitors])
                assert set(held_back) == {len(values) + 1}
        finally:
            await store.close()


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis that speaks TLS only, with a certificate from an authority of its own."""
    authority = certificate_authority(tmp_path / "authority")
    tls = ServerTls(authority.certificate, authority.issue(tmp_path / "server"))
    with redis_server(tmp_path / "redis", tls=tls) as server:
        yield server


async def test_a_store_over_tls_counts_a_burst_exactly(tls_redis: RedisServer) -> None:
    """Through `rediss://` naming the server's authority and a client certificate, concurrent
    batches on a TLS-only Redis hand out 1..N once each."""
    store = await open_store(f"{tls_redis.url}&prefix=tls", wait_limit=5.0)
    try:
        await counts_a_burst_exactly(store)
    finally:
        await store.close()
    with tls_redis.client() as client:
        assert client.hget("tls:{site:home}", "value") == str(4 * IN_FLIGHT).encode()


async def test_a_cluster_store_over_tls_counts_a_burst_exactly(tmp_path: Path) -> None:
    """Through `rediss+cluster://`, on a cluster whose nodes speak TLS only (to clients and to
    each other), concurrent batches hand out 1..N once each."""
    authority = certificate_authority(tmp_path / "authority")
    tls = ServerTls(authority.certificate, authority.issue(tmp_path / "server"))
    with redis_cluster(tmp_path / "cluster", tls=tls) as nodes:
        url = f"rediss+cluster://127.0.0.1:{nodes[0].port}?{tls.url_options()}&prefix=tls"
        store = await open_store(url, wait_limit=5.0)
        try:
            await counts_a_burst_exactly(store)
        finally:
            await store.close()


async def test_a_server_certificate_from_another_authority_is_refused(
    tls_redis: RedisServer, tmp_path: Path
) -> None:
    """A store trusting another authority than the one that signed the server's certificate
    refuses to open, saying the certificate failed verification, and writes nothing."""
    assert tls_redis.tls is not None
    stranger = certificate_authority(tmp_path / "stranger")
    url = tls_redis.url.replace(
        quote(str(tls_redis.tls.authority), safe=""), quote(str(stranger.certificate), safe="")
    )
    assert url != tls_redis.url
    with pytest.raises(StoreOpenError, match="certificate verify failed"):
        await open_store(url, wait_limit=5.0)
    with tls_redis.client() as client:
        assert client.dbsize() == 0


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_an_import_that_fails_part_way_says_so(kind: str, new_store_url: NewStoreUrl) -> None:
    """Redis imports a chunk of counters at a time: a failure after the first chunk was written
    is `ImportIncomplete` (the CLI then says to import again), and one before is the failure
    itself, with nothing written."""

    def records_failing_at(failing: int) -> Iterator[CounterRecord]:
        for number in range(failing):
            yield CounterRecord(CounterId("import", f"c{number:04d}"), number, 1, 2)
        raise StoreUnavailable("the export file's disk went away")

    store = await open_store(new_store_url(kind), wait_limit=5.0)
    try:
        with pytest.raises(StoreUnavailable):
            await store.restore(records_failing_at(EXPORT_CHUNK - 1))
        assert await store.counters_in("import", after="", limit=10) == []
        with pytest.raises(ImportIncomplete, match="part way"):
            await store.restore(records_failing_at(EXPORT_CHUNK + 10))
        written = await store.counters_in("import", after="", limit=2 * EXPORT_CHUNK)
        assert len(written) == EXPORT_CHUNK
    finally:
        await store.close()
