"""The export format: every counter as one line of JSON, readable by people and by `import`.

JSON Lines, UTF-8. The first line is a header naming the format and its version; each later line
is one counter, in (namespace, key) order:

    {"format": "visit-tracker-counters", "version": 3}
    {"namespace": "site", "key": "home", "value": 5, "created_at": 1753146000123, "updated_at": ...,
     "admin_key_hash": null, "bot_hits": 0, "count_once_per": 0}

`value` is a whole number from 0 to 2**53 - 1 (see `LARGEST_SET`); `created_at` and
`updated_at` are Unix times in milliseconds up to 2**63 - 1, `created_at` not after
`updated_at`; names match `^[A-Za-z0-9_.-]{1,64}$`;
`admin_key_hash` is the SHA-256 of the counter's admin key in lowercase hexadecimal, or null for
a counter nobody owns (an export carries no admin key itself, only what checks one); `bot_hits`
is the hits of known bots, which `value` does not count, a whole number in the range of
`value`; `count_once_per` the minutes within which a visitor counts once, 0 (every hit counts)
to 1440.
Every field is required and no other is allowed, so a typo is caught rather than ignored.
Version 1 files, written before counters had owners, have no `admin_key_hash` and are read as
unowned; version 1 and 2 files, written before bots were counted apart and visitors once per
window, have no `bot_hits` and `count_once_per` and are read with 0 for both. A reader refuses
a version it does not know: a later version may add fields.

Version 4 files carry each counter's history too, on lines that follow its counter's line and
belong to it, each a JSON object known by the field it has of `hours`, `day` and `visitors`:

    {"hours": [[1753146000000, 12], [1753149600000, 0], ...]}
    {"day": 1753142400000, "pages": {"/": 9, "/about": 3}, "referrers": {"https://a.example/": 2}}
    {"visitors": "hour", "start": 1753146000000, "ids": [4611686018427387904, ...]}
    {"visitors": "day", "start": 1753142400000, "ids": [...], "sketch": "registers",
     "data": "AAEC...", "estimate": 1234}

`hours` lists hourly buckets as [hour start, hits], in time order, at most `HISTORY_CHUNK`
a line (so a long history is several lines); hits are from 0 (an hour that lists visitors
only) to 2**53 - 1. A `day` line holds one UTC day's hits per page and per referrer, from 1 to
2**53 - 1 each; pages and referrers are non-empty strings. A `visitors` line is one hour's or
one day's distinct visitors: with no `sketch`, `ids` is every visitor of the bucket, fewer than
100 (`EXACT_BELOW`); with one, the bucket had more and `ids` is the ones it kept, with its
HyperLogLog as its store keeps it: `"registers"` (SQLite, PostgreSQL, memory), `data` the
base64 of 2**15 bytes, each a register's rank; or `"redis"`, `data` the base64 of Redis's own
HyperLogLog string. `estimate` is the bucket's count as its store gives it. Hours and days are
Unix milliseconds that start a UTC hour or day; visitor ids are whole numbers from 0 to
2**63 - 1. An hour, a day or a bucket appears once per counter. The days' salts, which link a
visitor's id to its address, are never exported: the restored store makes its own.

History lines follow their counter so that a store is written and read a counter at a time: no
step holds more than one counter's record and one line of history.

`entries` checks each line as it reads it and names the first bad one; `check` reads a whole
file through it before anything is imported.
"""

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from visit_tracker.errors import MalformedExport
from visit_tracker.history import LONGEST_VIEW, clean_page, clean_referrer
from visit_tracker.stores import _redis_hll
from visit_tracker.stores.base import (
    DAY_MS,
    HOUR_MS,
    LARGEST,
    LARGEST_SET,
    LONGEST_WINDOW,
    NAME_PATTERN,
    SPAN_NAMES,
    CounterId,
    CounterRecord,
    DailyViews,
    HistoryEntry,
    HourlyHits,
    RestoreEntry,
    SketchFamily,
    ViewKind,
    VisitorBucket,
    VisitorSketch,
)
from visit_tracker.stores.sketch import EXACT_BELOW, HISTORY_CHUNK, ID_BITS, ranks_of

FORMAT = "visit-tracker-counters"
VERSION = 4
HEADER = {"format": FORMAT, "version": VERSION}
FIELDS = {
    1: ("namespace", "key", "value", "created_at", "updated_at"),
    2: ("namespace", "key", "value", "created_at", "updated_at", "admin_key_hash"),
    3: (
        *("namespace", "key", "value", "created_at", "updated_at", "admin_key_hash"),
        *("bot_hits", "count_once_per"),
    ),
}
FIELDS[4] = FIELDS[3]
"""The fields of a counter's line in each version this release reads."""
HISTORY_SINCE = 4
"""The first version whose files carry history."""
HISTORY_FIELDS = {
    "hours": ({"hours"}, set()),
    "day": ({"day", "pages", "referrers"}, set()),
    "visitors": ({"visitors", "start", "ids"}, {"sketch", "data", "estimate"}),
}
"""Per kind of history line (its first field), the fields it requires, and those it may have
(all or none)."""
SPANS = {name: span for span, name in SPAN_NAMES.items()}
SKETCH_FAMILIES: tuple[SketchFamily, ...] = ("registers", "redis")
KEY_HASH = re.compile(r"[0-9a-f]{64}")
LARGEST_ID = (1 << ID_BITS) - 1


@dataclass
class Contents:
    """What a checked export holds."""

    version: int = VERSION
    counters: int = 0

    @property
    def history(self) -> bool:
        """Whether the file carries history, which an import then replaces."""
        return self.version >= HISTORY_SINCE


def format_header() -> str:
    """The export's first line, without its newline."""
    return json.dumps(HEADER)


def format_record(record: CounterRecord) -> str:
    """One counter's line, without its newline."""
    return json.dumps(
        {
            "namespace": record.counter.namespace,
            "key": record.counter.key,
            "value": record.value,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "admin_key_hash": record.admin_key_hash,
            "bot_hits": record.bot_hits,
            "count_once_per": record.count_once_per,
        }
    )


def format_history(entry: HistoryEntry) -> str:
    """One line of a counter's history, without its newline."""
    if isinstance(entry, HourlyHits):
        return json.dumps({"hours": [list(pair) for pair in entry.hours]})
    if isinstance(entry, DailyViews):
        views: dict[str, dict[str, int]] = {"page": {}, "referrer": {}}
        for kind, value, hits in entry.views:
            views[kind][value] = hits
        return json.dumps(
            {"day": entry.day, "pages": views["page"], "referrers": views["referrer"]}
        )
    bucket: dict[str, Any] = {
        "visitors": SPAN_NAMES[entry.span],
        "start": entry.start,
        "ids": sorted(entry.ids),
    }
    if entry.sketch is not None:
        bucket["sketch"] = entry.sketch.family
        bucket["data"] = base64.b64encode(entry.sketch.data).decode()
        bucket["estimate"] = entry.sketch.estimate
    return json.dumps(bucket)


def check(lines: Iterable[bytes]) -> Contents:
    """Read a whole export, checking every line; what it holds."""
    contents = Contents()
    for entry in entries(lines, contents=contents):
        if isinstance(entry, CounterRecord):
            contents.counters += 1
    return contents


def entries(lines: Iterable[bytes], *, contents: Contents | None = None) -> Iterator[RestoreEntry]:
    """Every counter and history entry of an export, in file order, each checked as it is read;
    `MalformedExport` at the first bad line. Notes the version in `contents`."""
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise MalformedExport(1, f"the file is empty; an export starts with {format_header()}")
    version = _check_header(_json_object(*first))
    if contents is not None:
        contents.version = version
    seen: dict[CounterId, int] = {}
    history: _History | None = None
    for number, line in numbered:
        fields = _json_object(number, line)
        kind = _history_kind(fields) if version >= HISTORY_SINCE else None
        if kind is None:
            record = _record(fields, number, fields_expected=FIELDS[version])
            if record.counter in seen:
                raise MalformedExport(
                    number,
                    f"counter {record.counter.namespace}/{record.counter.key} "
                    f"already appears on line {seen[record.counter]}",
                )
            seen[record.counter] = number
            if history is not None:
                history.finish()
            history = _History(record.counter)
            yield record
        elif history is None:
            raise MalformedExport(number, f"a {kind!r} line before any counter's line")
        else:
            yield history.entry(kind, fields, number)
    if history is not None:
        history.finish()


def _history_kind(fields: dict[str, Any]) -> str | None:
    """Which kind of history line this is; None for a counter's line."""
    if "namespace" in fields:
        return None
    return next((kind for kind in HISTORY_FIELDS if kind in fields), None)


def _json_object(number: int, line: bytes) -> dict[str, Any]:
    if not line.strip():
        raise MalformedExport(number, "empty line; each line holds one JSON object")
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedExport(number, "not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise MalformedExport(number, f"not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise MalformedExport(number, f"expected a JSON object, found {type(value).__name__}")
    return value


def _check_header(header: dict[str, Any]) -> int:
    """The export's version, from its checked header line."""
    if header.get("format") != FORMAT or set(header) != set(HEADER):
        raise MalformedExport(
            1, f"not a visit-tracker export: the first line must be {format_header()}"
        )
    version = header["version"]
    if type(version) is not int or version not in FIELDS:
        known = ", ".join(map(str, FIELDS))
        raise MalformedExport(
            1, f"export format version {version!r} is not supported (only {known})"
        )
    return version


def _record(
    fields: dict[str, Any], number: int, *, fields_expected: tuple[str, ...]
) -> CounterRecord:
    missing = [name for name in fields_expected if name not in fields]
    if missing:
        raise MalformedExport(number, f"missing field {missing[0]!r}")
    unknown = sorted(set(fields) - set(fields_expected))
    if unknown:
        raise MalformedExport(number, f"unknown field {unknown[0]!r}")
    namespace, key = (_name(fields, name, number) for name in ("namespace", "key"))
    # Neither is in the versions before bots were counted apart and visitors once per window.
    fields.setdefault("bot_hits", 0)
    fields.setdefault("count_once_per", 0)
    value, created_at, updated_at, bot_hits, window = (
        _whole_number(fields, name, number, largest=largest)
        for name, largest in (
            ("value", LARGEST_SET),
            ("created_at", LARGEST),
            ("updated_at", LARGEST),
            ("bot_hits", LARGEST_SET),
            ("count_once_per", LONGEST_WINDOW),
        )
    )
    if created_at > updated_at:
        raise MalformedExport(number, "created_at is later than updated_at")
    admin_key_hash = fields.get("admin_key_hash")
    if admin_key_hash is not None and not (
        isinstance(admin_key_hash, str) and KEY_HASH.fullmatch(admin_key_hash)
    ):
        raise MalformedExport(
            number, "admin_key_hash must be null or 64 lowercase hexadecimal digits (SHA-256)"
        )
    return CounterRecord(
        CounterId(namespace, key), value, created_at, updated_at, admin_key_hash, bot_hits, window
    )


def _name(fields: dict[str, Any], name: str, number: int) -> str:
    found = fields[name]
    if not isinstance(found, str) or not NAME_PATTERN.fullmatch(found):
        raise MalformedExport(
            number, f"{name} {json.dumps(found)} must match ^{NAME_PATTERN.pattern}$"
        )
    return found


def _whole_number(fields: dict[str, Any], name: str, number: int, *, largest: int) -> int:
    found = fields[name]
    # bool is an int in Python, but true is not a count.
    if type(found) is not int or not 0 <= found <= largest:
        raise MalformedExport(
            number, f"{name} must be a whole number from 0 to {largest}, not {json.dumps(found)}"
        )
    return found


class _History:
    """Reads the history lines of one counter, refusing an hour, day or bucket given twice,
    and a day that no hour of the counter's lists (see `finish`)."""

    def __init__(self, counter: CounterId) -> None:
        self.counter = counter
        self.seen: dict[tuple[object, ...], int] = {}
        self.last_hour = -1
        self.days_with_hours: set[int] = set()
        self.days_used: dict[int, int] = {}
        """Days of pages, referrers or visitors, each with the first line that names it."""

    def finish(self) -> None:
        """Refuse a day whose pages, referrers or visitors no hour of the counter lists: the
        stores find a counter's days through its hours, to purge, export and delete them."""
        for day, number in self.days_used.items():
            if day not in self.days_with_hours:
                raise MalformedExport(
                    number,
                    f"day {day} has pages, referrers or visitors but the counter lists no hour "
                    "of it (in its hours or its hourly visitors)",
                )

    def entry(self, kind: str, fields: dict[str, Any], number: int) -> HistoryEntry:
        required, optional = HISTORY_FIELDS[kind]
        missing = sorted(required - set(fields))
        if missing:
            raise MalformedExport(number, f"missing field {missing[0]!r}")
        unknown = sorted(set(fields) - required - optional)
        if unknown:
            raise MalformedExport(number, f"unknown field {unknown[0]!r}")
        if kind == "hours":
            return self._hours(fields["hours"], number)
        if kind == "day":
            return self._day(fields, number)
        return self._visitors(fields, number)

    def _once(self, what: tuple[object, ...], number: int, name: str) -> None:
        if what in self.seen:
            raise MalformedExport(number, f"{name} already appears on line {self.seen[what]}")
        self.seen[what] = number

    def _hours(self, pairs: Any, number: int) -> HourlyHits:
        if not isinstance(pairs, list) or not 1 <= len(pairs) <= HISTORY_CHUNK:
            raise MalformedExport(
                number, f"hours must be a list of 1 to {HISTORY_CHUNK} [hour, hits] pairs"
            )
        hours = []
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                raise MalformedExport(
                    number, f"an hour must be [hour, hits], not {json.dumps(pair)}"
                )
            hour = _time(pair[0], number, "an hour", HOUR_MS)
            hits = _count(pair[1], number, "an hour's hits", smallest=0)
            if hour <= self.last_hour:
                raise MalformedExport(number, f"hour {hour} is not after the hour before it")
            self.last_hour = hour
            self.days_with_hours.add(hour - hour % DAY_MS)
            hours.append((hour, hits))
        return HourlyHits(self.counter, tuple(hours))

    def _day(self, fields: dict[str, Any], number: int) -> DailyViews:
        day = _time(fields["day"], number, "day", DAY_MS)
        self._once(("day", day), number, f"day {day}")
        self.days_used.setdefault(day, number)
        views: list[tuple[ViewKind, str, int]] = []
        kinds: tuple[tuple[str, ViewKind], ...] = (("pages", "page"), ("referrers", "referrer"))
        for name, kind in kinds:
            found = fields[name]
            if not isinstance(found, dict):
                raise MalformedExport(number, f"{name} must be an object of hits by {kind}")
            for value, hits in found.items():
                _view(kind, value, number)
                views.append((kind, value, _count(hits, number, f"{kind} hits", smallest=1)))
        if not views:
            raise MalformedExport(number, "a day with neither pages nor referrers")
        return DailyViews(self.counter, day, tuple(views))

    def _visitors(self, fields: dict[str, Any], number: int) -> VisitorBucket:
        span = SPANS.get(fields["visitors"]) if isinstance(fields["visitors"], str) else None
        if span is None:
            raise MalformedExport(number, 'visitors must be "hour" or "day"')
        start = _time(fields["start"], number, "start", span)
        self._once(
            ("visitors", span, start), number, f"the visitors of {fields['visitors']} {start}"
        )
        if span == HOUR_MS:
            self.days_with_hours.add(start - start % DAY_MS)
        else:
            self.days_used.setdefault(start, number)
        ids = fields["ids"]
        if not isinstance(ids, list) or not all(
            type(visitor) is int and 0 <= visitor <= LARGEST_ID for visitor in ids
        ):
            raise MalformedExport(
                number, f"ids must be a list of whole numbers from 0 to {LARGEST_ID}"
            )
        if len(set(ids)) != len(ids):
            raise MalformedExport(number, "an id appears twice in ids")
        if "sketch" not in fields:
            if not 1 <= len(ids) < EXACT_BELOW:
                raise MalformedExport(
                    number, f"a bucket without a sketch lists 1 to {EXACT_BELOW - 1} ids"
                )
            return VisitorBucket(self.counter, span, start, tuple(ids), None)
        missing = sorted({"sketch", "data", "estimate"} - set(fields))
        if missing:
            raise MalformedExport(number, f"missing field {missing[0]!r} of the sketch")
        if len(ids) < EXACT_BELOW:
            raise MalformedExport(
                number, f"a bucket with a sketch keeps at least {EXACT_BELOW} ids"
            )
        return VisitorBucket(self.counter, span, start, tuple(ids), _sketch(fields, number))


def _view(kind: ViewKind, value: str, number: int) -> None:
    """Refuse a page or referrer that the hits route would not have kept as it is."""
    clean = clean_page if kind == "page" else clean_referrer
    try:
        kept = len(value) <= LONGEST_VIEW and clean(value) == value
    except ValueError:
        kept = False
    if not kept:
        raise MalformedExport(
            number, f"{json.dumps(value)} is not a {kind} as visit-tracker keeps one: {RULES[kind]}"
        )


RULES = {
    "page": f"a path of at most {LONGEST_VIEW} characters, without query string or fragment",
    "referrer": f"an http or https origin and path of at most {LONGEST_VIEW} characters, "
    "in lower case, without query string or fragment",
}


def _sketch(fields: dict[str, Any], number: int) -> VisitorSketch:
    family = fields["sketch"]
    if family not in SKETCH_FAMILIES:
        raise MalformedExport(number, 'sketch must be "registers" or "redis"')
    try:
        data = base64.b64decode(fields["data"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise MalformedExport(number, "data must be base64") from None
    try:
        if family == "registers":
            ranks_of(data)
        else:
            _redis_hll.registers(data)
    except ValueError as error:
        raise MalformedExport(number, f"data is not a {family} sketch: {error}") from None
    estimate = _count(fields["estimate"], number, "estimate", smallest=0)
    return VisitorSketch(family, data, estimate)


def _time(found: Any, number: int, name: str, span: int) -> int:
    if type(found) is not int or not 0 <= found <= LARGEST or found % span:
        what = "hour" if span == HOUR_MS else "UTC day"
        raise MalformedExport(
            number,
            f"{name} must be the Unix milliseconds a {what} starts at, not {json.dumps(found)}",
        )
    return found


def _count(found: Any, number: int, name: str, *, smallest: int) -> int:
    if type(found) is not int or not smallest <= found <= LARGEST_SET:
        raise MalformedExport(
            number,
            f"{name} must be a whole number from {smallest} to {LARGEST_SET}, "
            f"not {json.dumps(found)}",
        )
    return found
