"""The numbering arithmetic every store shares, as a pure function."""

from visit_tracker.stores.base import CounterId, Hit, number_hits

A = CounterId("ns", "a")
B = CounterId("ns", "b")


def test_hits_of_one_counter_end_at_its_new_total() -> None:
    """k hits to a counter now at n get n-k+1 ... n in order."""
    assert number_hits([Hit(A)] * 3, {A: 10}) == [8, 9, 10]


def test_interleaved_counters_are_numbered_independently() -> None:
    """Hits to different counters in one batch count up each counter separately."""
    assert number_hits([Hit(A), Hit(B), Hit(A), Hit(B), Hit(B)], {A: 2, B: 103}) == [
        1,
        101,
        2,
        102,
        103,
    ]


def test_a_bots_hit_gets_the_value_of_the_hit_before_it() -> None:
    """A bot's hit adds nothing: it is told the value its counter had after the hits before it
    in the batch, the total before the batch if none."""
    bot_a, bot_b = Hit(A, bot=True), Hit(B, bot=True)
    batch = [bot_a, Hit(A), bot_b, bot_a, Hit(A), Hit(B), bot_b]
    assert number_hits(batch, {A: 7, B: 3}) == [5, 6, 2, 6, 7, 3, 3]
    assert number_hits([bot_a, bot_a], {A: 0}) == [0, 0]


def test_an_empty_batch_numbers_nothing() -> None:
    """An empty batch yields no values."""
    assert number_hits([], {}) == []
