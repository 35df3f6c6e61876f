"""Content negotiation: whether a client prefers JSON to HTML, by its `Accept` header (RFC 9110
section 12.5.1), for routes that answer a page to a browser and JSON to a program."""

import re

QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
"""A quality as RFC 9110 section 12.4.2 writes it: 0 to 1, with at most three decimals. Python's
`float` reads much else (`inf`, `nan`, `2`, `1_0`), which no client means as a quality."""


def prefers_json(accept: str) -> bool:
    """Whether a client whose `Accept` header is `accept` prefers JSON to HTML: it accepts JSON
    at a higher quality than HTML, or as high by a more specific range (`application/json,
    */*`). A tie, or no header, is HTML: the routes that ask answer pages first."""
    ranges = [media_range(part) for part in accept.split(",")]

    def preference(media_type: str) -> tuple[float, int]:
        """The quality and specificity of the most specific range that names `media_type`."""
        named = [
            (rank, quality)
            for kind, quality in ranges
            if (rank := specificity(kind, media_type)) is not None
        ]
        rank, quality = max(named, default=(0, 0.0))
        return quality, rank

    return preference("application/json") > preference("text/html")


def media_range(part: str) -> tuple[str, float]:
    """A range of an `Accept` header, lower-cased, and its quality (1 if not given, 0 if
    unreadable: not a `QVALUE`)."""
    kind, *parameters = (piece.strip().lower() for piece in part.split(";"))
    quality = 1.0
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip() == "q":
            value = value.strip()
            quality = float(value) if QVALUE.fullmatch(value) else 0.0
    return kind, quality


def specificity(kind: str, media_type: str) -> int | None:
    """How closely the range `kind` names `media_type`: 2 exactly, 1 by its type (`text/*`), 0
    as `*/*`; None if it does not name it."""
    ranks = {media_type: 2, media_type.partition("/")[0] + "/*": 1, "*/*": 0}
    return ranks.get(kind)
