"""How a Redis store finds its counters (see `redis.py`): part of `RedisStore`, kept apart for
size. On one server the index is the sorted set `{prefix}:counter-names` of every counter's tag
`namespace:key`, each scored 0 so that Redis keeps them in name order: a namespace's page is a
ZRANGEBYLEX of `limit` tags after a key, then those counters' hashes, O(log n + limit). On a
cluster, a scan of each primary's keys.

Versions before it kept the tags in the set `{prefix}:counters`. The sorted set has a new name
so that an instance of such a version, still running during an upgrade, can go on adding to
the set: its hits would fail on a key of another type. A store moves the set's tags into the
sorted set when it opens, and again before each read of the index, 10,000 tags a script
so that Redis is never held for long; a tag is always in one of the two, so instances
opening at once only share the work. A read of the index thus lists the counters that old
instances create. Counters that they delete leave their tags behind in the sorted set: a
listing skips the tags of counters that do not exist and removes them from the index. The old
instances themselves read only what their own hits and creates put back into the set since the
last move: their listings, exports, top counters and purges miss counters until they are
upgraded, so export with the new version.

A cluster has no index. A key in one slot cannot be written by the scripts of counters in
every other slot, and an index beside them, written after each hit, could miss a counter that
the hit created whenever that second write failed. Listing a namespace scans every key of
every primary for the namespace's hashes, sorts the tags found and reads only the page's
counters: O(n) for the scan, which Redis serves 1,000 keys at a time between other commands.
"""

from collections import defaultdict
from collections.abc import Sequence
from urllib.parse import quote

from redis.typing import EncodableT

from visit_tracker.stores._redis_wire import Command, ConnectionSource, Reply, check
from visit_tracker.stores.base import CounterId, CounterRecord
from visit_tracker.stores.redis import FIELDS, RedisStore, _counter_of, _record, _tag

SCAN_COUNT = 1000
"""Keys (tags) read per round trip while scanning a node (the index)."""

MOVED_AT_ONCE = 10_000
"""Tags one script moves from the old index set into the sorted set."""

MOVE = """
-- KEYS: the index set of earlier versions, then the index sorted set.
-- ARGV: the most tags to move. Moves that many tags (or all) from the set into the sorted set,
-- scored 0 (name order); replies how many. The set is gone once it is empty.
local tags = redis.call('SPOP', KEYS[1], ARGV[1])
for first = 1, #tags, 1000 do  -- unpack takes a few thousand values at most
    local scored = {}
    for i = first, math.min(first + 999, #tags) do
        scored[#scored + 1] = 0
        scored[#scored + 1] = tags[i]
    end
    redis.call('ZADD', KEYS[2], unpack(scored))
end
return #tags
"""

PRUNE = """
-- KEYS: the index sorted set, then counters' hashes. ARGV: those counters' tags.
-- Removes from the index the tags of the counters that do not exist.
for i = 2, #KEYS do
    if redis.call('EXISTS', KEYS[i]) == 0 then redis.call('ZREM', KEYS[1], ARGV[i - 1]) end
end
return 0
"""


def _move_command(store: RedisStore) -> Command:
    return ("EVAL", MOVE, 2, store._old_index, store._index, MOVED_AT_ONCE)


async def move_old_index(store: RedisStore) -> None:
    """Move every tag of the old index set into the sorted set (one server only)."""
    node = store._topology.node_for(store._index)
    while True:
        (reply,) = await store._send(node, [_move_command(store)], deadline=store._deadline())
        if check(reply, source=node) < MOVED_AT_ONCE:
            return


async def _index_read(store: RedisStore, node: ConnectionSource, command: Command) -> Reply:
    """The reply of a read of the index, once the old set's tags are in it: the move is sent in
    the same round trip, and has nothing to do unless an instance of an earlier version runs."""
    moved, reply = await store._send(
        node, [_move_command(store), command], deadline=store._deadline()
    )
    if check(moved, source=node) == MOVED_AT_ONCE:
        await move_old_index(store)
        (reply,) = await store._send(node, [command], deadline=store._deadline())
    return check(reply, source=node)


def _tag_range(namespace: str | None, *, after: str = "") -> tuple[str, str]:
    """The ZRANGEBYLEX bounds of a namespace's tags whose keys sort after `after`, or of all.

    A tag is `namespace:key`, each percent-encoded, and valid names have nothing to encode: the
    tags of a namespace sort as their keys do, byte by byte, and `after` is compared as it is.
    """
    if namespace is None:
        return "-", "+"
    encoded = quote(namespace, safe="")
    return f"({encoded}:{after}", f"({encoded};"  # ';' follows ':', which no encoded name holds


async def tags_on(store: RedisStore, node: ConnectionSource, namespace: str | None) -> list[str]:
    """The tags of the counters on one node, of one namespace or of all: from the index on one
    server, from a scan of the node's keys on a cluster."""
    found: list[str] = []
    if store._topology.single:
        lowest, highest = _tag_range(namespace)
        while True:
            command = ("ZRANGEBYLEX", store._index, lowest, highest, "LIMIT", 0, SCAN_COUNT)
            batch = [tag.decode() for tag in await _index_read(store, node, command)]
            found.extend(batch)
            if len(batch) < SCAN_COUNT:
                return found
            lowest = f"({batch[-1]}"
    pattern = "*" if namespace is None else f"{quote(namespace, safe='')}:*"
    match = f"{store._prefix}:{{{pattern}}}"  # an encoded name holds no glob character
    cursor: bytes | int = 0
    while True:
        scan: Command = ("SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT, "TYPE", "hash")
        (reply,) = await store._send(node, [scan], deadline=store._deadline())
        cursor, batch = check(reply, source=node)
        found.extend(key.decode()[len(store._prefix) + 2 : -1] for key in batch)
        if int(cursor) == 0:
            return found


async def counters_in(
    store: RedisStore, namespace: str, *, after: str, limit: int
) -> list[CounterRecord]:
    """Up to `limit` counters of the namespace whose keys sort after `after`, in key order."""
    await store._ready()
    if store._topology.single:
        return await _page_of_index(store, namespace, after=after, limit=limit)
    tags = [
        tag for node in store._topology.primaries() for tag in await tags_on(store, node, namespace)
    ]
    listed = sorted(
        (counter for counter in map(_counter_of, tags) if counter.key > after),
        key=lambda counter: counter.key,
    )
    records: list[CounterRecord] = []
    start = 0
    while start < len(listed) and len(records) < limit:  # more if some were deleted since
        page = listed[start : start + limit - len(records)]
        start += len(page)
        records.extend(record for record in await _records(store, page) if record)
    return records


async def _page_of_index(
    store: RedisStore, namespace: str, *, after: str, limit: int
) -> list[CounterRecord]:
    """`counters_in` on one server: from the index, skipping (and removing) the tags of
    counters that do not exist."""
    node = store._topology.node_for(store._index)
    lowest, highest = _tag_range(namespace, after=after)
    records: list[CounterRecord] = []
    while len(records) < limit:
        wanted = limit - len(records)
        command = ("ZRANGEBYLEX", store._index, lowest, highest, "LIMIT", 0, wanted)
        tags = [tag.decode() for tag in await _index_read(store, node, command)]
        page = list(map(_counter_of, tags))
        found = await _records(store, page)
        records.extend(record for record in found if record)
        gone = [counter for counter, record in zip(page, found, strict=True) if record is None]
        if gone:
            await _prune(store, node, gone)
        if len(tags) < wanted:
            break
        lowest = f"({tags[-1]}"
    return records


async def _records(store: RedisStore, counters: Sequence[CounterId]) -> list[CounterRecord | None]:
    """These counters' records, in their order; None for those that do not exist."""
    on: dict[ConnectionSource, list[int]] = defaultdict(list)
    for at, counter in enumerate(counters):
        on[store._topology.node_for(store._key(counter))].append(at)
    records: list[CounterRecord | None] = [None] * len(counters)
    for node, places in on.items():
        commands: list[Command] = [("HMGET", store._key(counters[at]), *FIELDS) for at in places]
        replies = await store._send(node, commands, deadline=store._deadline())
        for at, reply in zip(places, replies, strict=True):
            records[at] = _record(counters[at], check(reply, source=node))
    return records


async def _prune(store: RedisStore, node: ConnectionSource, counters: Sequence[CounterId]) -> None:
    """Remove from the index the tags of these counters if they still do not exist."""
    arguments: list[EncodableT] = [_tag(counter) for counter in counters]
    keys = [store._index, *(store._key(counter) for counter in counters)]
    command: Command = ("EVAL", PRUNE, len(keys), *keys, *arguments)
    (reply,) = await store._send(node, [command], deadline=store._deadline(), writes=True)
    check(reply, source=node)
