"""Content negotiation: JSON only for a client that prefers it to HTML."""

import pytest

from visit_tracker.api.negotiation import media_range, prefers_json

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
"""What Firefox asks for when it opens a page."""


@pytest.mark.parametrize(
    ("accept", "json"),
    [
        ("", False),
        ("*/*", False),
        (BROWSER_ACCEPT, False),
        ("application/json, text/html", False),
        ("application/json;q=0.9, text/*", False),
        ("text/html;q=0", False),
        ("application/json", True),
        ("Application/JSON", True),
        ("application/json, text/plain, */*", True),
        ("application/*, text/html;q=0.5", True),
        ("text/html;q=0.5, application/json;q=0.8", True),
        ("application/json, text/html;q=oops", True),
        ("application/json;q=inf, text/html", False),
        ("text/html;q=2, application/json", True),
    ],
)
def test_json_is_chosen_only_when_preferred_to_html(accept: str, json: bool) -> None:
    """JSON wins only at a higher quality than HTML, or as high by a more specific range; a
    tie, a wildcard or no header is HTML."""
    assert prefers_json(accept) is json


@pytest.mark.parametrize("q", ["0", "0.", "0.001", "0.5", "0.999", "1", "1.", "1.0", "1.000"])
def test_a_qvalue_of_rfc_9110_is_read_as_its_number(q: str) -> None:
    """A quality written as RFC 9110 allows, 0 to 1 with at most three decimals, is its number."""
    assert media_range(f"text/html;q={q}") == ("text/html", float(q))


@pytest.mark.parametrize(
    "q", ["inf", "nan", "2", "-1", "1_0", "1e0", "1.5", "1.0001", "0.0005", ".5", "+0.5"]
)
def test_a_quality_that_is_no_qvalue_is_read_as_0(q: str) -> None:
    """A quality that Python reads as a number but RFC 9110 does not allow, such as one above 1,
    infinite, signed or with four decimals, is unreadable: 0."""
    assert media_range(f"application/json;q={q}") == ("application/json", 0.0)
