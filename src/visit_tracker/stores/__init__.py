"""Stores: where counts live, chosen by one URL (`memory://`, `sqlite:///data/visits.db`,
`redis://host:6379/0`, `redis+cluster://host:7000`, `postgresql://user@host:5432/db`)."""

from pathlib import Path
from urllib.parse import urlsplit

from visit_tracker.stores.base import DEFAULT_COUNTER, CounterId, CounterRecord, Hit, Store
from visit_tracker.stores.memory import MemoryStore
from visit_tracker.stores.sqlite import SqliteStore

__all__ = [
    "DEFAULT_COUNTER",
    "CounterId",
    "CounterRecord",
    "Hit",
    "Store",
    "check_store_url",
    "open_store",
]

REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")
POSTGRES_SCHEMES = ("postgresql", "postgres")
SCHEMES = ("memory", "sqlite", *REDIS_SCHEMES, *POSTGRES_SCHEMES)

# The Redis and PostgreSQL modules are imported only for their own URLs: their drivers cost each
# worker process about 10 MiB, which a server on SQLite should not pay.


def check_store_url(url: str) -> str:
    """Return the URL unchanged if it names a store we can open, else raise ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        known = ", ".join(f"{scheme}://" for scheme in SCHEMES)
        raise ValueError(f"unknown store {url!r}: the URL must start with one of {known}")
    if parts.scheme == "sqlite" and (parts.netloc or len(parts.path) < 2):
        raise ValueError(
            f"bad SQLite store URL {url!r}: write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    if parts.scheme in REDIS_SCHEMES:
        from visit_tracker.stores.redis import parse_redis_url  # noqa: PLC0415

        parse_redis_url(url)
    if parts.scheme in POSTGRES_SCHEMES:
        from visit_tracker.stores.postgres import check_url  # noqa: PLC0415

        check_url(url)
    return url


def is_shared(url: str) -> bool:
    """Whether several processes opening this URL see the same counts."""
    return urlsplit(url).scheme != "memory"


async def open_store(url: str, *, wait_limit: float) -> Store:
    """Open the store a (checked) URL names; raise `StoreOpenError` saying why it cannot.

    `wait_limit` is how many seconds one operation may wait on a busy or silent store before
    it fails with `StoreUnavailable`.
    """
    parts = urlsplit(check_store_url(url))
    if parts.scheme == "memory":
        return MemoryStore()
    if parts.scheme in REDIS_SCHEMES:
        from visit_tracker.stores.redis import RedisStore  # noqa: PLC0415

        return await RedisStore.open(url, wait_limit=wait_limit)
    if parts.scheme in POSTGRES_SCHEMES:
        from visit_tracker.stores.postgres import PostgresStore  # noqa: PLC0415

        return await PostgresStore.open(url, wait_limit=wait_limit)
    return await SqliteStore.open(Path(parts.path[1:]), busy_timeout=wait_limit)
