"""How the Redis stores find a namespace's counters: a page reads only its own counters, and the
index set of earlier versions becomes the sorted set, during an upgrade too."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import pytest
import redis

from tests.conftest import NewStoreUrl
from tests.redis_servers import RedisServer, redis_server, shared_redis
from visit_tracker.stores import CounterId, Hit, open_store
from visit_tracker.stores._redis_index import MOVED_AT_ONCE

pytestmark = pytest.mark.anyio

KEYS = sorted(
    [f"k{number:03}" for number in range(120)]
    + ["-", ".", "0", "9", "A", "Z", "_", "a", "z", "a-b", "a.b", "a_b", "aB", "a0"]
)
"""A namespace's keys in byte order, every character a name may hold among them."""

NEIGHBOURS = ["sit", "site-a", "site.", "site_", "sitea", "sites", "Site"]
"""Namespaces whose tags sort right before or after those of `site`."""


@contextmanager
def counted_servers(
    kind: str, tmp_path: Path, new_store_url: NewStoreUrl, request: pytest.FixtureRequest
) -> Iterator[tuple[str, list[RedisServer]]]:
    """A store URL of that kind and the servers it uses, whose command counts no other test
    changes meanwhile: a private server, or the session's cluster."""
    if kind == "redis-cluster":
        yield new_store_url(kind), request.getfixturevalue("cluster_nodes")
        return
    with redis_server(tmp_path / "redis") as server:
        yield f"{server.url}?prefix=listed", [server]


def calls(servers: list[RedisServer]) -> dict[str, int]:
    """The commands the servers ran since their counts were last reset, summed by name."""
    total: dict[str, int] = {}
    for server in servers:
        with server.client() as client:
            for stat, numbers in client.info("commandstats").items():
                name = stat.removeprefix("cmdstat_")
                total[name] = total.get(name, 0) + numbers["calls"]
            client.config_resetstat()
    return total


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
async def test_a_namespace_pages_in_byte_order_reading_only_each_pages_counters(
    kind: str, tmp_path: Path, new_store_url: NewStoreUrl, request: pytest.FixtureRequest
) -> None:
    """Among thousands of counters of other namespaces, a namespace lists page by page in byte
    order of its keys, without its deleted counters, and each page reads no more counters than
    it lists (on one server, from the index: no scan)."""
    others = [CounterId(f"other{n % 10}", f"k{n}") for n in range(3000)]
    others += [CounterId(namespace, key) for namespace in NEIGHBOURS for key in ("a", "k050")]
    deleted = {"a", "k007", "k100"}
    with counted_servers(kind, tmp_path, new_store_url, request) as (url, servers):
        store = await open_store(url, wait_limit=5.0)
        try:
            await store.apply([Hit(counter) for counter in others])
            await store.apply([Hit(CounterId("site", key)) for key in reversed(KEYS)])
            for key in deleted:
                assert await store.delete(CounterId("site", key))
            listed: list[str] = []
            after = ""
            calls(servers)
            while page := await store.counters_in("site", after=after, limit=25):
                ran = calls(servers)
                assert ran.get("hmget", 0) <= 25, ran
                if kind == "redis":
                    assert ran.get("scan", 0) + ran.get("sscan", 0) == 0, ran
                listed.extend(record.counter.key for record in page)
                after = page[-1].counter.key
        finally:
            await store.close()
    assert listed == [key for key in KEYS if key not in deleted]


@contextmanager
def old_layout(prefix: str, namespaces: dict[str, int]) -> Iterator[redis.Redis]:
    """A client of the shared Redis, holding under `prefix` counters as versions with the
    index set wrote them: for each namespace, that many counters with value 1."""
    with redis.Redis.from_url(shared_redis(), socket_timeout=10) as client:
        try:
            with client.pipeline(transaction=False) as pipe:
                for namespace, count in namespaces.items():
                    for number in range(count):
                        old_create(pipe, prefix, CounterId(namespace, f"k{number:05}"))
                pipe.execute()
            yield client
        finally:
            for key in client.scan_iter(match=f"{prefix}:*", count=1000):
                client.delete(key)


def old_create(client: "redis.Redis | redis.client.Pipeline", prefix: str, c: CounterId) -> None:
    """Make a counter as a version with the index set did: its hash, and its tag in the set."""
    tag = f"{c.namespace}:{c.key}"
    client.hset(f"{prefix}:{{{tag}}}", mapping={"value": 1, "created_at": 1, "updated_at": 1})
    client.sadd(f"{prefix}:counters", tag)


async def test_the_old_index_set_becomes_the_sorted_set_once_while_old_instances_write() -> None:
    """Stores opened at once on the index set of an earlier version move all its tags into the
    sorted set, and a listing then shows what an instance of that version creates
    meanwhile and skips, keeping its page full, what it deletes."""
    prefix = f"test-{uuid4().hex}"
    url = f"{shared_redis()}?prefix={prefix}"
    with old_layout(prefix, {"site": 30, "other": MOVED_AT_ONCE + 1}) as client:
        stores = await asyncio.gather(*(open_store(url, wait_limit=10.0) for _ in range(3)))
        try:
            assert not client.exists(f"{prefix}:counters")
            assert client.zcard(f"{prefix}:counter-names") == MOVED_AT_ONCE + 31
            page = await stores[0].counters_in("site", after="", limit=10)
            assert [r.counter.key for r in page] == [f"k{n:05}" for n in range(10)]
            old_create(client, prefix, CounterId("site", "k00003a"))
            client.delete(f"{prefix}:{{site:k00001}}")  # an old instance deletes k00001
            client.srem(f"{prefix}:counters", "site:k00001")
            page = await stores[1].counters_in("site", after="", limit=10)
            keys = ["k00000", "k00002", "k00003", "k00003a", *(f"k{n:05}" for n in range(4, 10))]
            assert [r.counter.key for r in page] == keys
            assert not client.zscore(f"{prefix}:counter-names", "site:k00001")
            exported = [record async for record in stores[2].export()]
            assert len(exported) == MOVED_AT_ONCE + 31
        finally:
            for store in stores:
                await store.close()
