"""Where each Redis key lives: on the one server, or on the cluster node that owns its slot.

The cluster's map of slots to nodes comes from redis-py's `RedisCluster`, initialised once before
anything else uses it (used concurrently before that, it ran some commands twice). Commands are
never sent through it, only through `round_trip`, on connections its nodes hand out.
"""

import asyncio
from typing import Any, Protocol

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import RedisClusterException, RedisError

from visit_tracker.errors import StoreUnavailable
from visit_tracker.stores._redis_wire import NO_RETRY, ConnectionSource, Pool, describe


class Topology(Protocol):
    """The servers a store talks to."""

    single: bool
    """One server: a Lua script may touch any keys. Else scripts stay within one slot."""

    def node_for(self, key: str) -> ConnectionSource:
        """The server holding `key`."""
        ...

    def primaries(self) -> list[ConnectionSource]:
        """Every server that holds keys."""
        ...

    async def refresh(self, deadline: float) -> None:
        """Learn the servers again if a failure hinted that they changed."""
        ...

    def suspect(self) -> None:
        """Note a failure that may mean the servers changed."""
        ...

    async def close(self) -> None: ...


class OneServer:
    """A single Redis server."""

    single = True

    def __init__(self, connection_class: type[Connection], **connection_kwargs: Any) -> None:
        self._pool = Pool(connection_class, **connection_kwargs)

    def node_for(self, key: str) -> ConnectionSource:
        return self._pool

    def primaries(self) -> list[ConnectionSource]:
        return [self._pool]

    async def refresh(self, deadline: float) -> None:
        return None

    def suspect(self) -> None:
        return None

    async def close(self) -> None:
        await self._pool.disconnect()


class Cluster:
    """A Redis Cluster: keys spread over slots, slots over primaries."""

    single = False

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._stale = False

    @classmethod
    async def discover(
        cls, url: str, *, where: str, max_connections: int, **options: Any
    ) -> "Cluster":
        """Ask the cluster at `url` (`where` for messages) for its slot map, or raise
        `StoreUnavailable`."""
        client = RedisCluster.from_url(
            url, max_connections=max_connections, retry=NO_RETRY, **options
        )
        try:
            await client.initialize()
        except BaseException as error:  # timed out or cancelled as well: close what it opened
            await client.aclose()
            if isinstance(error, RedisError | RedisClusterException | OSError):
                raise StoreUnavailable(f"Redis Cluster at {where}: {describe(error)}") from error
            raise
        return cls(client)

    def node_for(self, key: str) -> ConnectionSource:
        try:
            node: ConnectionSource | None = self._client.get_node_from_key(key)
        except RedisClusterException:  # a slot no node serves, as far as we know
            node = None
        if node is None:
            self.suspect()
            raise StoreUnavailable(f"Redis Cluster: no node serves the slot of {key}")
        return node

    def primaries(self) -> list[ConnectionSource]:
        return list(self._client.get_primaries())

    async def refresh(self, deadline: float) -> None:
        if not self._stale:
            return
        try:
            async with asyncio.timeout_at(deadline):
                await self._client.nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError, TimeoutError) as error:
            raise StoreUnavailable(
                f"Redis Cluster: cannot map its slots: {describe(error)}"
            ) from error
        self._stale = False

    def suspect(self) -> None:
        self._stale = True

    async def close(self) -> None:
        await self._client.aclose()
