"""The dashboard's charts and figures, computed without I/O."""

from visit_tracker.charts import HEIGHT, WIDTH, bar_chart, count, duration


def buckets(*hits: int, visitors: bool = False) -> list[dict[str, object]]:
    return [
        {"start": f"2026-03-01T{hour:02}:00:00.000Z", "hits": value}
        | ({"visitors": value // 2} if visitors else {})
        for hour, value in enumerate(hits)
    ]


def test_bars_share_the_width_and_the_highest_reaches_the_top() -> None:
    """Each bucket gets an equal slice of the width, and bar heights are proportional to hits
    with the highest bar as tall as the chart."""
    chart = bar_chart(buckets(2, 0, 4, 1), interval="hour")
    assert chart.top == 4
    assert [bar.height for bar in chart.bars] == [HEIGHT / 2, 0, HEIGHT, HEIGHT / 4]
    assert [bar.x for bar in chart.bars] == [WIDTH / 4 * n + WIDTH / 40 for n in range(4)]
    assert all(bar.width == WIDTH / 4 * 0.8 for bar in chart.bars)
    assert (chart.first, chart.last) == ("2026-03-01 00:00", "2026-03-01 03:00")
    assert chart.visitors is False
    assert all(bar.visitors is None and bar.visitors_height is None for bar in chart.bars)


def test_an_empty_series_draws_flat_bars() -> None:
    """A series without hits has a top of 1, so no bar divides by zero, and every bar is flat."""
    chart = bar_chart(buckets(0, 0), interval="day")
    assert chart.top == 1
    assert [bar.height for bar in chart.bars] == [0, 0]
    assert chart.first == "2026-03-01"


def test_unique_visitors_are_drawn_when_the_buckets_have_them() -> None:
    """Buckets that carry unique visitors get a visitors bar on the same scale as the hits."""
    chart = bar_chart(buckets(4, 2, visitors=True), interval="hour")
    assert chart.visitors is True
    assert [bar.visitors for bar in chart.bars] == [2, 1]
    assert [bar.visitors_height for bar in chart.bars] == [HEIGHT / 2, HEIGHT / 4]


def test_figures_read_as_text() -> None:
    """Counts get thousands separators and a dash when unknown; durations their two largest
    units."""
    assert [count(None), count(0), count(1234567)] == ["—", "0", "1,234,567"]
    assert [duration(s) for s in (4.9, 61, 3 * 3600 + 12 * 60 + 5, 2 * 86400 + 3 * 3600)] == [
        "4 s",
        "1 min",
        "3 h 12 min",
        "2 d 3 h",
    ]
