"""A Redis store's history as export reads it and restore writes it (see `redis.py`): part of
`RedisStore`, kept apart for size, that reads and writes through the store's keys and round
trips."""

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence

from redis.typing import EncodableT

from visit_tracker.errors import ImportIncomplete, StoreUnavailable
from visit_tracker.stores._redis_wire import Command, ConnectionSource, Reply, check
from visit_tracker.stores.base import (
    DAY_MS,
    HOUR_MS,
    CounterId,
    CounterRecord,
    DailyViews,
    HistoryEntry,
    HourlyHits,
    RestoreEntry,
    ViewKind,
    VisitorBucket,
    VisitorSketch,
    day_of,
    hour_of,
    now_ms,
)
from visit_tracker.stores.redis import (
    EXPORT_CHUNK,
    FIELDS,
    KINDS,
    RedisStore,
    _counter_of,
    _field_values,
    _record,
    _tag,
)
from visit_tracker.stores.sketch import EXACT_BELOW, HISTORY_CHUNK, restored_hll

EXPORT = """
-- KEYS: the counter's hash, its hours hash, the page and referrer hashes of each day asked
-- about, then for each bucket asked about (the hours', then the days') its visitors'
-- HyperLogLog and id set.
-- ARGV: the most ids a set keeps, the number of days asked about, then the hash's fields.
-- Replies the counter's fields, its hours hash, each day's page and referrer hashes, and each
-- bucket's ids, followed for a full set by the HyperLogLog's count and string (counted first,
-- so that the string holds its count).
local exact_below, days = tonumber(ARGV[1]), tonumber(ARGV[2])
local reply = {redis.call('HMGET', KEYS[1], unpack(ARGV, 3)), redis.call('HGETALL', KEYS[2])}
for i = 3, 2 + 2 * days do reply[#reply + 1] = redis.call('HGETALL', KEYS[i]) end
for i = 3 + 2 * days, #KEYS, 2 do
    local ids = redis.call('SMEMBERS', KEYS[i + 1])
    if #ids >= exact_below then
        reply[#reply + 1] = {ids, redis.call('PFCOUNT', KEYS[i]), redis.call('GET', KEYS[i])}
    else
        reply[#reply + 1] = {ids}
    end
end
return reply
"""

EXPORT_ATTEMPTS = 5
"""Runs of EXPORT for one counter before giving up: each more needs the first hit of another
hour to come between two of them."""

RESTORE = """
-- KEYS: the counters' hashes, then (one server only) the index sorted set.
-- ARGV: for each counter its value, created_at, updated_at, tag, admin key hash ('' if none),
-- bot hits and window.
local count = #ARGV / 7
local index = KEYS[count + 1]
for i = 1, count do
    local at = 7 * (i - 1)
    redis.call('HSET', KEYS[i], 'value', ARGV[at + 1], 'created_at', ARGV[at + 2],
        'updated_at', ARGV[at + 3], 'bot_hits', ARGV[at + 6], 'count_once_per', ARGV[at + 7])
    if ARGV[at + 5] == '' then
        redis.call('HDEL', KEYS[i], 'admin_key_hash')
    else
        redis.call('HSET', KEYS[i], 'admin_key_hash', ARGV[at + 5])
    end
    if index then redis.call('ZADD', index, 0, ARGV[at + 4]) end
end
return count
"""


def _owner(record: CounterRecord) -> str:
    return record.admin_key_hash or ""


async def export(store: RedisStore) -> AsyncIterator[RestoreEntry]:
    """Every counter with its history, as `Store.export_with_history` gives them: the counters
    listed first, then each read whole by one script, a chunk of them listing their hours
    first (one round trip) so that the script can name every key it reads. One counter's
    history is one reply, held whole: each sketched hour or day in it carries its
    HyperLogLog, up to 12 KB."""
    await store._ready()
    counters: list[CounterId] = []
    for node in store._topology.primaries():
        counters.extend(map(_counter_of, await store._tags_on(node)))
    counters.sort()
    for first in range(0, len(counters), EXPORT_CHUNK):
        chunk = counters[first : first + EXPORT_CHUNK]
        listed = await _listed_hours(store, chunk)
        for counter in chunk:
            for entry in await _counter_with_history(store, counter, listed[counter]):
                yield entry


async def _listed_hours(
    store: RedisStore, counters: Sequence[CounterId]
) -> dict[CounterId, list[int]]:
    """The hours each counter's hours hash lists now, which its history most likely keeps still
    when it is read."""
    on: dict[ConnectionSource, list[CounterId]] = defaultdict(list)
    for counter in counters:
        on[store._topology.node_for(store._key(counter))].append(counter)
    listed: dict[CounterId, list[int]] = {}
    for node, those in on.items():
        async for answers in store._ask_each(
            node, those, lambda counter: ("HKEYS", store._hours_key(counter))
        ):
            listed.update((counter, [int(hour) for hour in hours]) for counter, hours in answers)
    return listed


async def _counter_with_history(
    store: RedisStore, counter: CounterId, hours: Sequence[int]
) -> list[RestoreEntry]:
    """The counter's record and history, read at one moment by EXPORT (nothing if the counter
    is gone). The script reads the keys of the hours it is given, and of this hour: when the
    hours hash lists another (the first hit of an hour came meanwhile), it is run again with
    the hours the hash listed."""
    asked = sorted({*hours, hour_of(now_ms())})
    for _ in range(EXPORT_ATTEMPTS):
        days = sorted({day_of(hour) for hour in asked})
        buckets = [(HOUR_MS, hour) for hour in asked] + [(DAY_MS, day) for day in days]
        keys = [
            store._key(counter),
            store._hours_key(counter),
            *(store._day_key(counter, kind, day) for day in days for kind in KINDS),
            *(
                key
                for bucket in buckets
                for key in (store._sketch_key(counter, *bucket), store._ids_key(counter, *bucket))
            ),
        ]
        node = store._topology.node_for(keys[0])
        command: Command = ("EVAL", EXPORT, len(keys), *keys, EXACT_BELOW, len(days), *FIELDS)
        (reply,) = await store._send(node, [command], deadline=store._deadline())
        fields, hours_hash, *rest = check(reply, source=node)
        found = sorted((int(hour), int(hits)) for hour, hits in _field_values(hours_hash))
        if {hour for hour, _ in found} <= set(asked):
            record = _record(counter, fields)
            if record is None:  # deleted since it was listed
                return []
            views, visitors = rest[: len(KINDS) * len(days)], rest[len(KINDS) * len(days) :]
            return [
                record,
                *_history(
                    counter,
                    found,
                    dict(zip(days, _by_day(views), strict=True)),
                    dict(zip(buckets, visitors, strict=True)),
                ),
            ]
        asked = sorted({*asked, *(hour for hour, _ in found)})
    raise StoreUnavailable(
        f"Redis {node.name}: the history of {counter.namespace}/{counter.key} gained an hour "
        f"each of the {EXPORT_ATTEMPTS} times it was read"
    )


def _by_day(replies: Sequence[Reply]) -> Iterator[list[tuple[ViewKind, str, int]]]:
    """Each day's pages and referrers, from the replies of its page and referrer hashes."""
    for first in range(0, len(replies), len(KINDS)):
        yield [
            (kind, value.decode(), int(hits))
            for kind, reply in zip(KINDS, replies[first : first + len(KINDS)], strict=True)
            for value, hits in sorted(_field_values(reply))
        ]


def _history(
    counter: CounterId,
    hours: Sequence[tuple[int, int]],
    views: Mapping[int, list[tuple[ViewKind, str, int]]],
    visitors: Mapping[tuple[int, int], Reply],
) -> Iterator[HistoryEntry]:
    """The history EXPORT read: the counter's hours, a chunk at a time, the pages and referrers
    of their days, and the visitor buckets of those hours and days (each bucket's ids, then
    for a full one its HyperLogLog's count and string)."""
    for first in range(0, len(hours), HISTORY_CHUNK):
        yield HourlyHits(counter, tuple(hours[first : first + HISTORY_CHUNK]))
    days = sorted({day_of(hour) for hour, _ in hours})
    for day in days:
        if views[day]:
            yield DailyViews(counter, day, tuple(views[day]))
    for bucket in [(HOUR_MS, hour) for hour, _ in hours] + [(DAY_MS, day) for day in days]:
        ids, *counted = visitors[bucket]
        if not ids:
            continue
        sketch = None
        if counted:
            count, data = counted
            sketch = VisitorSketch("redis", bytes(data), int(count))
        yield VisitorBucket(counter, *bucket, tuple(sorted(int(v) for v in ids)), sketch)


async def restore(
    store: RedisStore, entries: Iterable[RestoreEntry], *, replace_history: bool
) -> int:
    """Restore the entries as `Store.restore` does, a chunk at a time: once it has begun
    writing, a failure is `ImportIncomplete`."""
    converted = 0
    records: list[CounterRecord] = []
    history: dict[ConnectionSource, list[Command]] = defaultdict(list)
    pending = 0
    await store._ready()
    begun = False
    try:
        for entry in entries:
            if isinstance(entry, CounterRecord):
                records.append(entry)
            else:
                commands, approximate = _restore_commands(store, entry)
                converted += approximate
                history[store._topology.node_for(store._key(entry.counter))].extend(commands)
                pending += len(commands)
            if len(records) >= EXPORT_CHUNK or pending >= EXPORT_CHUNK:
                begun = True
                await _restore_chunk(store, records, history, replace_history=replace_history)
                records, history, pending = [], defaultdict(list), 0
        begun = True
        await _restore_chunk(store, records, history, replace_history=replace_history)
    except Exception as error:
        if begun:
            raise ImportIncomplete(f"the store failed part way through: {error}") from error
        raise
    return converted


async def _restore_chunk(
    store: RedisStore,
    records: Sequence[CounterRecord],
    history: Mapping[ConnectionSource, Sequence[Command]],
    *,
    replace_history: bool,
) -> None:
    """Restore some counters' records, their history before first dropped if
    `replace_history`, then write some history commands."""
    if records and replace_history:
        await _drop_history(store, [record.counter for record in records])
    if records:
        work = store._plan(
            RESTORE,
            (
                (
                    r.counter,
                    (store._key(r.counter),),
                    (
                        r.value,
                        r.created_at,
                        r.updated_at,
                        _tag(r.counter),
                        _owner(r),
                        r.bot_hits,
                        r.count_once_per,
                    ),
                )
                for r in records
            ),
            prefix_args=(),
        )
        await store._run(work, deadline=store._deadline())
    for node, commands in history.items():
        for reply in await store._send(node, commands, deadline=store._deadline(), writes=True):
            check(reply, source=node)


async def _drop_history(store: RedisStore, counters: Sequence[CounterId]) -> None:
    """Delete these counters' history, as delete does."""
    on: dict[ConnectionSource, list[CounterId]] = defaultdict(list)
    for counter in counters:
        on[store._topology.node_for(store._key(counter))].append(counter)
    today = hour_of(now_ms())
    for node, listed in on.items():
        async for answers in store._ask_each(
            node, listed, lambda counter: ("HKEYS", store._hours_key(counter))
        ):
            commands: list[Command] = [
                ("DEL", *store._history_keys(counter, [*map(int, hours), today]))
                for counter, hours in answers
            ]
            for reply in await store._send(node, commands, deadline=store._deadline(), writes=True):
                check(reply, source=node)


def _restore_commands(store: RedisStore, entry: HistoryEntry) -> tuple[list[Command], bool]:
    """The commands that write a history entry, and whether they convert a sketch."""
    counter = entry.counter
    if isinstance(entry, HourlyHits):
        pairs = [number for pair in entry.hours for number in pair]
        return [("HSET", store._hours_key(counter), *pairs)], False
    if isinstance(entry, DailyViews):
        views: dict[ViewKind, list[EncodableT]] = defaultdict(list)
        for kind, value, hits in entry.views:
            views[kind].extend((value, hits))
        return [
            ("HSET", store._day_key(counter, kind, entry.day), *pairs)
            for kind, pairs in views.items()
        ], False
    commands: list[Command] = []
    if entry.span == HOUR_MS:  # listed in the hours, where a purge finds it
        commands.append(("HINCRBY", store._hours_key(counter), entry.start, 0))
    if entry.ids:
        commands.append(("SADD", store._ids_key(counter, entry.span, entry.start), *entry.ids))
    sketch_key = store._sketch_key(counter, entry.span, entry.start)
    if entry.sketch is None:
        commands.append(("PFADD", sketch_key, *entry.ids))
        return commands, False
    data, converted = restored_hll(entry.sketch)
    commands.append(("SET", sketch_key, data))
    return commands, converted
