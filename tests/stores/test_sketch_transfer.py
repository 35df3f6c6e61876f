"""Moving a visitor sketch between the register family and Redis's HyperLogLog."""

import random

import redis

from tests.redis_servers import shared_redis
from visit_tracker.stores import _redis_hll
from visit_tracker.stores.sketch import FOLDED, estimate, fold, highest_ranks, register_of, unfold

IDS = random.Random(3)  # noqa: S311 - test ids, not secrets


def test_a_fold_is_the_sketch_the_same_ids_give_under_the_folds_hash() -> None:
    """Folding the 2**15 registers of some ids gives exactly the 2**14 registers of those ids
    under the fold's hash, and unfolding gets the low half of the 2**15 back exactly."""
    ids = [IDS.getrandbits(63) for _ in range(20_000)]
    direct = [0] * FOLDED
    for visitor in ids:
        low = visitor % FOLDED
        rank = 1 if visitor >> 14 & 1 else register_of(visitor)[1] + 1
        direct[low] = max(direct[low], rank)
    ranks = highest_ranks(ids)
    assert fold(ranks) == direct
    back = unfold(direct, count=len(ids))
    assert all(back.get(low) == ranks.get(low) for low in range(FOLDED))


def test_redis_counts_a_folded_sketch_and_its_own_strings_read_back() -> None:
    """Redis counts a folded sketch written as its own string within 2 % of the visitors, and
    its own sparse and dense strings read back as registers it counts the same."""
    client = redis.Redis.from_url(shared_redis())
    key = f"test-sketch-{IDS.getrandbits(32)}"
    try:
        for size in (150, 3000, 60_000):
            ids = [IDS.getrandbits(63) for _ in range(size)]
            client.set(key, _redis_hll.dense(fold(highest_ranks(ids))))
            assert abs(client.pfcount(key) - size) <= 0.02 * size
            client.delete(key)
            client.pfadd(key, *ids)
            native = client.pfcount(key)
            registers = _redis_hll.registers(bytes(client.get(key)))  # type: ignore[arg-type]
            client.set(key, _redis_hll.dense(registers))
            assert client.pfcount(key) == native
            assert abs(estimate(unfold(registers, count=native)) - native) <= 0.02 * native
    finally:
        client.delete(key)
        client.close()
