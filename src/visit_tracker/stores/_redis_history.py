"""A Redis store's history as export reads it and restore writes it (see `redis.py`): part of
`RedisStore`, kept apart for size, that reads and writes through the store's keys and round
trips."""

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

from redis.typing import EncodableT

from visit_tracker.errors import ImportIncomplete
from visit_tracker.stores._redis_wire import Command, ConnectionSource, check
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
from visit_tracker.stores.redis import EXPORT_CHUNK, KINDS, RedisStore, _field_values, _tag
from visit_tracker.stores.sketch import EXACT_BELOW, HISTORY_CHUNK, restored_hll

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


async def history(store: RedisStore, counter: CounterId) -> AsyncIterator[HistoryEntry]:
    """The counter's whole history, as `Store.history` gives it."""
    await store._ready()
    node = store._topology.node_for(store._key(counter))
    (reply,) = await store._send(
        node, [("HGETALL", store._hours_key(counter))], deadline=store._deadline()
    )
    hours = sorted((int(h), int(n)) for h, n in _field_values(check(reply, source=node)))
    for first in range(0, len(hours), HISTORY_CHUNK):
        yield HourlyHits(counter, tuple(hours[first : first + HISTORY_CHUNK]))
    days = sorted({day_of(hour) for hour, _ in hours})
    buckets = [(HOUR_MS, hour) for hour, _ in hours] + [(DAY_MS, day) for day in days]
    for first in range(0, len(days), EXPORT_CHUNK):
        chunk = days[first : first + EXPORT_CHUNK]
        commands: list[Command] = [
            ("HGETALL", store._day_key(counter, kind, day)) for day in chunk for kind in KINDS
        ]
        replies = iter(await store._send(node, commands, deadline=store._deadline()))
        for day in chunk:
            views = [
                (kind, value.decode(), int(hits))
                for kind in KINDS
                for value, hits in sorted(_field_values(check(next(replies), source=node)))
            ]
            if views:
                yield DailyViews(counter, day, tuple(views))
    for first in range(0, len(buckets), EXPORT_CHUNK):
        for bucket in await _buckets(store, node, counter, buckets[first : first + EXPORT_CHUNK]):
            yield bucket


async def _buckets(
    store: RedisStore,
    node: ConnectionSource,
    counter: CounterId,
    buckets: Sequence[tuple[int, int]],
) -> list[VisitorBucket]:
    """The visitor buckets of a counter that exist among these (span, start)."""
    members = await store._send(
        node,
        [("SMEMBERS", store._ids_key(counter, *bucket)) for bucket in buckets],
        deadline=store._deadline(),
    )
    kept = [sorted(int(v) for v in check(reply, source=node)) for reply in members]
    large = [bucket for bucket, ids in zip(buckets, kept, strict=True) if len(ids) >= EXACT_BELOW]
    commands: list[Command] = []
    for bucket in large:  # counted first, so that the string read holds its count
        key = store._sketch_key(counter, *bucket)
        commands.extend((("PFCOUNT", key), ("GET", key)))
    replies = iter(await store._send(node, commands, deadline=store._deadline()) if large else [])
    sketches = {}
    for bucket in large:
        count = int(check(next(replies), source=node))
        sketches[bucket] = VisitorSketch("redis", bytes(check(next(replies), source=node)), count)
    return [
        VisitorBucket(counter, span, start, tuple(ids), sketches.get((span, start)))
        for (span, start), ids in zip(buckets, kept, strict=True)
        if ids
    ]


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
