"""The export format: every counter as one line of JSON, readable by people and by `import`.

JSON Lines, UTF-8. The first line is a header naming the format and its version; each later line
is one counter, in (namespace, key) order:

    {"format": "visit-tracker-counters", "version": 1}
    {"namespace": "site", "key": "home", "value": 5, "created_at": 1753146000123, "updated_at": ...}

`value` is a whole number from 0 to 2**63 - 1; `created_at` and `updated_at` are Unix times in
milliseconds, `created_at` not after `updated_at`; names match `^[A-Za-z0-9_.-]{1,64}$`. Every
field is required and no other is allowed, so a typo is caught rather than ignored. A reader
refuses a version it does not know: a later version may add fields.

`parse` checks a whole file before anything is imported and names the first bad line.
"""

import json
from collections.abc import Iterable
from typing import Any

from visit_tracker.errors import MalformedExport
from visit_tracker.stores.base import NAME_PATTERN, CounterId, CounterRecord

FORMAT = "visit-tracker-counters"
VERSION = 1
HEADER = {"format": FORMAT, "version": VERSION}
FIELDS = ("namespace", "key", "value", "created_at", "updated_at")
LARGEST = 2**63 - 1
"""The largest value and time every store keeps exactly (a signed 64-bit integer)."""


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
        }
    )


def parse(lines: Iterable[bytes]) -> list[CounterRecord]:
    """Every counter of an export, in file order; `MalformedExport` at the first bad line."""
    numbered = enumerate(lines, start=1)
    first = next(numbered, None)
    if first is None:
        raise MalformedExport(1, f"the file is empty; an export starts with {format_header()}")
    _check_header(_json_object(*first))
    seen: dict[CounterId, int] = {}
    records = []
    for number, line in numbered:
        record = _record(_json_object(number, line), number)
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


def _check_header(header: dict[str, Any]) -> None:
    if header.get("format") != FORMAT or set(header) != set(HEADER):
        raise MalformedExport(
            1, f"not a visit-tracker export: the first line must be {format_header()}"
        )
    if header["version"] != VERSION:
        raise MalformedExport(
            1, f"export format version {header['version']!r} is not supported (only {VERSION})"
        )


def _record(fields: dict[str, Any], number: int) -> CounterRecord:
    missing = [name for name in FIELDS if name not in fields]
    if missing:
        raise MalformedExport(number, f"missing field {missing[0]!r}")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise MalformedExport(number, f"unknown field {unknown[0]!r}")
    namespace, key = (_name(fields, name, number) for name in ("namespace", "key"))
    value, created_at, updated_at = (
        _whole_number(fields, name, number) for name in ("value", "created_at", "updated_at")
    )
    if created_at > updated_at:
        raise MalformedExport(number, "created_at is later than updated_at")
    return CounterRecord(CounterId(namespace, key), value, created_at, updated_at)


def _name(fields: dict[str, Any], name: str, number: int) -> str:
    found = fields[name]
    if not isinstance(found, str) or not NAME_PATTERN.fullmatch(found):
        raise MalformedExport(
            number, f"{name} {json.dumps(found)} must match ^{NAME_PATTERN.pattern}$"
        )
    return found


def _whole_number(fields: dict[str, Any], name: str, number: int) -> int:
    found = fields[name]
    # bool is an int in Python, but true is not a count.
    if type(found) is not int or not 0 <= found <= LARGEST:
        raise MalformedExport(
            number, f"{name} must be a whole number from 0 to {LARGEST}, not {json.dumps(found)}"
        )
    return found
