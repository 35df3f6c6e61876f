"""Counters in Redis or Redis Cluster: many instances behind a load balancer, one exact count.

URLs: `redis://[user:password@]host:6379/0` for one server (`rediss://` for TLS), and
`redis+cluster://[user:password@]host:7000` for a cluster, found from any one of its nodes
(`rediss+cluster://` for TLS). `?prefix=NAME` starts every key with `NAME:` (default
`visit-tracker`), so several stores can share one Redis. Over TLS the server's certificate is
checked against the system's authorities and the one in the file `?ssl_ca_certs=PATH`, and must
name the host; `?ssl_certfile=PATH&ssl_keyfile=PATH` give a client certificate, which Redis asks
for unless it runs with `tls-auth-clients no`.

Layout: a counter is one hash, `{prefix}:{namespace:key}`, holding `value`, `created_at` and
`updated_at` (Unix ms), `admin_key_hash` once it is owned, `bot_hits` once a bot hit it and
`count_once_per` once a window is set; the braces are a hash tag, so on a cluster each counter
lives whole on one shard and counters spread over all of them. The visitors counted within a
counter's window are the sorted set `{prefix}:{namespace:key}:counted`, each visitor id scored
with when its window ends (the instances' clock, as every time here): one key the hit script
declares, as a cluster requires of every key a script touches, whatever the visitors. Each hit
on a windowed counter first removes the visitors whose window has ended, so the set holds only
the visitors of the current window; and the set expires when the last window in it ends
(Redis's clock), so neither a purge nor a counter no longer hit need look for it. A delete
deletes it with the counter, so that a counter made again under the same name counts every
visitor afresh, as on the other stores. On one server the sorted set `{prefix}:counter-names`
lists every counter in name order, so that a namespace's page is read in O(log n + its size)
and export needs no key scan; a cluster has no place for such a set, and listings and export
scan each primary for the prefix instead (`_redis_index.py`).

History lives beside each counter, under the same hash tag, so one script updates both:
`{prefix}:{namespace:key}:hours`, a hash of hits per hour start (Unix ms), and for each UTC day
with pages or referrers `{prefix}:{namespace:key}:page:{day}` and `…:referrer:{day}`, hashes of
hits per page or referrer. A day's breakdown is one key so that a read of 30 days fetches 30
small hashes, not a counter's whole history. The hours hash is also the list of the days the
counter has history for: a purge reads its fields, deletes the old hours and the keys of their
days, and needs neither a key scan nor an expiry (which would follow Redis's clock, and leave a
deleted counter's history behind until it fired). Export reads a counter's record and whole
history in one script, so at one moment, and restore writes them, in `_redis_history.py`.

A batch is one Lua script per group of counters one script may touch: on one server the whole
batch, so a single round trip applies it atomically; on a cluster one script per counter, the
scripts for each node sent in one write and the nodes in parallel. Each counter stays exact; a
batch across shards is atomic per counter only, and so is a restore (which may be run again).

Failures: every operation finishes within the store wait limit. Nothing is retried, since
running a hit twice would count it twice — except what a cluster answered without running it
while it moves a slot between shards (MOVED, ASK, TRYAGAIN): that is sent again where the keys
now are until the move is over, so hits on a moving counter wait a few milliseconds. When a
request never reached Redis (down, refused, no connection in time) the visit was not counted:
`StoreUnavailable`, a 503 that says so. When the request was written but its reply was lost
(Redis died or stalled mid-request), Redis may or may not have counted it:
`StoreOutcomeUnknown`, a 504 saying the visit may have been counted. So does a cluster batch
that some shards applied and others did not. Connections are made afresh as needed, so the store
recovers by itself when Redis is back.

Durability is Redis's: an acknowledged visit is in Redis's memory, and survives a crash of
Redis only with `appendonly yes` (`appendfsync always` keeps every acknowledged visit;
`everysec` may lose the last second). Counters are never given an expiry, but a Redis whose
`maxmemory-policy` evicts keys will drop them when full: use `noeviction`.
"""

import asyncio
import re
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from redis.asyncio.connection import Connection, parse_url
from redis.typing import EncodableT

from visit_tracker.errors import StoreError, StoreOpenError, StoreOutcomeUnknown, StoreUnavailable
from visit_tracker.stores._redis_topology import Cluster, OneServer, Topology, follow_slot_moves
from visit_tracker.stores._redis_wire import (
    Command,
    ConnectionSource,
    Reply,
    check,
    round_trip,
)
from visit_tracker.stores.base import (
    DAY_MS,
    HOUR_MS,
    SPAN_NAMES,
    CounterId,
    CounterRecord,
    Hit,
    RestoreEntry,
    ViewKind,
    day_of,
    highest,
    hour_of,
    new_salt,
    now_ms,
    number_hits,
    once_per_window,
    ranked,
    tally,
    tally_bots,
    tally_views,
    tally_visitors,
    visitor_buckets,
    visitor_span,
    window_pairs,
)
from visit_tracker.stores.sketch import EXACT_BELOW

DEFAULT_PREFIX = "visit-tracker"
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
"""Files redis-py reads for TLS, passed on to it in the URL."""
PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
"""No glob characters: the prefix is also a SCAN pattern."""

IN_FLIGHT = 64
"""Round trips one process may have under way at once. Each cluster node's pool holds one more
connection (for reading the slot map), since redis-py's cluster pool fails instead of waiting
when it runs out."""

EXPORT_CHUNK = 500
"""Counters read per round trip when exporting."""

DIRECT_HOURS = 10_000
DIRECT_DAYS = 1_000
"""Ranges up to this many hours (days) are read bucket by bucket; wider ones from the buckets
the counter has, which the hours hash lists."""

HIT = """
-- KEYS: for each counter its hash, its hours hash, its page and referrer hashes of the day,
-- its visitors' HyperLogLogs and id sets of the hour and of the day, and the sorted set of
-- the visitors its window counted; then (one server only) the index sorted set.
-- ARGV: the time in Unix ms, the hour's start and the most ids a set keeps, then for each
-- counter its tag, its numbers of hits (bots' not included), of those without a visitor id,
-- of bot hits, pages, referrers, distinct visitors and of those new to its visitor sketches, a
-- (value, hits) pair for each page and referrer, and each visitor id, the new ones first.
-- Replies for each counter its value, whether it counts a visitor once per window, and the
-- visitor ids it counted: those not in the sorted set, once the ended windows are out of it.
local now, hour, exact_below = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local count = math.floor(#KEYS / 9)
local index = KEYS[9 * count + 1]
local replies = {}
local at = 4
for i = 1, count do
    local k = 9 * (i - 1)
    local counter, tag, hits, bots = KEYS[k + 1], ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 3]
    local pages, referrers = tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5])
    local visitors, new = tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7])
    local ids = at + 8 + 2 * (pages + referrers)
    local window, marked = 0, {}
    if visitors > 0 then
        window = tonumber(redis.call('HGET', counter, 'count_once_per') or '0')
    end
    if window > 0 then  -- the hits without a visitor id, and each visitor whose window ended
        hits = tonumber(ARGV[at + 2])
        local counted, till = KEYS[k + 9], now + window * 60000
        redis.call('ZREMRANGEBYSCORE', counted, '-inf', now)
        for v = ids, ids + visitors - 1 do
            if redis.call('ZADD', counted, 'NX', till, ARGV[v]) == 1 then
                hits = hits + 1
                marked[#marked + 1] = ARGV[v]
            end
        end
        if #marked > 0 then  -- kept until its last window ends (a shorter one may have begun)
            local last = redis.call('ZRANGE', counted, -1, -1, 'WITHSCORES')[2]
            redis.call('PEXPIRE', counted, tonumber(last) - now)
        end
    end
    redis.call('HINCRBY', counter, 'value', hits)
    local value = redis.call('HGET', counter, 'value')  -- a string, exact past 2^53
    replies[i] = {value, window > 0 and 1 or 0, unpack(marked)}
    redis.call('HSETNX', counter, 'created_at', ARGV[1])
    redis.call('HSET', counter, 'updated_at', ARGV[1])
    if bots ~= '0' then redis.call('HINCRBY', counter, 'bot_hits', bots) end
    if hits > 0 or new > 0 then  -- the hours hash lists the visitor buckets too
        redis.call('HINCRBY', KEYS[k + 2], hour, hits)
    end
    if index then redis.call('ZADD', index, 0, tag) end
    at = at + 8
    for _ = 1, pages do
        redis.call('HINCRBY', KEYS[k + 3], ARGV[at], ARGV[at + 1])
        at = at + 2
    end
    for _ = 1, referrers do
        redis.call('HINCRBY', KEYS[k + 4], ARGV[at], ARGV[at + 1])
        at = at + 2
    end
    for first = at, at + new - 1, 1000 do  -- unpack takes a few thousand values at most
        local last = math.min(first + 999, at + new - 1)
        for s = 5, 6 do
            redis.call('PFADD', KEYS[k + s], unpack(ARGV, first, last))
            if redis.call('SCARD', KEYS[k + s + 2]) < exact_below then
                redis.call('SADD', KEYS[k + s + 2], unpack(ARGV, first, last))
            end
        end
    end
    at = at + visitors
end
return replies
"""

SALT = """
-- KEYS: the salt of a day, then that of the day before the previous one.
-- ARGV: a new salt, and how long (ms) a salt may outlive its day's use.
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return redis.call('GET', KEYS[1])
"""

CREATE = """
-- KEYS: the counter's hash, then (one server only) the index sorted set.
-- ARGV: the time in Unix ms, the value, the tag, the admin key hash ('' if none), the window.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'created_at', ARGV[1], 'updated_at', ARGV[1],
    'count_once_per', ARGV[5])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'admin_key_hash', ARGV[4]) end
if KEYS[2] then redis.call('ZADD', KEYS[2], 0, ARGV[3]) end
return 1
"""

UPDATE = """
-- KEYS: the counter's hash. ARGV: the time in Unix ms, the new value, the new admin key hash
-- and the new window, each '' to keep it. Replies the fields as they were, or nil if there is
-- no counter.
local old = redis.call('HMGET', KEYS[1], 'value', 'created_at', 'updated_at', 'admin_key_hash',
    'bot_hits', 'count_once_per')
if not old[1] then return false end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'value', ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'admin_key_hash', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'count_once_per', ARGV[4]) end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return old
"""

ADD = """
-- KEYS: the counter's hash. ARGV: the time in Unix ms, the amount (negative subtracts).
-- Replies the new value, or nil if there is no counter. The value stops at 0 and at 2^53 - 1
-- (LARGEST_SET); HINCRBY refuses, changing nothing, a sum past 2^63 - 1. The reply is read back
-- as a string: a Lua number (a double) is inexact above 2^53.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local added = redis.pcall('HINCRBY', KEYS[1], 'value', ARGV[2])
if (type(added) == 'table' and added.err) or added > 9007199254740991 then
    redis.call('HSET', KEYS[1], 'value', '9007199254740991')
elseif added < 0 then
    redis.call('HSET', KEYS[1], 'value', '0')
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[1])
return redis.call('HGET', KEYS[1], 'value')
"""

DELETE = """
-- KEYS: the counter's hash, then (one server only) the index sorted set, then its counted
-- visitors' and its history's keys.
-- ARGV: the tag, then the number of keys before the counted visitors'.
local deleted = redis.call('DEL', KEYS[1])
local first = tonumber(ARGV[2]) + 1
if first == 3 then redis.call('ZREM', KEYS[2], ARGV[1]) end
for i = first, #KEYS do redis.call('DEL', KEYS[i]) end
return deleted
"""

FIELDS = ("value", "created_at", "updated_at", "admin_key_hash", "bot_hits", "count_once_per")
"""A counter's hash fields, in the order of `CounterRecord`'s."""

KINDS: tuple[ViewKind, ...] = ("page", "referrer")


LAST_BUCKET = 2**62
"""A time after every bucket: reads up to it read a counter's whole history."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RedisLocation:
    """A checked Redis store URL, taken apart."""

    server_url: str
    """The URL redis-py reads: `redis://` or `rediss://`, with the TLS options only."""
    cluster: bool
    prefix: str
    where: str
    """`host:port`, for messages: no password."""


def parse_redis_url(url: str) -> RedisLocation:
    """Take a `redis://`, `rediss://` or `redis[s]+cluster://` URL apart, or raise ValueError."""
    parts = urlsplit(url)
    shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
    bad = f"bad Redis store URL {shown!r}"
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    tls = {name: options.pop(name) for name in TLS_OPTIONS if name in options}
    example = "redis://127.0.0.1:6379/0 or redis+cluster://127.0.0.1:7000"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{bad}: the port must be a number") from None
    if not parts.hostname:
        raise ValueError(f"{bad}: name the host, as in {example}")
    if options:
        raise ValueError(f"{bad}: unknown option {', '.join(options)}")
    if tls and not parts.scheme.startswith("rediss"):
        raise ValueError(f"{bad}: {', '.join(tls)} needs TLS: start the URL with rediss")
    for name, path in tls.items():
        if not Path(path).is_file():
            raise ValueError(f"{bad}: {name}: no file {path}")
    if "ssl_keyfile" in tls and "ssl_certfile" not in tls:
        raise ValueError(f"{bad}: ssl_keyfile needs the certificate, ssl_certfile")
    if not PREFIX.match(prefix):
        raise ValueError(
            f"{bad}: the prefix must match {PREFIX.pattern} (letters, digits and _ . : -)"
        )
    cluster = parts.scheme.endswith("+cluster")
    database = parts.path.strip("/") or "0"
    if cluster and database != "0":
        raise ValueError(f"{bad}: Redis Cluster has only database 0")
    if not database.isdigit():
        raise ValueError(f"{bad}: put a database number after the port, as in {example}")
    scheme = parts.scheme.removesuffix("+cluster")
    server_url = f"{scheme}://{parts.netloc}/{database}"
    if tls:
        server_url += f"?{urlencode(tls)}"
    return RedisLocation(server_url, cluster, prefix, f"{parts.hostname}:{port or 6379}")


@lru_cache(maxsize=4096)
def _tag(counter: CounterId) -> str:
    """`namespace:key`, each part percent-encoded so that no two counters share a tag."""
    return f"{quote(counter.namespace, safe='')}:{quote(counter.key, safe='')}"


def _counter_of(tag: str) -> CounterId:
    namespace, key = tag.split(":")
    return CounterId(unquote(namespace), unquote(key))


def _record(counter: CounterId, fields: Sequence[bytes | None]) -> CounterRecord | None:
    """The record of a counter from its hash's `FIELDS`; None if it has no value (no hash)."""
    value, created_at, updated_at, admin_key_hash, bot_hits, window = fields
    if value is None or created_at is None or updated_at is None:
        return None
    owner = admin_key_hash.decode() if admin_key_hash else None
    bots = int(bot_hits) if bot_hits else 0  # none before the first bot's hit
    return CounterRecord(
        counter, int(value), int(created_at), int(updated_at), owner, bots, int(window or 0)
    )


def _field_values(reply: Reply) -> Iterable[tuple[bytes, bytes]]:
    """The (field, value) pairs of an HGETALL reply: a map in RESP3, a flat list in RESP2."""
    if isinstance(reply, dict):
        return reply.items()
    return zip(reply[::2], reply[1::2], strict=True)


def _hit_arguments(hits: Sequence[Hit], *, hour: int) -> dict[CounterId, tuple[EncodableT, ...]]:
    """Per counter of a batch applied in `hour`, the HIT script's arguments after its tag: the
    numbers of its hits, of those without a visitor id, of bot hits, pages, referrers, visitors
    and new visitors (those this process has not recorded in the hour), a (value, hits) pair
    for each page, then for each referrer, then each visitor id, the new ones first."""
    pages: dict[CounterId, list[EncodableT]] = defaultdict(list)
    referrers: dict[CounterId, list[EncodableT]] = defaultdict(list)
    for (counter, kind, value), count in tally_views(hits).items():
        (pages if kind == "page" else referrers)[counter].extend((value, count))
    new, bots = tally_visitors(hits, hour=hour), tally_bots(hits)
    visitors: dict[CounterId, list[int]] = {c: list(ids) for c, ids in new.items()}
    for counter, visitor in window_pairs(hits):
        if visitor not in new.get(counter, ()):
            visitors.setdefault(counter, []).append(visitor)
    anonymous = Tally(hit.counter for hit in hits if hit.visitor is None and not hit.bot)
    return {
        counter: (
            count,
            anonymous[counter],
            bots.get(counter, 0),
            len(pages[counter]) // 2,
            len(referrers[counter]) // 2,
            len(visitors.get(counter, ())),
            len(new.get(counter, ())),
            *pages[counter],
            *referrers[counter],
            *visitors.get(counter, ()),
        )
        for counter, count in tally(hits).items()
    }


Work = dict[ConnectionSource, list[tuple[list[CounterId], Command]]]
"""Per node, the scripts to run there, each with the counters it touches."""


class RedisStore:
    """Counters in one Redis server or a Redis Cluster, shared by any number of instances."""

    def __init__(self, topology: Topology, *, prefix: str, wait_limit: float) -> None:
        self._topology = topology
        self._prefix = prefix
        self._index = f"{prefix}:counter-names"
        self._old_index = f"{prefix}:counters"
        """The index set of earlier versions, moved into `_index` (see `_redis_index.py`)."""
        self._wait_limit = wait_limit
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)

    @classmethod
    async def open(cls, url: str, *, wait_limit: float) -> "RedisStore":
        """Connect to the Redis (Cluster) a checked URL names; raise `StoreOpenError` if it
        does not answer within `wait_limit` seconds."""
        location = parse_redis_url(url)
        # The deadline of each operation bounds reads and writes; redis-py's own socket timeout
        # would wrap every write in a task of its own.
        timeouts = {"socket_timeout": None, "socket_connect_timeout": wait_limit}
        try:
            async with asyncio.timeout(wait_limit):
                if location.cluster:
                    topology: Topology = await Cluster.discover(
                        location.server_url,
                        where=location.where,
                        max_connections=IN_FLIGHT + 1,  # one more for reading the slot map
                        **timeouts,
                    )
                else:
                    kwargs: dict[str, Any] = dict(parse_url(location.server_url))
                    connection_class = kwargs.pop("connection_class", Connection)
                    topology = OneServer(connection_class, **kwargs, **timeouts)
        except TimeoutError:
            raise StoreOpenError(
                f"cannot open the Redis store at {location.where}: no answer in {wait_limit:g} s"
            ) from None
        except StoreError as error:
            raise StoreOpenError(f"cannot open the Redis store: {error}") from error
        store = cls(topology, prefix=location.prefix, wait_limit=wait_limit)
        try:
            await store.ping()
            if topology.single:
                from visit_tracker.stores import _redis_index  # noqa: PLC0415 - it imports this module

                await _redis_index.move_old_index(store)
        except StoreError as error:
            await store.close()
            raise StoreOpenError(f"cannot open the Redis store: {error}") from error
        return store

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        now = now_ms()
        arguments, day = _hit_arguments(hits, hour=hour_of(now)), day_of(now)
        buckets = visitor_buckets(now)
        deadline = await self._ready()
        work = self._plan(
            HIT,
            (
                (
                    counter,
                    (
                        self._key(counter),
                        self._hours_key(counter),
                        self._day_key(counter, "page", day),
                        self._day_key(counter, "referrer", day),
                        *(self._sketch_key(counter, *bucket) for bucket in buckets),
                        *(self._ids_key(counter, *bucket) for bucket in buckets),
                        self._counted_key(counter),
                    ),
                    (_tag(counter), *counter_arguments),
                )
                for counter, counter_arguments in arguments.items()
            ),
            prefix_args=(now, hour_of(now), EXACT_BELOW),
        )
        totals: dict[CounterId, int] = {}
        windowed: set[CounterId] = set()
        marked: set[tuple[CounterId, int]] = set()
        for counters, reply in await self._run(work, deadline=deadline):
            for counter, (value, has_window, *counted) in zip(counters, reply, strict=True):
                totals[counter] = int(value)
                if has_window:
                    windowed.add(counter)
                    marked.update((counter, int(visitor)) for visitor in counted)
        counted = once_per_window(hits, windowed=windowed, marked=marked)
        return number_hits(hits, totals, counted)

    async def value(self, counter: CounterId) -> int:
        deadline = await self._ready()
        key = self._key(counter)
        node = self._topology.node_for(key)
        (reply,) = await self._send(node, [("HGET", key, "value")], deadline=deadline)
        return int(check(reply, source=node) or 0)

    async def read(self, counter: CounterId) -> CounterRecord | None:
        deadline = await self._ready()
        key = self._key(counter)
        node = self._topology.node_for(key)
        (reply,) = await self._send(node, [("HMGET", key, *FIELDS)], deadline=deadline)
        return _record(counter, check(reply, source=node))

    async def create(
        self,
        counter: CounterId,
        *,
        value: int,
        admin_key_hash: str | None,
        count_once_per: int = 0,
    ) -> CounterRecord | None:
        now = now_ms()
        created = await self._script(
            CREATE,
            counter,
            now,
            value,
            _tag(counter),
            admin_key_hash or "",
            count_once_per,
            index=True,
        )
        if not created:
            return None
        return CounterRecord(
            counter, value, now, now, admin_key_hash, count_once_per=count_once_per
        )

    async def update(
        self,
        counter: CounterId,
        *,
        value: int | None = None,
        admin_key_hash: str | None = None,
        count_once_per: int | None = None,
    ) -> CounterRecord | None:
        new_value = "" if value is None else value
        new_window = "" if count_once_per is None else count_once_per
        old = await self._script(
            UPDATE, counter, now_ms(), new_value, admin_key_hash or "", new_window
        )
        return None if old is None else _record(counter, old)

    async def add(self, counter: CounterId, *, amount: int) -> int | None:
        value = await self._script(ADD, counter, now_ms(), amount)
        return None if value is None else int(value)

    async def delete(self, counter: CounterId) -> bool:
        # The days come from the hours hash, read first; today is added for a hit that starts
        # today's history between that read and the delete.
        hours = await self.series(counter, start_ms=0, end_ms=LAST_BUCKET)
        history = self._history_keys(counter, [hour for hour, _ in hours] + [hour_of(now_ms())])
        key = self._key(counter)
        keys = [key, self._index] if self._topology.single else [key]
        deadline = await self._ready()
        node = self._topology.node_for(key)
        command: Command = (
            "EVAL",
            DELETE,
            len(keys) + 1 + len(history),
            *keys,
            self._counted_key(counter),
            *history,
            _tag(counter),
            len(keys),
        )
        (reply,) = await self._send(node, [command], deadline=deadline, writes=True)
        return bool(check(reply, source=node))

    async def series(
        self, counter: CounterId, *, start_ms: int, end_ms: int
    ) -> list[tuple[int, int]]:
        key = self._hours_key(counter)
        first = -(-start_ms // HOUR_MS) * HOUR_MS  # the first hour that starts in the range
        hours = range(first, end_ms, HOUR_MS)
        if not hours:
            return []
        if len(hours) <= DIRECT_HOURS:
            found = zip(hours, await self._read_one(key, ("HMGET", key, *hours)), strict=True)
            pairs = [(hour, int(hits)) for hour, hits in found if hits is not None]
        else:
            reply = await self._read_one(key, ("HGETALL", key))
            pairs = sorted(
                (int(hour), int(hits))
                for hour, hits in _field_values(reply)
                if start_ms <= int(hour) < end_ms
            )
        return pairs

    async def top(
        self, counter: CounterId, *, kind: ViewKind, start_ms: int, end_ms: int, limit: int
    ) -> list[tuple[str, int]]:
        days: Sequence[int] = range(-(-start_ms // DAY_MS) * DAY_MS, end_ms, DAY_MS)
        if len(days) > DIRECT_DAYS:
            hours = await self.series(counter, start_ms=start_ms, end_ms=end_ms)
            days = sorted({day_of(hour) for hour, _ in hours})
        if not days:
            return []
        deadline = await self._ready()
        keys = [self._day_key(counter, kind, day) for day in days]
        node = self._topology.node_for(keys[0])
        replies = await self._send(node, [("HGETALL", key) for key in keys], deadline=deadline)
        totals: dict[str, int] = defaultdict(int)
        for reply in replies:
            for value, hits in _field_values(check(reply, source=node)):
                totals[value.decode()] += int(hits)
        return ranked(totals, limit)

    async def visitors(self, counter: CounterId, *, ranges: Sequence[tuple[int, int]]) -> list[int]:
        span = visitor_span(ranges)
        starts = [range(-(-start // span) * span, end, span) for start, end in ranges]
        buckets = sorted({bucket for range_ in starts for bucket in range_})
        if not buckets:
            return [0] * len(ranges)
        deadline = await self._ready()
        node = self._topology.node_for(self._key(counter))
        sizes = [
            int(check(reply, source=node))
            for reply in await self._send(
                node,
                [("SCARD", self._ids_key(counter, span, start)) for start in buckets],
                deadline=deadline,
            )
        ]
        kept = dict(zip(buckets, sizes, strict=True))
        commands: list[Command] = []
        for range_ in starts:
            seen = [start for start in range_ if kept[start]]
            if all(kept[start] < EXACT_BELOW for start in seen):
                commands.append(("SUNION", *(self._ids_key(counter, span, s) for s in seen)))
            else:
                commands.append(("PFCOUNT", *(self._sketch_key(counter, span, s) for s in seen)))
        asked = [command for command in commands if len(command) > 1]
        replies = iter(await self._send(node, asked, deadline=deadline) if asked else [])
        counts = []
        for command in commands:
            if len(command) == 1:  # no visitor in the range
                counts.append(0)
                continue
            reply = check(next(replies), source=node)
            counts.append(len(reply) if command[0] == "SUNION" else int(reply))
        return counts

    async def salt(self, day_ms: int) -> bytes:
        keys = [self._salt_key(day_ms), self._salt_key(day_ms - 2 * DAY_MS)]
        deadline = await self._ready()
        node = self._topology.node_for(keys[0])
        command: Command = ("EVAL", SALT, 2, *keys, new_salt(), 3 * DAY_MS)
        (reply,) = await self._send(node, [command], deadline=deadline, writes=True)
        return bytes(check(reply, source=node))

    async def purge(self, before_ms: int) -> None:
        await self._ready()
        for node in self._topology.primaries():
            counters = list(map(_counter_of, await self._tags_on(node)))
            async for answers in self._ask_each(
                node, counters, lambda counter: ("HKEYS", self._hours_key(counter))
            ):
                commands: list[Command] = []
                for counter, hours in answers:
                    old = [int(hour) for hour in hours if int(hour) < before_ms]
                    if old:
                        days = sorted({day_of(hour) for hour in old})
                        commands.append(("HDEL", self._hours_key(counter), *old))
                        commands.append(
                            ("DEL", *(self._day_key(counter, k, d) for d in days for k in KINDS))
                        )
                        commands.append(("DEL", *self._visitor_keys(counter, old)))
                if commands:
                    for reply in await self._send(
                        node, commands, deadline=self._deadline(), writes=True
                    ):
                        check(reply, source=node)

    async def counters_in(self, namespace: str, *, after: str, limit: int) -> list[CounterRecord]:
        from visit_tracker.stores import _redis_index  # noqa: PLC0415 - it imports this module

        return await _redis_index.counters_in(self, namespace, after=after, limit=limit)

    async def top_counters(self, limit: int) -> list[tuple[CounterId, int]]:
        # Redis keeps no order by value: the counters are listed as export lists them, and
        # every value is read, EXPORT_CHUNK per round trip; only the best `limit` are kept.
        best: list[tuple[CounterId, int]] = []
        await self._ready()
        for node in self._topology.primaries():
            counters = list(map(_counter_of, await self._tags_on(node)))
            async for answers in self._ask_each(
                node, counters, lambda counter: ("HGET", self._key(counter), "value")
            ):
                found = [
                    (counter, int(value))
                    for counter, value in answers
                    if value is not None  # None: deleted since it was listed
                ]
                best = highest([*best, *found], limit)
        return best

    async def export(self) -> AsyncIterator[CounterRecord]:
        records: list[CounterRecord] = []
        await self._ready()
        for node in self._topology.primaries():
            records.extend(await self._records_on(node))
        records.sort(key=lambda record: (record.counter.namespace, record.counter.key))
        for record in records:
            yield record

    def export_with_history(self) -> AsyncIterator[RestoreEntry]:
        from visit_tracker.stores import _redis_history  # noqa: PLC0415 - it imports this module

        return _redis_history.export(self)

    async def restore(
        self, entries: Iterable[RestoreEntry], *, replace_history: bool = False
    ) -> int:
        from visit_tracker.stores import _redis_history  # noqa: PLC0415 - it imports this module

        return await _redis_history.restore(self, entries, replace_history=replace_history)

    async def ping(self) -> None:
        deadline = await self._ready()
        nodes = self._topology.primaries()
        replies = await asyncio.gather(
            *(self._send(node, [("PING",)], deadline=deadline) for node in nodes)
        )
        for node, (reply,) in zip(nodes, replies, strict=True):
            check(reply, source=node)

    async def close(self) -> None:
        await self._topology.close()

    def _key(self, counter: CounterId) -> str:
        return f"{self._prefix}:{{{_tag(counter)}}}"

    def _hours_key(self, counter: CounterId) -> str:
        return f"{self._prefix}:{{{_tag(counter)}}}:hours"

    def _counted_key(self, counter: CounterId) -> str:
        return f"{self._prefix}:{{{_tag(counter)}}}:counted"

    def _salt_key(self, day: int) -> str:
        return f"{self._prefix}:{{salts}}:{day}"  # one tag: the script touches two days

    def _day_key(self, counter: CounterId, kind: ViewKind, day: int) -> str:
        return f"{self._prefix}:{{{_tag(counter)}}}:{kind}:{day}"

    def _sketch_key(self, counter: CounterId, span: int, start: int) -> str:
        return f"{self._prefix}:{{{_tag(counter)}}}:visitors:{SPAN_NAMES[span]}:{start}"

    def _ids_key(self, counter: CounterId, span: int, start: int) -> str:
        return f"{self._prefix}:{{{_tag(counter)}}}:visitor-ids:{SPAN_NAMES[span]}:{start}"

    def _history_keys(self, counter: CounterId, hours: Sequence[int]) -> list[str]:
        """Every key of a counter's history, given the hours it has."""
        days = sorted({day_of(hour) for hour in hours})
        return [
            self._hours_key(counter),
            *(self._day_key(counter, kind, day) for day in days for kind in KINDS),
            *self._visitor_keys(counter, hours),
        ]

    def _visitor_keys(self, counter: CounterId, hours: Iterable[int]) -> list[str]:
        """The visitor keys of these hours and of their days."""
        hours = set(hours)
        buckets = [(HOUR_MS, hour) for hour in hours] + [
            (DAY_MS, day) for day in {day_of(hour) for hour in hours}
        ]
        return [
            key
            for bucket in sorted(buckets)
            for key in (self._sketch_key(counter, *bucket), self._ids_key(counter, *bucket))
        ]

    async def _read_one(self, key: str, command: Command) -> Any:
        """The reply of one read command about `key`, from the node that holds it."""
        deadline = await self._ready()
        node = self._topology.node_for(key)
        (reply,) = await self._send(node, [command], deadline=deadline)
        return check(reply, source=node)

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._wait_limit

    async def _ready(self) -> float:
        """Start an operation: its deadline, once the servers' map is known to be current."""
        deadline = self._deadline()
        await self._guarded(self._topology.refresh(deadline))
        return deadline

    def _plan(
        self,
        script: str,
        arguments: Iterable[tuple[CounterId, tuple[str, ...], tuple[EncodableT, ...]]],
        *,
        prefix_args: tuple[EncodableT, ...],
    ) -> Work:
        """Group per-counter script keys and arguments (the counter's hash first) into as few
        script calls as the servers allow."""
        items = list(arguments)
        groups = [items] if self._topology.single else [[item] for item in items]
        index = [self._index] if self._topology.single else []
        work: Work = defaultdict(list)
        for group in groups:
            if not group:
                continue
            counters = [counter for counter, _, _ in group]
            keys = [key for _, counter_keys, _ in group for key in counter_keys]
            command: Command = (
                "EVAL",
                script,
                len(keys) + len(index),
                *keys,
                *index,
                *prefix_args,
                *(argument for _, _, args in group for argument in args),
            )
            work[self._topology.node_for(keys[0])].append((counters, command))
        return work

    async def _run(self, work: Work, *, deadline: float) -> list[tuple[list[CounterId], Reply]]:
        """Run every node's scripts, nodes in parallel; each script's counters with its reply.

        If some scripts ran and others did not, the outcome of the whole is unknown.
        """
        nodes = list(work)
        sends = [
            self._send(node, [command for _, command in work[node]], deadline=deadline, writes=True)
            for node in nodes
        ]
        outcomes: list[list[Reply] | BaseException]
        if len(sends) == 1:  # one server: spare the tasks that gather would make
            try:
                outcomes = [await sends[0]]
            except (StoreError, StoreOutcomeUnknown) as error:
                outcomes = [error]
        else:
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
        done: list[tuple[list[CounterId], Reply]] = []
        failures: list[BaseException] = []
        for node, outcome in zip(nodes, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                failures.append(outcome)
                continue
            for (counters, _), reply in zip(work[node], outcome, strict=True):
                try:
                    done.append((counters, check(reply, source=node)))
                except (StoreError, StoreOutcomeUnknown) as error:
                    self._topology.suspect()
                    failures.append(error)
        if not failures:
            return done
        if done:
            raise StoreOutcomeUnknown(
                f"Redis applied part of the request only: {failures[0]}"
            ) from failures[0]
        unknown = [failure for failure in failures if isinstance(failure, StoreOutcomeUnknown)]
        raise (unknown or failures)[0]

    async def _script(
        self, script: str, counter: CounterId, *arguments: EncodableT, index: bool = False
    ) -> Any:
        """Run a script on one counter's hash (and, on one server, the index set if `index`);
        its reply."""
        deadline = await self._ready()
        key = self._key(counter)
        keys = [key, self._index] if index and self._topology.single else [key]
        node = self._topology.node_for(key)
        command: Command = ("EVAL", script, len(keys), *keys, *arguments)
        (reply,) = await self._send(node, [command], deadline=deadline, writes=True)
        return check(reply, source=node)

    async def _records_on(self, node: ConnectionSource) -> list[CounterRecord]:
        """The records of every counter on one node."""
        counters = list(map(_counter_of, await self._tags_on(node)))
        records = []
        async for answers in self._ask_each(
            node, counters, lambda counter: ("HMGET", self._key(counter), *FIELDS)
        ):
            for counter, fields in answers:
                record = _record(counter, fields)
                if record is not None:  # deleted since it was listed
                    records.append(record)
        return records

    async def _ask_each(
        self,
        node: ConnectionSource,
        counters: Sequence[CounterId],
        command: Callable[[CounterId], Command],
    ) -> AsyncIterator[list[tuple[CounterId, Any]]]:
        """Each counter with the reply of its `command` on `node`: EXPORT_CHUNK counters a
        round trip, each round trip's answers as they come."""
        for start in range(0, len(counters), EXPORT_CHUNK):
            chunk = counters[start : start + EXPORT_CHUNK]
            replies = await self._send(
                node, [command(counter) for counter in chunk], deadline=self._deadline()
            )
            yield [
                (counter, check(reply, source=node))
                for counter, reply in zip(chunk, replies, strict=True)
            ]

    async def _tags_on(self, node: ConnectionSource) -> list[str]:
        """The tags of every counter on one node (see `_redis_index.py`)."""
        from visit_tracker.stores import _redis_index  # noqa: PLC0415 - it imports this module

        return await _redis_index.tags_on(self, node, None)

    async def _send(
        self,
        node: ConnectionSource,
        commands: Sequence[Command],
        *,
        deadline: float,
        writes: bool = False,
    ) -> list[Reply]:
        """The replies of the commands sent to one node in one round trip, and sent again
        wherever a moving slot's keys now are (see `follow_slot_moves`)."""
        replies = await self._round_trip(node, commands, deadline=deadline, writes=writes)
        if not isinstance(self._topology, Cluster):
            return replies
        return await follow_slot_moves(
            self._topology,
            lambda target, again: self._round_trip(target, again, deadline=deadline, writes=writes),
            sent=(node, commands),
            replies=replies,
            deadline=deadline,
        )

    async def _round_trip(
        self,
        node: ConnectionSource,
        commands: Sequence[Command],
        *,
        deadline: float,
        writes: bool,
    ) -> list[Reply]:
        """One round trip to one node, waiting for a free slot no later than `deadline`."""
        if self._in_flight.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._in_flight.acquire()
            except TimeoutError:
                raise StoreUnavailable(
                    f"Redis {node.name}: {IN_FLIGHT} requests were already under way"
                ) from None
        else:
            await self._in_flight.acquire()  # free: returns at once
        try:
            return await self._guarded(round_trip(node, commands, deadline=deadline, writes=writes))
        finally:
            self._in_flight.release()

    async def _guarded(self, operation: Awaitable[T]) -> T:
        """Await the operation; a store failure may mean the cluster changed, so note it."""
        try:
            return await operation
        except (StoreError, StoreOutcomeUnknown):
            self._topology.suspect()
            raise
