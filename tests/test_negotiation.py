"""Content negotiation: JSON only for a client that prefers it to HTML."""

import pytest

from visit_tracker.api.negotiation import prefers_json

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
    ],
)
def test_json_is_chosen_only_when_preferred_to_html(accept: str, json: bool) -> None:
    """JSON wins only at a higher quality than HTML, or as high by a more specific range; a
    tie, a wildcard or no header is HTML."""
    assert prefers_json(accept) is json
