"""An in-process store: the original demo's behaviour. Fast, exact within one process, and
forgotten on restart — for tests and trials, never for counts you want to keep."""

from collections.abc import Sequence

from visit_tracker.stores.base import CounterId, Hit, number_hits, tally


class MemoryStore:
    """Keeps counters in a dict; one event loop serialises every batch."""

    def __init__(self) -> None:
        self._values: dict[CounterId, int] = {}

    async def apply(self, hits: Sequence[Hit]) -> list[int]:
        for counter, count in tally(hits).items():
            self._values[counter] = self._values.get(counter, 0) + count
        return number_hits(hits, self._values)

    async def value(self, counter: CounterId) -> int:
        return self._values.get(counter, 0)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
