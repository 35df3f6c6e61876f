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

`parse` checks a whole file before anything is imported and names the first bad line.
"""

import json
import re
from collections.abc import Iterable
from typing import Any

from visit_tracker.errors import MalformedExport
from visit_tracker.stores.base import (
    LARGEST,
    LARGEST_SET,
    LONGEST_WINDOW,
    NAME_PATTERN,
    CounterId,
    CounterRecord,
)

FORMAT = "visit-tracker-counters"
VERSION = 3
HEADER = {"format": FORMAT, "version": VERSION}
FIELDS = {
    1: ("namespace", "key", "value", "created_at", "updated_at"),
    2: ("namespace", "key", "value", "created_at", "updated_at", "admin_key_hash"),
    3: (
        *("namespace", "key", "value", "created_at", "updated_at", "admin_key_hash"),
        *("bot_hits", "count_once_per"),
    ),
}
"""The fields of a counter's line in each version this release reads."""
KEY_HASH = re.compile(r"[0-9a-f]{64}")


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


def parse(lines: Iterable[bytes]) -> list[CounterRecord]:
    """Every counter of an export, in file order; `MalformedExport` at the first bad line."""
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise MalformedExport(1, f"the file is empty; an export starts with {format_header()}")
    version = _check_header(_json_object(*first))
    seen: dict[CounterId, int] = {}
    records = []
    for number, line in numbered:
        record = _record(_json_object(number, line), number, fields_expected=FIELDS[version])
        if record.counter in seen:
            raise MalformedExport(
                number,
                f"counter {record.counter.namespace}/{record.counter.key} "
                f"already appears on line {seen[record.counter]}",
            )
        seen[record.counter] = number
        records.append(record)
    return records


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
