"""Badge rendering, as pure functions: shortened counts, colours, labels, and SVG that is
well-formed, fits its text and cannot be made to carry markup."""

import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import get_args

import pytest

from visit_tracker import badges
from visit_tracker.stores.base import LARGEST

SVG = "{http://www.w3.org/2000/svg}"
STYLES: tuple[badges.Style, ...] = get_args(badges.Style)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 -- our own output, parsed to check it


def drawn_texts(root: ET.Element) -> list[ET.Element]:
    """The text elements a reader sees (shadows are aria-hidden copies)."""
    return [text for text in root.iter(f"{SVG}text") if text.get("aria-hidden") != "true"]


@pytest.mark.parametrize(
    ("count", "shown"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1k"),
        (1099, "1k"),
        (1100, "1.1k"),
        (1999, "1.9k"),
        (9999, "9.9k"),
        (10_000, "10k"),
        (12_345, "12.3k"),
        (99_999, "99.9k"),
        (100_000, "100k"),
        (123_456, "123k"),
        (999_999, "999k"),
        (1_000_000, "1M"),
        (1_250_000, "1.2M"),
        (999_999_999, "999M"),
        (1_000_000_000, "1G"),
        (10**15, "1P"),
        (10**18, "1E"),
        (LARGEST, "9.2E"),
    ],
)
def test_counts_are_shortened_and_rounded_down(count: int, shown: str) -> None:
    """Counts below 1,000 show whole; larger ones show one decimal below 100 of a unit, none
    above, and are rounded down at every edge."""
    assert badges.abbreviate(count) == shown


def test_a_shortened_count_never_overstates_and_stays_short() -> None:
    """Around every power of ten, the shortened count is at most the count, less than one step
    of its last digit below it, and at most five characters long."""
    units = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
    around_powers = [10**power + delta for power in range(19) for delta in (-1, 0, 1)]
    for count in [*around_powers, 1234, 45_678, 987_654_321, LARGEST]:
        shown = badges.abbreviate(count)
        match = re.fullmatch(r"(\d+(?:\.\d)?)([kMGTPE]?)", shown)
        assert match is not None, shown
        number, unit = Decimal(match[1]), units[match[2]]
        # One decimal is shown, or was zero, below 100 of a unit; whole units from 100 on.
        step = 1 if unit == 1 else unit // 10 if number < 100 else unit
        assert number * unit <= count < number * unit + step, (count, shown)
        assert len(shown) <= 5


@pytest.mark.parametrize(
    ("color", "hex_color"),
    [
        ("brightgreen", "#44cc11"),
        ("lightgray", "#9f9f9f"),
        ("f80", "#ff8800"),
        ("C0FFEE", "#c0ffee"),
    ],
)
def test_colours_are_names_or_hex_digits(color: str, hex_color: str) -> None:
    """A named colour (any case) or 3 or 6 hexadecimal digits give one #rrggbb colour."""
    assert badges.color_hex(color) == hex_color


@pytest.mark.parametrize("color", ["#fff", "ggg", "12345", "", "url(#x)", "red;"])
def test_anything_else_is_not_a_colour(color: str) -> None:
    """A '#', a wrong number of digits, a non-digit or CSS is refused, saying what is allowed."""
    with pytest.raises(ValueError, match="hexadecimal digits without '#'"):
        badges.check_color(color)


@pytest.mark.parametrize("label", ["a\x00b", "tab\there", "new\nline", "\x7f", "x" * 65, "\uffff"])
def test_labels_with_control_characters_or_too_long_are_refused(label: str) -> None:
    """Control characters, XML's non-characters and labels over 64 characters are refused."""
    with pytest.raises(ValueError, match=r"must"):
        badges.check_label(label)


def test_ordinary_labels_of_any_script_are_accepted() -> None:
    """Letters, punctuation and non-Latin scripts up to 64 characters pass unchanged."""
    for label in ["visits", "page views", "访问量", "Besucher·innen", "x" * 64, ""]:
        assert badges.check_label(label) == label


@pytest.mark.parametrize("style", STYLES)
def test_a_badge_is_svg_with_its_label_count_and_exact_title(style: badges.Style) -> None:
    """Every style is well-formed SVG showing the label and the shortened count, titled (for
    screen readers) with the exact count."""
    root = parse(badges.render(label="visits", count=12_345, color="blue", style=style))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("aria-label") == "visits: 12345"
    assert root.findtext(f"{SVG}title") == "visits: 12345"
    shown = [text.text for text in drawn_texts(root)]
    if style == "for-the-badge":
        assert shown == ["VISITS", "12.3K"]
    else:
        assert shown == ["visits", "12.3k"]
    assert "#007ec6" in {rect.get("fill") for rect in root.iter(f"{SVG}rect")}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("label", ["", "visits", "a much longer label WWW", "访问量", "ÄÖÜ ßéè"])
def test_the_badge_is_as_wide_as_its_parts_and_each_text_fits_its_part(
    style: badges.Style, label: str
) -> None:
    """The badge's width is the sum of its coloured parts, and each text, centred in its part,
    lies inside it with room to spare."""
    root = parse(badges.render(label=label, count=1_234_567, color="red", style=style))
    parts = [
        rect
        for rect in root.iter(f"{SVG}rect")
        if rect.get("fill", "").startswith("#") and rect.get("fill") != "#fff"
    ]
    assert sum(int(rect.get("width", 0)) for rect in parts) == int(root.get("width", 0))
    texts = drawn_texts(root)
    assert len(parts) == len(texts) == (2 if label else 1)
    for rect, text in zip(parts, texts, strict=True):
        start, width = int(rect.get("x", 0)), int(rect.get("width", 0))
        center, length = int(text.get("x", 0)) / 10, int(text.get("textLength", 0)) / 10
        assert length > 0
        assert start + 5 <= center - length / 2
        assert center + length / 2 <= start + width - 5


def test_a_longer_label_makes_a_wider_badge() -> None:
    """The label's measured width sets the badge's width."""
    widths = [
        int(parse(badges.render(label=label, count=1, color="blue", style="flat")).get("width", 0))
        for label in ["i", "visits", "visits today", "WWWWWWWWWWWW"]
    ]
    assert widths == sorted(widths)
    assert len(set(widths)) == 4


def test_text_widths_follow_the_font_table() -> None:
    """Widths grow with the size, bold is wider, and an unknown character takes a whole em."""
    assert badges.text_width("visits", size=22) == 2 * badges.text_width("visits", size=11)
    assert badges.text_width("visits", size=11, bold=True) > badges.text_width("visits", size=11)
    assert badges.text_width("i", size=11) < badges.text_width("W", size=11)
    assert badges.text_width("中", size=11) == 11


@pytest.mark.parametrize(
    "label",
    [
        "<script>alert(1)</script>",
        '" onload="alert(1)',
        "' onload='alert(1)",
        "</text><script>alert(1)</script><text>",
        "&lt;b&gt; &amp; ]]>",
    ],
)
@pytest.mark.parametrize("style", STYLES)
def test_a_label_cannot_inject_markup(label: str, style: badges.Style) -> None:
    """Angle brackets, quotes and entities in a label stay text: the SVG has no script element,
    no event attribute, and shows the label exactly."""
    root = parse(badges.render(label=label, count=7, color="blue", style=style))
    for element in root.iter():
        assert not element.tag.endswith("script")
        assert not [name for name in element.attrib if name.lower().startswith("on")]
    expected = label.upper() if style == "for-the-badge" else label
    assert drawn_texts(root)[0].text == expected
    assert root.get("aria-label") == f"{label}: 7"


def test_text_is_dark_on_light_colours_and_white_on_dark_ones() -> None:
    """Light backgrounds get dark text, dark backgrounds white text, as on shields.io."""
    assert badges.text_colors("#ffff00")[0] == "#333"
    assert badges.text_colors("#9f9f9f")[0] == "#fff"
    assert badges.text_colors("#007ec6")[0] == "#fff"
    root = parse(badges.render(label="visits", count=1, color="ff0", style="flat-square"))
    assert [text.get("fill") for text in drawn_texts(root)] == ["#fff", "#333"]


def test_only_the_flat_style_has_rounded_corners_and_shadows() -> None:
    """`flat` clips to rounded corners and shadows its text; the other styles draw neither."""
    for style in STYLES:
        root = parse(badges.render(label="visits", count=1, color="blue", style=style))
        clipped = root.find(f"{SVG}clipPath") is not None
        shadows = [t for t in root.iter(f"{SVG}text") if t.get("aria-hidden") == "true"]
        assert clipped == bool(shadows) == (style == "flat")
