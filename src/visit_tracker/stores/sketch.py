"""Counting distinct visitors in bounded space: exact while few, a HyperLogLog beyond.

Each hour a counter keeps two things about the visitors it saw: their ids, while they are fewer
than `EXACT_BELOW`, and always a HyperLogLog of 2**15 registers. A visitor id is a 63-bit keyed
hash (see `visitors.py`); its low 15 bits choose a register and the rest give a rank, the
register keeping the highest rank it saw. Registers merge by taking the maximum, so any number
of hours (a day, 30 days) is counted from one union, never from a sum.

A count over some hours is exact when every one of them kept all its ids, and otherwise the
estimate of Ertl's improved raw estimator ("New cardinality estimation algorithms for
HyperLogLog sketches", 2017), the one Redis's PFCOUNT uses, with no bias-correction table. With
2**15 registers its standard error is 0.57 %: 2 % is three and a half of them, so a count of
100,000 is within 2 % but for about one salt in two thousand. A bucket costs at most one row
per register, and no more rows than it has visitors.

Redis keeps its own HyperLogLog (2**14 registers, 0.81 %) and set per bucket (`PFADD`, `SADD`);
SQLite, PostgreSQL and memory keep ids and registers as rows and count them with `estimate`.

Moving a sketch between the two families cannot be exact: Redis hashes each id again
(MurmurHash64A) into half as many registers. `fold` turns 2**15 registers into the 2**14 that
the same ids would give under another valid hash (the low 14 bits choose the register; the rank
is 1 when bit 14 is set, else one more than the id's rank here); it is exact, so the folded
sketch counts the same visitors with Redis's 0.81 %. `unfold` goes back: the registers whose
bit 14 is clear are read exactly from the folded ones, the others (whose ids the fold kept only
as "some") are drawn from their distribution given the bucket's count. See README, "Backup".
"""

import math
from collections.abc import Iterable, Mapping, Sequence

from visit_tracker.stores import _redis_hll
from visit_tracker.stores.base import VisitorBucket, VisitorSketch

PRECISION = 15
REGISTERS = 1 << PRECISION
ID_BITS = 63
"""A visitor id fits a signed 64-bit integer, the SQL stores' largest."""
MOST_RANK = ID_BITS - PRECISION + 1
"""The rank of an id whose rank bits are all zero."""

HISTORY_CHUNK = 1000
"""Hourly buckets a store's `history` gives at once (and an export writes on one line)."""

EXACT_BELOW = 100
"""Up to this many distinct ids an hour keeps them all; it counts them exactly below it."""

ALPHA = 1 / (2 * math.log(2))
"""The limit of HyperLogLog's bias constant for many registers."""


def register_of(visitor: int) -> tuple[int, int]:
    """The register a visitor id falls in and the rank it gives that register (1 or more)."""
    rest = visitor >> PRECISION
    return visitor & (REGISTERS - 1), MOST_RANK - rest.bit_length()


def highest_ranks(visitors: Iterable[int]) -> dict[int, int]:
    """The registers these ids touch, each with the highest rank they give it."""
    ranks: dict[int, int] = {}
    for visitor in visitors:
        register, rank = register_of(visitor)
        if rank > ranks.get(register, 0):
            ranks[register] = rank
    return ranks


def estimate(ranks: Mapping[int, int]) -> int:
    """How many distinct ids a HyperLogLog holds, from its nonzero registers' ranks."""
    histogram = [0] * (MOST_RANK + 1)
    for rank in ranks.values():
        histogram[rank] += 1
    histogram[0] = REGISTERS - len(ranks)
    z = REGISTERS * _tau(1 - histogram[MOST_RANK] / REGISTERS)
    for rank in range(MOST_RANK - 1, 0, -1):
        z = 0.5 * (z + histogram[rank])
    z += REGISTERS * _sigma(histogram[0] / REGISTERS)
    return round(ALPHA * REGISTERS * REGISTERS / z)


def distinct(ids: Iterable[int], *, complete: bool, ranks: Mapping[int, int]) -> int:
    """The number of distinct visitors of some hours: their ids counted when every hour kept
    them all (`complete`), else the estimate of their registers' union."""
    return len(set(ids)) if complete else estimate(ranks)


def registers_data(ranks: Mapping[int, int]) -> bytes:
    """A sketch as one byte per register: its rank, 0 when empty (the export's form)."""
    data = bytearray(REGISTERS)
    for register, rank in ranks.items():
        data[register] = rank
    return bytes(data)


def ranks_of(data: bytes) -> dict[int, int]:
    """The nonzero registers of `registers_data`; ValueError if it is not 2**15 ranks."""
    if len(data) != REGISTERS or max(data, default=0) > MOST_RANK:
        raise ValueError(f"{REGISTERS} registers of rank 0 to {MOST_RANK}")
    return {register: rank for register, rank in enumerate(data) if rank}


FOLDED = _redis_hll.REGISTERS


def fold(ranks: Mapping[int, int]) -> list[int]:
    """The 2**14 registers the ids of these 2**15 would give under the fold's hash (above)."""
    folded = [0] * FOLDED
    for register, rank in ranks.items():
        low = register % FOLDED
        folded[low] = max(folded[low], 1 if register >= FOLDED else rank + 1)
    return folded


def unfold(folded: Sequence[int], *, count: int) -> dict[int, int]:
    """2**15 registers from 2**14 folded ones, for a bucket of about `count` visitors."""
    load = count / REGISTERS  # ids per register
    ranks: dict[int, int] = {}
    for low, rank in enumerate(folded):
        if rank >= 2:
            ranks[low] = min(rank - 1, MOST_RANK)
        if rank:
            drawn = _likely_rank(load, quantile=_spread(low), at_least_one=rank == 1)
            if drawn:
                ranks[low + FOLDED] = drawn
    return ranks


def restored_ranks(bucket: VisitorBucket) -> tuple[dict[int, int], bool]:
    """The registers a bucket is restored with here, and whether they were converted from
    Redis's (and so count approximately)."""
    if bucket.sketch is None:
        return highest_ranks(bucket.ids), False
    if bucket.sketch.family == "registers":
        return ranks_of(bucket.sketch.data), False
    folded = _redis_hll.registers(bucket.sketch.data)
    return unfold(folded, count=bucket.sketch.estimate), True


def restored_hll(sketch: VisitorSketch) -> tuple[bytes, bool]:
    """A bucket's sketch as a Redis HyperLogLog string, and whether it was converted from
    registers (and so counts approximately)."""
    if sketch.family == "redis":
        return sketch.data, False
    return _redis_hll.dense(fold(ranks_of(sketch.data))), True


def _spread(register: int) -> float:
    """A quantile in (0, 1) for each register, evenly spread (the golden ratio's sequence), the
    same on every run so that a conversion is repeatable."""
    return ((register * 0x9E3779B97F4A7C15) % 2**64 + 0.5) / 2**64


def _likely_rank(load: float, *, quantile: float, at_least_one: bool) -> int:
    """The rank at `quantile` of a register that `load` ids fall in on average (Poisson), of
    those with at least one id if `at_least_one`: the highest rank is at most k with
    probability exp(-load / 2**k)."""
    empty = math.exp(-load)
    for rank in range(MOST_RANK + 1):
        at_most = math.exp(-load / 2**rank)
        if at_least_one:
            at_most = (at_most - empty) / (1 - empty) if empty < 1 else 1.0
        if at_most >= quantile:
            return max(rank, 1) if at_least_one else rank
    return MOST_RANK


def _sigma(x: float) -> float:
    if x == 1:
        return math.inf
    y, z = 1.0, x
    while True:
        x *= x
        previous = z
        z += x * y
        y += y
        if z == previous:
            return z


def _tau(x: float) -> float:
    if x in (0, 1):
        return 0.0
    y, z = 1.0, 1 - x
    while True:
        x = math.sqrt(x)
        previous = z
        y *= 0.5
        z -= (1 - x) ** 2 * y
        if z == previous:
            return z / 3
