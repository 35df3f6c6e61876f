"""What the dashboard draws, computed without I/O: bar charts of a series, and figures as text.

A chart is drawn in a fixed coordinate space (`WIDTH` x `HEIGHT`) that the page stretches to
its width, so that the same bars fill a phone and a desktop screen; its labels are HTML around
it, which does not stretch.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WIDTH = 960
HEIGHT = 200
GAP = 0.2
"""The share of each bucket's width left empty between two bars."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One bucket's bar: its place in the chart, what it stands for, and its label."""

    x: float
    width: float
    height: float
    """The hits bar's height; it stands on the chart's bottom edge."""
    visitors_height: float | None
    """The unique visitors bar's height, drawn over the hits bar; None when not known."""
    label: str
    hits: int
    visitors: int | None


@dataclass(frozen=True, slots=True)
class Chart:
    bars: list[Bar]
    top: int
    """The value the chart's top edge stands for: the highest bar's, at least 1."""
    first: str
    last: str
    """The labels of the first and the last bucket."""
    visitors: bool
    """Whether the buckets know their unique visitors."""
    width: int = WIDTH
    height: int = HEIGHT


def bar_chart(buckets: Sequence[Mapping[str, Any]], *, interval: str) -> Chart:
    """The chart of a series' buckets, as the series route answers them: `start` (UTC,
    ISO-8601), `hits` and, when the store counts them, `visitors`."""
    top = max((bucket["hits"] for bucket in buckets), default=0)
    top = max([top, 1, *(bucket.get("visitors") or 0 for bucket in buckets)])
    step = WIDTH / max(len(buckets), 1)
    bars = []
    for number, bucket in enumerate(buckets):
        visitors = bucket.get("visitors")
        bars.append(
            Bar(
                x=number * step + step * GAP / 2,
                width=step * (1 - GAP),
                height=HEIGHT * bucket["hits"] / top,
                visitors_height=None if visitors is None else HEIGHT * visitors / top,
                label=bucket_label(bucket["start"], interval=interval),
                hits=bucket["hits"],
                visitors=visitors,
            )
        )
    return Chart(
        bars=bars,
        top=top,
        first=bars[0].label if bars else "",
        last=bars[-1].label if bars else "",
        visitors=any(bar.visitors is not None for bar in bars),
    )


def bucket_label(start: str, *, interval: str) -> str:
    """`2026-03-01 10:00` for an hour, `2026-03-01` for a day (both UTC)."""
    moment = datetime.fromisoformat(start).astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M}" if interval == "hour" else f"{moment:%Y-%m-%d}"


def count(value: int | None) -> str:
    """A count with thousands separated (`12,345`), or a dash when it is not known."""
    return "—" if value is None else f"{value:,}"


def duration(seconds: float) -> str:
    """A duration in its two largest units: `2 d 3 h`, `3 h 12 min`, `12 min`, `45 s`."""
    minutes, whole = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{whole} s"
