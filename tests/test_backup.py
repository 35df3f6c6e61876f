"""The export format as pure functions: what a line looks like, and which lines are refused."""

import json

import pytest

from visit_tracker.backup import entries, format_header, format_record
from visit_tracker.errors import MalformedExport
from visit_tracker.stores import CounterId, CounterRecord
from visit_tracker.stores.base import LARGEST, LARGEST_SET

HOME = CounterRecord(CounterId("site", "home"), 5, 1_700_000_000_000, 1_700_000_000_123)
OWNED = CounterRecord(CounterId("site", "about"), 7, 1, 2, "0123456789abcdef" * 4, 3, 30)
GOOD = {
    "namespace": "a",
    "key": "b",
    "value": 1,
    "created_at": 1,
    "updated_at": 2,
    "admin_key_hash": None,
    "bot_hits": 0,
    "count_once_per": 0,
}
REMOVED = object()
"""Given to `line` for a field, leaves that field out."""


def export_of(*lines: str) -> list[bytes]:
    """An export's lines as a binary file yields them: header first, each with its newline."""
    return [f"{line}\n".encode() for line in (format_header(), *lines)]


def line(**changes: object) -> str:
    """A valid counter line with some fields changed (`REMOVED` leaves a field out)."""
    fields = {**GOOD, **changes}
    return json.dumps({name: value for name, value in fields.items() if value is not REMOVED})


def refusal(lines: list[bytes]) -> MalformedExport:
    with pytest.raises(MalformedExport) as raised:
        list(entries(lines))
    return raised.value


def test_a_record_reads_back_exactly_as_written() -> None:
    """A counter formatted and parsed again is the same counter: value, times, owner, bot hits
    and window."""
    assert list(entries(export_of(format_record(HOME), format_record(OWNED)))) == [HOME, OWNED]


def test_the_header_names_the_format_and_its_version() -> None:
    """The first line is a JSON object naming the format and version 4."""
    assert json.loads(format_header()) == {"format": "visit-tracker-counters", "version": 4}


def test_each_line_is_one_json_object_with_the_eight_fields() -> None:
    """A counter's line is one JSON object with exactly its names, value, times, owner, bot hits
    and window."""
    assert json.loads(format_record(OWNED)) == {
        "namespace": "site",
        "key": "about",
        "value": 7,
        "created_at": 1,
        "updated_at": 2,
        "admin_key_hash": "0123456789abcdef" * 4,
        "bot_hits": 3,
        "count_once_per": 30,
    }


def test_a_version_1_export_reads_as_unowned_counters() -> None:
    """An export written before counters had owners imports, every counter unowned."""
    lines = [
        b'{"format": "visit-tracker-counters", "version": 1}\n',
        b'{"namespace": "site", "key": "home", "value": 5, "created_at": 1, "updated_at": 2}\n',
    ]
    assert list(entries(lines)) == [CounterRecord(CounterId("site", "home"), 5, 1, 2, None)]


def test_a_version_2_export_reads_with_no_bot_hits() -> None:
    """An export written before bots were counted apart imports, owners kept, bot hits and
    window 0."""
    owner = "0123456789abcdef" * 4
    lines = [
        b'{"format": "visit-tracker-counters", "version": 2}\n',
        b'{"namespace": "site", "key": "home", "value": 5, "created_at": 1, "updated_at": 2, '
        b'"admin_key_hash": "' + owner.encode() + b'"}\n',
    ]
    assert list(entries(lines)) == [CounterRecord(CounterId("site", "home"), 5, 1, 2, owner, 0, 0)]


def test_a_version_2_line_with_bot_hits_is_refused() -> None:
    """A field its version does not have is unknown, even one a later version has."""
    lines = [
        b'{"format": "visit-tracker-counters", "version": 2}\n',
        json.dumps(GOOD).encode() + b"\n",
    ]
    assert str(refusal(lines)) == "line 2: unknown field 'bot_hits'"


def test_an_export_of_no_counters_is_just_the_header() -> None:
    """A header alone is a valid export of an empty store."""
    assert list(entries(export_of())) == []


def test_the_largest_value_and_every_name_character_are_accepted() -> None:
    """Values and bot hits up to 2**53-1, times up to 2**63-1 and names of 64 characters from
    the whole alphabet pass."""
    name = "Az09_.-" + "x" * 57
    records = list(
        entries(
            export_of(
                line(
                    namespace=name,
                    key=name,
                    value=LARGEST_SET,
                    updated_at=LARGEST,
                    bot_hits=LARGEST_SET,
                )
            )
        )
    )
    assert records == [
        CounterRecord(CounterId(name, name), LARGEST_SET, 1, LARGEST, None, LARGEST_SET)
    ]


@pytest.mark.parametrize(
    ("bad_line", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("", "empty line"),
        ("[1, 2]", "expected a JSON object, found list"),
        (line(value=REMOVED), "missing field 'value'"),
        (line(admin_key_hash=REMOVED), "missing field 'admin_key_hash'"),
        (line(bot_hits=REMOVED), "missing field 'bot_hits'"),
        (line(bot_hits=-1), "bot_hits must be a whole number from 0 to 9007199254740991"),
        (line(bot_hits=None), "bot_hits must be a whole number"),
        (line(count_once_per=REMOVED), "missing field 'count_once_per'"),
        (line(count_once_per=1441), "count_once_per must be a whole number from 0 to 1440"),
        (line(admin_key_hash="ABC"), "admin_key_hash must be null or 64 lowercase hexadecimal"),
        (line(admin_key_hash=1), "admin_key_hash must be null or 64 lowercase hexadecimal"),
        (line(extra=1), "unknown field 'extra'"),
        (line(namespace="has space"), 'namespace "has space" must match'),
        (line(key=""), 'key "" must match'),
        (line(key="k" * 65), "key"),
        (line(namespace=7), "namespace 7 must match"),
        (line(value=-1), "value must be a whole number from 0 to 9007199254740991, not -1"),
        (line(value=1.5), "not 1.5"),
        (line(value="3"), 'not "3"'),
        (line(value=True), "not true"),
        (line(value=LARGEST_SET + 1), f"not {LARGEST_SET + 1}"),
        (line(updated_at=LARGEST + 1), f"not {LARGEST + 1}"),
        (line(created_at=-5), "created_at must be a whole number"),
        (line(created_at=3, updated_at=2), "created_at is later than updated_at"),
    ],
)
def test_a_bad_line_is_refused_with_its_number_and_the_problem(bad_line: str, problem: str) -> None:
    """Bad JSON, a missing, unknown or ill-typed field, a bad name, value or owner is refused,
    naming its line."""
    error = refusal(export_of(line(), line(key="c"), bad_line, line(key="d")))
    assert error.line == 4
    assert str(error).startswith("line 4: ")
    assert problem in str(error)


def test_bytes_that_are_not_utf8_are_refused_by_line() -> None:
    """A line that is not UTF-8 text is refused, naming its line."""
    assert str(refusal([*export_of(line()), b"\xff\xfe\n"])) == "line 3: not UTF-8 text"


def test_the_same_counter_twice_is_refused_naming_both_lines() -> None:
    """A counter listed twice is refused: the file cannot say which value is right."""
    error = refusal(export_of(line(), line(key="c"), line()))
    assert str(error) == "line 4: counter a/b already appears on line 2"


@pytest.mark.parametrize(
    ("first_line", "problem"),
    [
        (b"", "the file is empty"),
        (json.dumps(GOOD).encode(), "not a visit-tracker export: the first line must be"),
        (b'{"format": "other", "version": 1}\n', "not a visit-tracker export"),
        (b'{"format": "visit-tracker-counters", "version": 5}\n', "version 5 is not supported"),
        (b'{"format": "visit-tracker-counters", "version": "2"}\n', "version '2' is not"),
    ],
)
def test_a_file_without_the_header_is_refused_at_line_1(first_line: bytes, problem: str) -> None:
    """An empty file, a missing or foreign header, or an unknown version is refused at line 1."""
    error = refusal([first_line] if first_line else [])
    assert error.line == 1
    assert problem in str(error)


DAY = 1_753_142_400_000  # a UTC day's start
HOUR = DAY + 3_600_000


def day_line(pages: dict[str, int], referrers: dict[str, int]) -> str:
    return json.dumps({"day": DAY, "pages": pages, "referrers": referrers})


@pytest.mark.parametrize(
    ("day", "problem"),
    [
        (day_line({"/a?email=x": 1}, {}), "is not a page"),
        (day_line({"/" + "a" * 600: 1}, {}), "is not a page"),
        (day_line({"no-slash": 1}, {}), "is not a page"),
        (day_line({}, {"https://Example.org/": 1}), "is not a referrer"),
        (day_line({}, {"ftp://example.org/": 1}), "is not a referrer"),
        (day_line({"/a": 1}, {}), "lists no hour of it"),
        (json.dumps({"visitors": "day", "start": DAY, "ids": [1]}), "lists no hour of it"),
    ],
)
def test_a_day_the_stores_could_not_keep_as_it_is_is_refused(day: str, problem: str) -> None:
    """A day's page or referrer that the hits route would not have kept as it is, or a day of
    pages or visitors that no hour of the counter lists (the stores find days through hours,
    to purge, export and delete them), is refused, naming the day's line."""
    error = refusal(export_of(line(), day, line(key="c")))
    assert str(error).startswith("line 3: ")
    assert problem in str(error)


def test_a_day_listed_by_an_hour_or_an_hours_visitors_is_accepted() -> None:
    """A day whose counter lists one of its hours, as hits or as hourly visitors, is read."""
    for hour_line in (
        f'{{"hours": [[{HOUR}, 2]]}}',
        f'{{"visitors": "hour", "start": {HOUR}, "ids": [1]}}',
    ):
        read = list(
            entries(
                export_of(
                    line(),
                    f'{{"day": {DAY}, "pages": {{"/a": 1}}, "referrers": {{"https://e.org/": 1}}}}',
                    f'{{"visitors": "day", "start": {DAY}, "ids": [1]}}',
                    hour_line,
                )
            )
        )
        assert len(read) == 4
