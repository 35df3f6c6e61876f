"""SVG badges in the look of shields.io: a label on a grey left part, a count on a coloured right
part, in the styles `flat`, `flat-square` and `for-the-badge`.

Pure functions, no I/O. Text is measured with a table of DejaVu Sans advance widths: the font the
badge asks for after Verdana and Geneva, with widths close to Verdana's. Each text element also
carries `textLength`, so whichever of those fonts draws it is fitted to the measured width: the
badge always fits its text. The label is escaped for XML. Counts of 1,000 and more are shortened
(1.2k, 12.3k, 123k, 1.2M …) and always rounded down, so that a badge never shows more than was
counted; the badge's title, which screen readers read out, has the exact count.
"""

import html
import math
import re
import unicodedata
from typing import Literal

Style = Literal["flat", "flat-square", "for-the-badge"]

NAMED_COLORS: dict[str, str] = {
    "brightgreen": "#44cc11",
    "green": "#97ca00",
    "yellowgreen": "#a4a61d",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "grey": "#555555",
    "gray": "#555555",
    "lightgrey": "#9f9f9f",
    "lightgray": "#9f9f9f",
}
"""The colours a badge may be given by name: shields.io's, with the same values."""

LABEL_COLOR = "#555555"
MAX_LABEL = 64
"""Characters a label may have: enough for a few words, short enough for a badge."""

HEX_COLOR = re.compile(r"[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6}")
COLOR_RULE = f"one of {', '.join(NAMED_COLORS)}, or 3 or 6 hexadecimal digits without '#'"
COLOR_PATTERN = f"^({'|'.join(NAMED_COLORS)}|{HEX_COLOR.pattern})$"
"""The same rule as a regular expression, for the API's schema."""

FONT_FAMILY = "Verdana,Geneva,DejaVu Sans,sans-serif"
SUFFIXES = "kMGTPE"
"""Thousand, million, … up to 10**18: the largest count, 2**63 - 1, is 9.2E."""

UNITS_PER_EM = 2048
WIDE = UNITS_PER_EM
"""Width given to a character outside the tables (CJK, emoji …): a whole em, wide enough."""


def _widths(printable_ascii: str, latin_1: str) -> dict[str, int]:
    """Advance widths by character, from two runs of numbers: U+0020 to U+007E, U+00A0 to U+00FF."""
    table = {}
    for first, run in ((0x20, printable_ascii), (0xA0, latin_1)):
        for offset, width in enumerate(run.split()):
            table[chr(first + offset)] = int(width)
    return table


# Advance widths in 1/2048 em, read from the `hmtx` tables of DejaVu Sans 2.37, regular and bold.
REGULAR = _widths(
    """
    651 821 942 1716 1303 1946 1597 563 799 799 1024 1716 651 739 651 690 1303 1303 1303 1303
    1303 1303 1303 1303 1303 1303 690 690 1716 1716 1716 1087 2048 1401 1405 1430 1577 1294 1178
    1587 1540 604 604 1343 1141 1767 1532 1612 1235 1612 1423 1300 1251 1499 1401 2025 1403 1251
    1403 799 690 799 1716 1024 1024 1255 1300 1126 1300 1260 721 1300 1298 569 569 1186 569 1995
    1298 1253 1300 1300 842 1067 803 1298 1212 1675 1212 1212 1075 1303 690 1303 1716
    """,
    """
    651 821 1303 1303 1303 1303 690 1024 1024 2048 965 1253 1716 739 2048 1024 1024 1716 821 821
    1024 1303 1303 651 1024 821 965 1253 1985 1985 1985 1087 1401 1401 1401 1401 1401 1401 1995
    1430 1294 1294 1294 1294 604 604 604 604 1587 1532 1612 1612 1612 1612 1612 1716 1612 1499
    1499 1499 1499 1251 1239 1290 1255 1255 1255 1255 1255 1255 2011 1126 1260 1260 1260 1260 569
    569 569 569 1253 1298 1253 1253 1253 1253 1253 1716 1253 1298 1298 1298 1298 1212 1300 1212
    """,
)
BOLD = _widths(
    """
    713 934 1067 1716 1425 2052 1786 627 936 936 1071 1716 778 850 778 748 1425 1425 1425 1425
    1425 1425 1425 1425 1425 1425 819 819 1716 1716 1716 1188 2048 1585 1561 1503 1700 1399 1399
    1681 1714 762 762 1587 1305 2038 1714 1741 1501 1741 1577 1475 1397 1663 1585 2259 1579 1483
    1485 936 748 936 1716 1024 1024 1382 1466 1214 1466 1389 891 1466 1458 702 702 1362 702 2134
    1458 1407 1466 1466 1010 1219 979 1458 1335 1892 1321 1335 1192 1458 748 1458 1716
    """,
    """
    713 934 1425 1425 1303 1425 748 1024 1024 2048 1155 1323 1716 850 2048 1024 1024 1716 897 897
    1024 1507 1303 778 1024 897 1155 1323 2120 2120 2120 1188 1585 1585 1585 1585 1585 1585 2222
    1503 1399 1399 1399 1399 762 762 762 762 1716 1714 1741 1741 1741 1741 1741 1716 1741 1663
    1663 1663 1663 1483 1511 1473 1382 1382 1382 1382 1382 1382 2146 1214 1389 1389 1389 1389 702
    702 702 702 1407 1458 1407 1407 1407 1407 1407 1716 1407 1458 1458 1458 1458 1335 1466 1335
    """,
)


def text_width(text: str, *, size: float, bold: bool = False) -> float:
    """The width in pixels of `text` set in DejaVu Sans at `size` pixels."""
    table = BOLD if bold else REGULAR
    return sum(table.get(character, WIDE) for character in text) * size / UNITS_PER_EM


def abbreviate(count: int) -> str:
    """`count` in at most four characters and a suffix, rounded down: 999, 1k, 1.2k, 12.3k,
    123k, 1.2M … (1,999 is 1.9k: never more than the count)."""
    power = min((len(str(count)) - 1) // 3, len(SUFFIXES))
    if power == 0:
        return str(count)
    unit, suffix = 1000**power, SUFFIXES[power - 1]
    tenths = count * 10 // unit  # integer arithmetic: exact for every count
    if tenths >= 1000:
        return f"{count // unit}{suffix}"
    whole, tenth = divmod(tenths, 10)
    return f"{whole}.{tenth}{suffix}" if tenth else f"{whole}{suffix}"


def color_hex(color: str) -> str:
    """`#rrggbb` for a colour name (see `NAMED_COLORS`) or 3 or 6 hexadecimal digits without
    '#'; ValueError for anything else."""
    named = NAMED_COLORS.get(color)
    if named is not None:
        return named
    if not HEX_COLOR.fullmatch(color):
        raise ValueError(f"must be {COLOR_RULE}")
    digits = color.lower() if len(color) == 6 else "".join(digit * 2 for digit in color.lower())
    return f"#{digits}"


def check_color(color: str) -> str:
    """The colour unchanged if `color_hex` accepts it; ValueError saying why otherwise."""
    color_hex(color)
    return color


def check_label(label: str) -> str:
    """The label unchanged if a badge can show it; ValueError saying why otherwise.

    Control characters are refused: XML cannot hold most of them even escaped, and none has a
    place on a one-line badge.
    """
    if len(label) > MAX_LABEL:
        raise ValueError(f"must be at most {MAX_LABEL} characters")
    if any(unicodedata.category(character) in {"Cc", "Cs"} for character in label):
        raise ValueError("must not hold control characters")
    if "\ufffe" in label or "\uffff" in label:
        raise ValueError("must not hold the non-characters U+FFFE or U+FFFF")
    return label


def text_colors(background: str) -> tuple[str, str]:
    """The text colour and its shadow's colour that read well on a `#rrggbb` background."""
    red, green, blue = (int(background[at : at + 2], 16) for at in (1, 3, 5))
    brightness = (red * 299 + green * 587 + blue * 114) / 255_000  # YIQ luma, 0 to 1
    return ("#333", "#ccc") if brightness > 0.69 else ("#fff", "#010101")


def render(*, label: str, count: int, color: str, style: Style) -> str:
    """The SVG badge showing `count` (shortened, see `abbreviate`) beside `label` (none if
    empty), its right part in `color` (see `color_hex`)."""
    message = abbreviate(count)
    title = f"{label}: {count}" if label else str(count)
    if style == "for-the-badge":
        return _for_the_badge(label.upper(), message.upper(), color_hex(color), title)
    return _flat(label, message, color_hex(color), title, square=style == "flat-square")


def _flat(label: str, message: str, fill: str, title: str, *, square: bool) -> str:
    """20 pixels high, 11-pixel text with a shadow; rounded corners and a gloss unless square."""
    height, padding = 20, 5
    label_width = math.ceil(text_width(label, size=11))
    message_width = math.ceil(text_width(message, size=11))
    left = label_width + 2 * padding if label else 0
    right = message_width + 2 * padding
    width = left + right
    shadow = not square
    texts = [
        _text(message, center=left + right / 2, length=message_width, y=14, on=fill, shadow=shadow)
    ]
    if label:
        texts.insert(
            0,
            _text(label, center=left / 2, length=label_width, y=14, on=LABEL_COLOR, shadow=shadow),
        )
    background = _background(left, right, height, fill)
    if square:
        body = f'<g shape-rendering="crispEdges">{background}</g>'
    else:
        body = (
            '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
            'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
            f'<clipPath id="r"><rect width="{width}" height="{height}" rx="3" fill="#fff"/>'
            f'</clipPath><g clip-path="url(#r)">{background}'
            f'<rect width="{width}" height="{height}" fill="url(#s)"/></g>'
        )
    return _svg(width, height, title, body, _text_group(texts, font_size=11))


def _for_the_badge(label: str, message: str, fill: str, title: str) -> str:
    """28 pixels high, capitals spaced out, 10-pixel text, the count in bold; square corners."""
    height, margin, spacing = 28, 12, 1.25
    label_width = math.ceil(text_width(label, size=10) + spacing * len(label))
    message_width = math.ceil(text_width(message, size=10, bold=True) + spacing * len(message))
    left = label_width + 2 * margin if label else 0
    right = message_width + 2 * margin
    texts = [
        _text(message, center=left + right / 2, length=message_width, y=17.5, on=fill, bold=True)
    ]
    if label:
        texts.insert(0, _text(label, center=left / 2, length=label_width, y=17.5, on=LABEL_COLOR))
    body = f'<g shape-rendering="crispEdges">{_background(left, right, height, fill)}</g>'
    return _svg(left + right, height, title, body, _text_group(texts, font_size=10))


def _svg(width: int, height: int, title: str, body: str, text: str) -> str:
    name = _escape(title)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{name}"><title>{name}</title>{body}{text}</svg>'
    )


def _background(left: int, right: int, height: int, fill: str) -> str:
    label_part = f'<rect width="{left}" height="{height}" fill="{LABEL_COLOR}"/>' if left else ""
    return f'{label_part}<rect x="{left}" width="{right}" height="{height}" fill="{fill}"/>'


def _text_group(texts: list[str], *, font_size: int) -> str:
    # Text is laid out at ten times its size and scaled down, for tenth-of-a-pixel positions.
    return (
        f'<g text-anchor="middle" font-family="{FONT_FAMILY}" '
        f'text-rendering="geometricPrecision" font-size="{font_size * 10}">{"".join(texts)}</g>'
    )


def _text(
    text: str,
    *,
    center: float,
    length: int,
    y: float,
    on: str,
    shadow: bool = False,
    bold: bool = False,
) -> str:
    """One line of text centred on `center`, fitted to `length` pixels, readable on `on`."""
    color, shadow_color = text_colors(on)
    place = f'x="{round(center * 10)}" transform="scale(.1)" textLength="{length * 10}"'
    weight = ' font-weight="bold"' if bold else ""
    content = _escape(text)
    drawn = f'<text {place} y="{round(y * 10)}" fill="{color}"{weight}>{content}</text>'
    if not shadow:
        return drawn
    return (
        f'<text aria-hidden="true" {place} y="{round(y * 10) + 10}" fill="{shadow_color}" '
        f'fill-opacity=".3">{content}</text>{drawn}'
    )


def _escape(text: str) -> str:
    """Text safe in XML content and in double- or single-quoted attributes."""
    return html.escape(text, quote=True)
